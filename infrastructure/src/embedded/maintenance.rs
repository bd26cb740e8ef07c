//! Checking and repairing a data directory (`lct store verify`, `lct store repair`), and the
//! quarantine where removed bytes are kept.
//!
//! Both read the whole log and decode every event. A record is *valid* when its checksum holds,
//! it decodes, and it continues its stream's versions. What is not valid:
//! - bytes that are not a record (damage in the middle, a damaged or torn tail);
//! - a record with a valid checksum that does not decode;
//! - a record whose versions do not continue its stream (its predecessor was lost), and every
//!   later record of that stream, which cannot be replayed without it (*orphaned*).
//!
//! `repair` copies each of those to `quarantine/`, writes a new log holding every valid record
//! byte for byte, swaps it in, and drops the index checkpoint. It refuses to run while any
//! process has the store open.

use super::format::{Damage, DamageKind, Kind, RecordFull, RecordHead, Scanner, Step, HEADER_LEN};
use super::index::{CommitFacts, Index};
use super::{checkpoint, io_error, LOCK_FILE, LOG_FILE, QUARANTINE_DIR};
use domain::ports::StoreError;
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Something in the log that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub offset: u64,
    pub len: u64,
    pub kind: FindingKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// The log ends in a record cut short by a crash; the next write cuts it off by itself.
    TornTail,
    /// The log ends in a whole record whose length or checksum is wrong.
    DamagedTail,
    /// Bytes that are not a record, with valid records after them.
    Damaged,
    /// A record with a valid checksum that does not decode.
    Undecodable(String),
    /// A record whose versions do not continue its stream.
    OutOfSequence(String),
    /// A record of a stream whose earlier record is missing or invalid.
    Orphaned(Uuid),
}

impl Finding {
    /// Whether lct starts with this in its log (only a torn tail, which it cuts itself).
    pub fn blocks_start(&self) -> bool {
        self.kind != FindingKind::TornTail
    }

    fn tag(&self) -> &'static str {
        match self.kind {
            FindingKind::TornTail => "torn",
            FindingKind::DamagedTail | FindingKind::Damaged => "damaged",
            FindingKind::Undecodable(_) => "undecodable",
            FindingKind::OutOfSequence(_) => "out-of-sequence",
            FindingKind::Orphaned(_) => "orphaned",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}..{} ({} bytes): ", self.offset, self.offset + self.len, self.len)?;
        match &self.kind {
            FindingKind::TornTail => f.write_str("a record cut short at the end of the log (an interrupted write)"),
            FindingKind::DamagedTail => f.write_str("a damaged record at the end of the log"),
            FindingKind::Damaged => f.write_str("damaged bytes that are not a record, with valid records after them"),
            FindingKind::Undecodable(why) => write!(f, "a record with a valid checksum that does not decode: {why}"),
            FindingKind::OutOfSequence(why) => write!(f, "a record out of sequence: {why}"),
            FindingKind::Orphaned(stream) => {
                write!(f, "a record of tournament {stream}, which cannot be replayed past an earlier invalid record")
            }
        }
    }
}

fn finding_of(damage: &Damage) -> Finding {
    let kind = match damage.kind {
        DamageKind::Middle => FindingKind::Damaged,
        DamageKind::TornTail => FindingKind::TornTail,
        DamageKind::DamagedTail => FindingKind::DamagedTail,
    };
    Finding { offset: damage.offset, len: damage.len(), kind }
}

/// What `verify` found in a data directory.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub log: PathBuf,
    pub bytes: u64,
    pub records: u64,
    /// Snapshot records written by earlier versions (ignored).
    pub legacy_snapshots: u64,
    pub streams: usize,
    pub events: u64,
    pub claims: usize,
    pub findings: Vec<Finding>,
    pub checkpoint: CheckpointState,
    pub quarantined_files: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointState {
    Missing,
    /// Matches the log up to the offset it covers.
    Matches,
    /// Damaged or made from another log: start-up ignores it and rebuilds it.
    Ignored,
}

