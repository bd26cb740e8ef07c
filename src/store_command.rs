//! `lct store verify` and `lct store repair`: the embedded event store's maintenance commands.

use crate::settings::StoreCommand;
use std::path::Path;
use std::process::ExitCode;

/// Runs the command on the data directory, prints its report, and returns the exit status
/// documented on [`StoreCommand`].
pub fn run(data_dir: &Path, command: StoreCommand, mongodb_configured: bool) -> ExitCode {
    if mongodb_configured {
        eprintln!(
            "note: LCT_MONGODB_URI is set, so lct keeps its events in MongoDB; this checks the embedded store of {}",
            data_dir.display()
        );
    }
    if !data_dir.join(infrastructure::embedded::LOG_FILE).exists() {
        eprintln!("{}: no event log here (lct creates one when it first starts)", data_dir.display());
        return ExitCode::from(2);
    }
    match command {
        StoreCommand::Verify => match infrastructure::embedded::verify(data_dir) {
            Ok(report) => {
                println!("{report}");
                ExitCode::from(u8::from(report.needs_repair()))
            }
            Err(error) => {
                eprintln!("lct store verify: {error}");
                ExitCode::from(2)
            }
        },
        StoreCommand::Repair => match infrastructure::embedded::repair(data_dir) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("lct store repair: {error}");
                ExitCode::from(2)
            }
        },
    }
}
