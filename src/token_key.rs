//! Where the key of the v2 tokens comes from: `LCT_TOKEN_SECRET` when set; else, with Redis,
//! the key the pods agree on through it (see `api::v2::tokens::agree`); else a random key kept
//! in the data directory, readable by its owner only and shared by the processes using that
//! directory.

use anyhow::Context;
use api::v2::tokens::{TokenKeys, MIN_KEY_BYTES};
use std::io::Write;
use std::path::Path;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "token.key";

/// Characters of a key file's key (32 random bytes in hex).
const KEY_CHARS: usize = 64;

/// The keys of `LCT_TOKEN_SECRET`, or `None` when it is unset or blank.
pub fn configured(secret: Option<&str>) -> anyhow::Result<Option<TokenKeys>> {
    let Some(secret) = secret.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    anyhow::ensure!(secret.len() >= MIN_KEY_BYTES, "LCT_TOKEN_SECRET must be at least {MIN_KEY_BYTES} characters");
    Ok(Some(TokenKeys::new(secret.as_bytes())))
}

/// The key kept in `data_dir`, created (mode 0600) by whichever process comes first. An existing
/// file that others may read is used as it is and reported at warn level.
pub fn from_data_dir(data_dir: &Path) -> anyhow::Result<TokenKeys> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(KEY_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = hex(&rand_bytes());
            file.write_all(key.as_bytes()).and_then(|()| file.sync_all()).context("writing the token key")?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => warn_if_others_can_read(&path),
        Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
    }
    // Another process may have created the file an instant ago and still be writing it.
    let mut key = String::new();
    for _ in 0..50 {
        key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if key.len() == KEY_CHARS {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    anyhow::ensure!(key.len() == KEY_CHARS, "{} is not a token key", path.display());
    Ok(TokenKeys::new(key.as_bytes()))
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                mode = format!("{mode:o}"),
                "the token key file {} can be read by other users, who could forge v2 tokens: chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_path: &Path) {}

fn rand_bytes() -> [u8; 32] {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(a.as_bytes());
    bytes[16..].copy_from_slice(b.as_bytes());
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = from_data_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = from_data_dir(dir.path()).unwrap();
        let t = uuid::Uuid::new_v4();
        assert_eq!(second.is_organiser(t, &first.organiser(t).unwrap()), Ok(true));
    }

    #[test]
    fn a_short_configured_secret_is_refused_and_a_blank_one_is_unset() {
        assert!(configured(Some("short")).is_err());
        assert!(configured(Some("  ")).unwrap().is_none());
        assert!(configured(Some("a secret of enough length")).unwrap().is_some());
    }
}