impl VerifyReport {
    /// Whether lct refuses to start on this directory until it is repaired.
    pub fn needs_repair(&self) -> bool {
        self.findings.iter().any(Finding::blocks_start)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "log: {} ({} bytes)", self.log.display(), self.bytes)?;
        writeln!(
            f,
            "valid records: {} ({} tournaments, {} events, {} claimed names{})",
            self.records,
            self.streams,
            self.events,
            self.claims,
            match self.legacy_snapshots {
                0 => String::new(),
                n => format!(", {n} snapshot records of an earlier version, ignored"),
            }
        )?;
        let checkpoint = match self.checkpoint {
            CheckpointState::Missing => "none (start-up reads the whole log and writes one)",
            CheckpointState::Matches => "matches the log",
            CheckpointState::Ignored => "does not match the log (start-up ignores it and writes a new one)",
        };
        writeln!(f, "index checkpoint: {checkpoint}")?;
        if self.quarantined_files > 0 {
            writeln!(f, "quarantine: {} file(s) in {}", self.quarantined_files, QUARANTINE_DIR)?;
        }
        for finding in &self.findings {
            writeln!(f, "problem: {finding}")?;
        }
        let dir = self.log.parent().unwrap_or(Path::new(".")).display();
        if self.needs_repair() {
            write!(
                f,
                "state: DAMAGED: lct will not start on this directory. Stop every lct process using it, then run \
                 `lct store repair --data-dir {dir}` (it moves the problems above to {dir}/{QUARANTINE_DIR} and keeps \
                 every valid record)"
            )
        } else if self.findings.is_empty() {
            write!(f, "state: healthy")
        } else {
            write!(
                f,
                "state: usable: the torn record at the end is cut off by the next write (its bytes are kept in \
                 {dir}/{QUARANTINE_DIR})"
            )
        }
    }
}

/// One stretch of the log and whether it is kept.
struct Span {
    offset: u64,
    len: u64,
    finding: Option<Finding>,
}

/// Reads the whole log: every record checked and decoded.
struct Audit {
    report: VerifyReport,
    spans: Vec<Span>,
}

fn audit(dir: &Path, log: &File, locked: bool) -> Result<Audit, StoreError> {
    let read_error = |e| io_error("reading the event log", e);
    let mut index = Index::default();
    let mut report = VerifyReport {
        log: dir.join(LOG_FILE),
        bytes: 0,
        records: 0,
        legacy_snapshots: 0,
        streams: 0,
        events: 0,
        claims: 0,
        findings: Vec::new(),
        checkpoint: CheckpointState::Missing,
        quarantined_files: std::fs::read_dir(dir.join(QUARANTINE_DIR)).map_or(0, |d| d.count()),
    };
    let mut spans: Vec<Span> = Vec::new();
    // Streams with an invalid record, by the offset where that was found.
    let mut broken: HashMap<Uuid, u64> = HashMap::new();
    let keep = |spans: &mut Vec<Span>, offset: u64, len: u64| match spans.last_mut() {
        Some(last) if last.finding.is_none() && last.offset + last.len == offset => last.len += len,
        _ => spans.push(Span { offset, len, finding: None }),
    };
    let mut end = log.metadata().map_err(read_error)?.len();
    let mut scanner = Scanner::new(log, 0, end);
    let mut shared_lock = None;
    loop {
        let step = scanner.next_step().map_err(read_error)?;
        let (offset, header, payload) = match step {
            None => break,
            Some(Step::Damage(damage)) if !locked && shared_lock.is_none() && damage.kind != DamageKind::Middle => {
                // A tail may be a write going on: look again under a shared lock, from there.
                let file = File::open(dir.join(LOG_FILE)).map_err(read_error)?;
                file.lock_shared().map_err(|e| io_error("locking the event log", e))?;
                shared_lock = Some(file);
                end = log.metadata().map_err(read_error)?.len();
                scanner = Scanner::new(log, damage.offset, end);
                continue;
            }
            Some(Step::Damage(damage)) => {
                let finding = finding_of(&damage);
                spans.push(Span { offset: damage.offset, len: damage.len(), finding: Some(finding.clone()) });
                report.findings.push(finding);
                continue;
            }
            Some(Step::Record { offset, header, payload }) => (offset, header, payload),
        };
        let len = (HEADER_LEN + payload.len()) as u64;
        let invalid = |kind| Finding { offset, len, kind };
        let finding = match serde_json::from_slice::<RecordFull>(payload) {
            Err(error) => {
                if let Ok(head) = serde_json::from_slice::<RecordHead>(payload) {
                    broken.entry(head.stream_id).or_insert(offset);
                }
                Some(invalid(FindingKind::Undecodable(error.to_string())))
            }
            Ok(record) if record.kind == Kind::Snapshot => {
                report.legacy_snapshots += 1;
                None
            }
            Ok(record) if broken.contains_key(&record.stream_id) => {
                Some(invalid(FindingKind::Orphaned(record.stream_id)))
            }
            Ok(record) => {
                let versions = record.events.iter().map(|e| e.version).collect();
                let facts = CommitFacts {
                    stream_id: record.stream_id,
                    versions,
                    claims: &record.claims,
                    releases: &record.releases,
                };
                let misplaced = record.events.iter().any(|e| e.stream_id != record.stream_id);
                match index.check_sequence(&facts) {
                    Err(gap) => {
                        broken.insert(record.stream_id, offset);
                        Some(invalid(FindingKind::OutOfSequence(gap.to_string())))
                    }
                    Ok(()) if misplaced => {
                        broken.insert(record.stream_id, offset);
                        Some(invalid(FindingKind::Undecodable("an event names another stream".into())))
                    }
                    Ok(()) => {
                        index.offset = offset;
                        index.apply(&header, payload.len(), Some(&facts));
                        report.events += record.events.len() as u64;
                        None
                    }
                }
            }
        };
        match finding {
            Some(finding) => {
                spans.push(Span { offset, len, finding: Some(finding.clone()) });
                report.findings.push(finding);
            }
            None => {
                report.records += 1;
                keep(&mut spans, offset, len);
            }
        }
    }
    drop(shared_lock);
    report.bytes = end;
    report.streams = index.streams.len();
    report.claims = index.owners.len();
    report.checkpoint = match std::fs::read(dir.join(checkpoint::FILE)) {
        Err(_) => CheckpointState::Missing,
        Ok(bytes) => match checkpoint::decode(&bytes) {
            Some(c) if checkpoint_matches(log, &c) => CheckpointState::Matches,
            _ => CheckpointState::Ignored,
        },
    };
    Ok(Audit { report, spans })
}

fn checkpoint_matches(log: &File, checkpoint: &checkpoint::Checkpoint) -> bool {
    let Ok(meta) = log.metadata() else { return false };
    if checkpoint.covered > meta.len() {
        return false;
    }
    let mut scanner = Scanner::new(log, 0, checkpoint.covered);
    let mut digest = crc32fast::Hasher::new();
    loop {
        match scanner.next_step() {
            Ok(Some(Step::Record { header, .. })) => digest.update(&header),
            Ok(None) => return digest.finalize() == checkpoint.digest,
            _ => return false,
        }
    }
}

/// Reads the data directory's log and reports its state. Safe while lct runs.
/// Errors: `Unavailable` when the directory or its log cannot be read.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport, StoreError> {
    let dir = dir.as_ref();
    let path = dir.join(LOG_FILE);
    let log = File::open(&path).map_err(|e| io_error(&format!("opening {}", path.display()), e))?;
    Ok(audit(dir, &log, false)?.report)
}

/// What `repair` did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    pub log: PathBuf,
    /// What was moved out of the log, and the quarantine file that holds its bytes.
    pub removed: Vec<(Finding, PathBuf)>,
    pub kept_records: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.removed.is_empty() {
            return write!(f, "{}: nothing to repair ({} valid records)", self.log.display(), self.kept_records);
        }
        for (finding, saved) in &self.removed {
            writeln!(f, "moved to quarantine: {finding}\n  -> {}", saved.display())?;
        }
        write!(
            f,
            "{}: rewritten with all {} valid records, byte for byte ({} bytes, was {}); the index checkpoint was \
             removed and is rebuilt at the next start",
            self.log.display(),
            self.kept_records,
            self.bytes_after,
            self.bytes_before
        )
    }
}

/// Moves everything that is not a valid record out of the log into the quarantine and keeps
/// every valid record byte for byte. Refuses to run while a process has the store open.
/// Errors: `Unavailable` when the directory is in use or cannot be written.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport, StoreError> {
    let dir = dir.as_ref();
    let presence = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| io_error("opening the data directory's lock file", e))?;
    match presence.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StoreError::Unavailable(format!(
                "an lct process has {} open: stop every process using it, then repair",
                dir.display()
            )))
        }
        Err(TryLockError::Error(e)) => return Err(io_error("locking the data directory", e)),
    }
    let path = dir.join(LOG_FILE);
    let log = File::open(&path).map_err(|e| io_error(&format!("opening {}", path.display()), e))?;
    log.lock().map_err(|e| io_error("locking the event log", e))?;
    let Audit { report, spans } = audit(dir, &log, true)?;
    let mut outcome = RepairReport {
        log: path.clone(),
        removed: Vec::new(),
        kept_records: report.records,
        bytes_before: report.bytes,
        bytes_after: report.bytes,
    };
    if report.findings.is_empty() {
        return Ok(outcome);
    }
    let write_error = |e| io_error("writing the repaired log", e);
    let new_path = dir.join(format!("{LOG_FILE}.repairing"));
    let mut new_log = File::create(&new_path).map_err(write_error)?;
    let mut written = 0;
    for span in &spans {
        match &span.finding {
            Some(finding) => {
                let saved = quarantine(dir, &log, span.offset, span.offset + span.len, finding.tag())
                    .map_err(|e| io_error("writing to the quarantine", e))?;
                outcome.removed.push((finding.clone(), saved));
            }
            None => {
                copy_range(&log, span.offset, span.offset + span.len, &mut new_log).map_err(write_error)?;
                written += span.len;
            }
        }
    }
    new_log.sync_all().map_err(write_error)?;
    drop(new_log);
    let _ = std::fs::remove_file(dir.join(checkpoint::FILE));
    std::fs::rename(&new_path, &path).map_err(write_error)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(write_error)?;
    outcome.bytes_after = written;
    // The new log must now be clean; say so if it is not rather than claim success.
    let check = File::open(&path).map_err(|e| io_error("reopening the repaired log", e))?;
    let after = audit(dir, &check, true)?.report;
    if !after.findings.is_empty() || after.records != report.records {
        return Err(StoreError::Corrupt(format!(
            "the repaired log still has problems ({} findings, {} of {} records); the quarantine holds what was removed",
            after.findings.len(),
            after.records,
            report.records
        )));
    }
    drop(presence);
    Ok(outcome)
}

/// Copies `[from, to)` of `source` into a new file in the quarantine directory, named after the
/// log, the time, the offset and `what`; returns its path.
pub fn quarantine(dir: &Path, source: &File, from: u64, to: u64, what: &str) -> std::io::Result<PathBuf> {
    let quarantine = dir.join(QUARANTINE_DIR);
    if !quarantine.is_dir() {
        std::fs::create_dir_all(&quarantine)?;
        // Its entry in the data directory made durable too: the copy is what is left of the
        // bytes once the log is cut.
        File::open(dir)?.sync_all()?;
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut n = 0;
    let (path, mut file) = loop {
        let name = match n {
            0 => format!("{LOG_FILE}.{stamp}.at-{from}.{what}"),
            n => format!("{LOG_FILE}.{stamp}.at-{from}.{what}.{n}"),
        };
        let path = quarantine.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => break (path, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e),
        }
    };
    copy_range(source, from, to, &mut file)?;
    file.sync_all()?;
    File::open(&quarantine)?.sync_all()?;
    Ok(path)
}

fn copy_range(source: &File, from: u64, to: u64, target: &mut File) -> std::io::Result<()> {
    let mut buffer = vec![0; (to - from).min(1 << 20) as usize];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buffer.len());
        source.read_exact_at(&mut buffer[..n], at)?;
        target.write_all(&buffer[..n])?;
        at += n as u64;
    }
    Ok(())
}
