//! The embedded event store used when no MongoDB is configured.
//!
//! All commits go to one append-only log, `events.log`, in the data directory; one record holds
//! one whole commit (its events, and the unique values it claims and releases), so a commit is
//! atomic (see [`format`] for the bytes). Every process keeps an **index** of the log in memory:
//! for each stream the offsets of its records and the version each ends at, and the owner of
//! each unique value; never event bodies. A load reads the stream's own records from the file,
//! so memory does not grow with the events stored, only with the number of records and streams.
//!
//! **Start-up** checks the checksum of every record of the log. It reads the index checkpoint
//! `events.idx` (see [`checkpoint`]) and parses only the records after it; without a matching
//! checkpoint it parses them all. Damage decides what happens next:
//! - a record cut short at the very end (a write interrupted by a crash), with nothing intact
//!   after it, is left alone by readers and cut off by the next writer, which first copies its
//!   bytes to `quarantine/`;
//! - anything else (damage with valid records after it, a whole record at the end whose
//!   checksum fails, a record that does not decode or does not continue its stream) stops
//!   start-up with an error naming the file and the offset and saying what to do:
//!   [`verify`] reports, and [`repair`] moves what cannot be read to `quarantine/`, keeping
//!   every valid record byte for byte.
//!
//! **Snapshots**: this store keeps none. A load reads only the stream's own records (a
//! tournament has a few dozen), so a snapshot would save little and grow the log; it answers
//! `None` and accepts (and drops) what it is given.
//!
//! **Several processes** may share the directory. Writes take an exclusive `flock` on the log,
//! catch the index up with what others wrote, check each append against it (expected version,
//! claims), write and fsync; every operation first catches up with records other processes
//! appended (a `stat` when nothing changed). Each process holds a shared lock on `lct.lock`
//! while it has the store open, so that [`repair`] can refuse to run under a live server.
//!
//! Writes go through one writer thread per store that commits whatever queued up while the
//! previous fsync ran as one batch: one lock, one write, one fsync for the batch, each append
//! checked in order against the log and the appends before it (group commit). The index is not
//! locked during the write and fsync, so reads go on meanwhile.

mod checkpoint;
mod format;
mod index;
mod maintenance;
mod writer;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;

pub use maintenance::{repair, verify, CheckpointState, Finding, FindingKind, RepairReport, VerifyReport};

use async_trait::async_trait;
use domain::ports::{AppendRequest, EventStore, RecordedEvent, Snapshot, StoreError};
use format::{Damage, DamageKind, Kind, RecordBody, RecordHead, Scanner, Step, HEADER_LEN};
use index::{CommitFacts, Index, RecordRef};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

pub const LOG_FILE: &str = "events.log";
/// Held (shared) by every process that has the store open.
pub const LOCK_FILE: &str = "lct.lock";
pub const QUARANTINE_DIR: &str = "quarantine";

/// Tuning of the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// A new index checkpoint is written once the log has grown this much past the last one.
    pub checkpoint_every: u64,
    /// At start-up and when the store closes, a checkpoint is written if more than this was
    /// read or written since the last one.
    pub checkpoint_at_open_and_close: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { checkpoint_every: 64 << 20, checkpoint_at_open_and_close: 1 << 20 }
    }
}

fn io_error(context: &str, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest wait of a read for another process's writer to let go of the log: a commit holds it
/// for a write and an fsync, a writer whose failed write could not be undone until it is.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handle and the writer thread share.
struct Shared {
    dir: PathBuf,
    log_path: PathBuf,
    /// For positional reads, the length, and shared locks (taken only under `state`).
    reader: File,
    state: Mutex<State>,
    options: EmbeddedOptions,
    #[cfg(test)]
    faults: writer::Faults,
}

struct State {
    index: Index,
    /// Our writer thread is writing a batch at `index.offset`: bytes past it are its own.
    in_flight: bool,
    /// A failed batch could not be cut back: the log's bytes from `index.offset` to its end are
    /// not the store's. The writer cuts them before its next write.
    left_over: Option<LeftOver>,
    /// The torn record the log was last found to end in.
    torn: Option<Torn>,
    /// The offset the last checkpoint written or read covers.
    checkpointed: u64,
}

/// Durable event store in a local directory, safe to share between processes on one host.
#[derive(Clone)]
pub struct EmbeddedEventStore {
    shared: Arc<Shared>,
    writer: Arc<writer::Handle>,
}

impl EmbeddedEventStore {
    /// Opens (creating if needed) the store in `dir`: checks the log and builds the index.
    /// Errors: `Corrupt` when the log is damaged anywhere but in a torn last record (the
    /// message names the file, the offset and the repair command), `Unavailable` when the
    /// directory cannot be used.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("creating the data directory", e))?;
        let presence = hold_presence_lock(&dir)?;
        let log_path = dir.join(LOG_FILE);
        let created = !log_path.exists();
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| io_error("opening the event log", e))?;
        if created {
            // Make the new file's name durable too.
            let _ = File::open(&dir).and_then(|d| d.sync_all());
        }
        let reader = File::open(&log_path).map_err(|e| io_error("opening the event log", e))?;
        let started = std::time::Instant::now();
        let Built { index, checkpointed, torn } = build_index(&dir, &log_path, &reader)?;
        tracing::info!(
            file.path = %log_path.display(),
            bytes = index.offset,
            records = index.records,
            streams = index.streams.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded event store opened"
        );
        let state = State { index, in_flight: false, left_over: None, torn, checkpointed };
        let shared = Arc::new(Shared {
            dir,
            log_path,
            reader,
            state: Mutex::new(state),
            options,
            #[cfg(test)]
            faults: writer::Faults::default(),
        });
        let writer = writer::Handle::start(Arc::clone(&shared), log, presence)?;
        Ok(Self { shared, writer: Arc::new(writer) })
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.shared.log_path
    }

    /// Catches the index up with the log, on the blocking pool when another writer holds it.
    async fn refresh(&self) -> Result<(), StoreError> {
        if self.shared.refresh_now()? {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.refresh_waiting())
            .await
            .map_err(|e| StoreError::Unavailable(format!("event store task failed: {e}")))?
    }
}

/// Takes a shared lock on `lct.lock` for as long as the returned file is open.
fn hold_presence_lock(dir: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| io_error("opening the data directory's lock file", e))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is being repaired (`lct store repair` holds it); start lct when it has finished",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(io_error("locking the data directory", e)),
    }
}

/// The error for damage found in the log: where, what, and what to do.
fn damage_error(dir: &Path, offset: u64, what: impl std::fmt::Display) -> StoreError {
    let dir = dir.display();
    StoreError::Corrupt(format!(
        "{dir}/{LOG_FILE} at byte {offset}: {what}. The store does not go on past damage, so that no valid record \
         is lost. Stop every lct process using {dir}, run `lct store verify --data-dir {dir}` to see the damage, \
         then `lct store repair --data-dir {dir}`: it moves what cannot be read to {dir}/{QUARANTINE_DIR} and \
         keeps every valid record"
    ))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.reader.metadata().map_err(|e| io_error("reading the event log", e))?.len())
    }

    /// Catches up if that needs no waiting. `false`: a writer holds the log; wait for it.
    fn refresh_now(&self) -> Result<bool, StoreError> {
        let mut state = self.state();
        let len = self.log_len()?;
        if self.up_to_date(&state, len)? {
            return Ok(true);
        }
        match self.reader.try_lock_shared() {
            Ok(()) => {
                let caught_up = self.catch_up(&mut state, None);
                let _ = self.reader.unlock();
                caught_up.map(|()| true)
            }
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(io_error("locking the event log", e)),
        }
    }

    /// Waits for a shared lock of the log (on a handle of its own, so that the index is not held
    /// meanwhile), for [`WRITER_WAIT`] at most, then catches up.
    fn refresh_waiting(&self) -> Result<(), StoreError> {
        let file = File::open(&self.log_path).map_err(|e| io_error("opening the event log", e))?;
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            match file.try_lock_shared() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Unavailable(
                        "another process's writer holds the event log (a write it could not undo); try again".into(),
                    ))
                }
                Err(TryLockError::Error(e)) => return Err(io_error("locking the event log", e)),
            }
        }
        let mut state = self.state();
        self.catch_up(&mut state, None)
    }

    /// Applies the records written since the index's offset. The caller holds a lock of the log
    /// (shared, or exclusive with `writer` given). A torn record at the end is left alone by a
    /// reader and cut off by a writer, after copying it to the quarantine; any other damage is
    /// an error, and nothing is cut.
    fn catch_up(&self, state: &mut State, writer: Option<&File>) -> Result<(), StoreError> {
        let len = self.log_len()?;
        if len < state.index.offset {
            return Err(StoreError::Corrupt(format!(
                "{} is shorter ({len} bytes) than what this process has read ({} bytes): it was replaced or cut \
                 while lct was running; restart lct",
                self.log_path.display(),
                state.index.offset
            )));
        }
        if writer.is_none() && self.up_to_date(state, len)? {
            return Ok(());
        }
        state.torn = None;
        let mut scanner = Scanner::new(&self.reader, state.index.offset, len);
        while let Some(step) = scanner.next_step().map_err(|e| io_error("reading the event log", e))? {
            match step {
                Step::Record { offset, header, payload } => {
                    apply_record(&self.dir, &mut state.index, offset, &header, payload)?
                }
                Step::Damage(damage) => match (damage.kind, writer) {
                    (DamageKind::TornTail, None) => state.torn = Some(Torn::seen(&self.reader, len, damage)?),
                    (DamageKind::TornTail, Some(log)) => self.cut(log, damage)?,
                    _ => return Err(damage_error(&self.dir, damage.offset, damage.describe())),
                },
            }
        }
        Ok(())
    }

    /// Cuts a torn record off the end of the log after saving it in the quarantine.
    fn cut(&self, log: &File, damage: Damage) -> Result<(), StoreError> {
        let saved = maintenance::quarantine(&self.dir, &self.reader, damage.offset, damage.end, "torn")
            .map_err(|e| io_error("saving a torn record in the quarantine", e))?;
        tracing::warn!(
            offset = damage.offset,
            bytes = damage.len(),
            saved = %saved.display(),
            "cut a torn record off the end of the event log"
        );
        log.set_len(damage.offset).and_then(|()| log.sync_all()).map_err(|e| io_error("cutting the event log", e))
    }

    /// The stream's events above `after_version`, read from its records.
    fn read_events(
        &self,
        stream_id: Uuid,
        after_version: u64,
        records: &[RecordRef],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut buffer = Vec::new();
        for record in records {
            buffer.resize(HEADER_LEN + record.len as usize, 0);
            self.reader.read_exact_at(&mut buffer, record.offset).map_err(|e| io_error("reading the event log", e))?;
            let (header, payload) = buffer.split_at(HEADER_LEN);
            if !format::intact(header, payload) {
                return Err(damage_error(&self.dir, record.offset, "a record of the index fails its checksum"));
            }
            let body: RecordBody = serde_json::from_slice(payload)
                .map_err(|e| damage_error(&self.dir, record.offset, format!("a record cannot be decoded ({e})")))?;
            if body.kind != Kind::Commit || body.stream_id != stream_id {
                return Err(damage_error(
                    &self.dir,
                    record.offset,
                    format!("the record is not one of stream {stream_id}"),
                ));
            }
            for event in body.events.into_iter().filter(|e| e.version > after_version) {
                let expected = after_version + events.len() as u64 + 1;
                if event.version != expected || event.stream_id != stream_id {
                    return Err(damage_error(
                        &self.dir,
                        record.offset,
                        format!("stream {stream_id} has version {} where {expected} was expected", event.version),
                    ));
                }
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Writes a checkpoint of the index if the log grew more than `threshold` past the last one.
    fn checkpoint_if_grown(&self, threshold: u64) {
        let (bytes, covered) = {
            let state = self.state();
            if state.index.offset.saturating_sub(state.checkpointed) < threshold.max(1) {
                return;
            }
            (checkpoint::encode(&state.index), state.index.offset)
        };
        match checkpoint::write(&self.dir, &bytes) {
            Ok(()) => {
                let mut state = self.state();
                state.checkpointed = state.checkpointed.max(covered);
                tracing::debug!(covered, bytes = bytes.len(), "index checkpoint written");
            }
            Err(error) => tracing::warn!(%error, "the index checkpoint could not be written"),
        }
    }
}

impl Shared {
    /// Whether the index covers everything readable in a log of `len` bytes: nothing was
    /// written since, or only our writer's batch or the failed batch it left over, or the log
    /// still ends in the torn record last seen, byte for byte (a tail cut and written again to
    /// the same length is new).
    fn up_to_date(&self, state: &State, len: u64) -> Result<bool, StoreError> {
        if len == state.index.offset
            || (state.in_flight && len > state.index.offset)
            || state.left_over.is_some_and(|left| left.end == len)
        {
            return Ok(true);
        }
        match &state.torn {
            Some(torn) if torn.len == len => Ok(torn.unchanged(&self.reader)?),
            _ => Ok(false),
        }
    }
}

/// The bytes of a failed batch left in the log: where they end, and their checksum, which
/// tells them from bytes another process wrote in their place.
#[derive(Debug, Clone, Copy)]
struct LeftOver {
    end: u64,
    crc: u32,
}

/// A torn record the log was found to end in: the log's length then, the record, and the
/// checksum of its bytes.
#[derive(Debug, Clone, Copy)]
struct Torn {
    len: u64,
    damage: Damage,
    crc: u32,
}

impl Torn {
    /// Read under a lock of the log.
    fn seen(reader: &File, len: u64, damage: Damage) -> Result<Torn, StoreError> {
        let crc = Torn::checksum(reader, damage).map_err(|e| io_error("reading the event log", e))?;
        Ok(Torn { len, damage, crc })
    }

    /// Read without a lock: a log cut meanwhile has changed.
    fn unchanged(&self, reader: &File) -> Result<bool, StoreError> {
        match Torn::checksum(reader, self.damage) {
            Ok(crc) => Ok(crc == self.crc),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(io_error("reading the event log", e)),
        }
    }

    /// The checksum of the damaged bytes as the log holds them now.
    fn checksum(reader: &File, damage: Damage) -> std::io::Result<u32> {
        let mut bytes = vec![0; damage.len() as usize];
        reader.read_exact_at(&mut bytes, damage.offset)?;
        Ok(crc32fast::hash(&bytes))
    }
}

/// Decodes the record at `offset` and applies it, checking that it continues its stream.
fn apply_record(
    dir: &Path,
    index: &mut Index,
    offset: u64,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Result<(), StoreError> {
    let head: RecordHead = serde_json::from_slice(payload)
        .map_err(|e| damage_error(dir, offset, format!("a record with a valid checksum cannot be decoded ({e})")))?;
    if head.kind != Kind::Commit {
        index.apply(header, payload.len(), None);
        return Ok(());
    }
    let facts = CommitFacts::from_head(&head);
    index.check_sequence(&facts).map_err(|gap| damage_error(dir, offset, gap))?;
    index.apply(header, payload.len(), Some(&facts));
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Run by start-up between its first pass and its locked one: what another process does
    /// meanwhile, in a test.
    static BETWEEN_PASSES: std::cell::RefCell<Option<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(None) };
}

/// The index as start-up built it.
struct Built {
    index: Index,
    /// The offset the checkpoint it started from covered (0 without one).
    checkpointed: u64,
    /// The log's torn last record, if it ends in one.
    torn: Option<Torn>,
}

/// Builds the index of the log at start-up: from the checkpoint when the log matches it,
/// otherwise from the whole log. Every record's checksum is checked either way.
fn build_index(dir: &Path, log_path: &Path, reader: &File) -> Result<Built, StoreError> {
    let read_error = |e| io_error("reading the event log", e);
    let (mut index, mut checkpointed) = starting_point(dir, log_path, reader);
    // First without a lock, which leaves other processes free to write meanwhile. It stops at
    // the first damage, which may be a write still going on. The records it reads may be a
    // batch whose fsync is failing, which its writer then cuts back: the last of them is
    // checked under the lock.
    let len = reader.metadata().map_err(read_error)?.len();
    let mut scanner = Scanner::new(reader, index.offset, len);
    let mut last = None;
    while let Some(Step::Record { offset, header, payload }) = scanner.next_step().map_err(read_error)? {
        apply_record(dir, &mut index, offset, &header, payload)?;
        last = Some((offset, header));
    }
    #[cfg(test)]
    if let Some(hook) = BETWEEN_PASSES.with(|hook| hook.borrow_mut().take()) {
        hook();
    }
    // Then the rest under a shared lock, where damage is what it seems.
    reader.lock_shared().map_err(|e| io_error("locking the event log", e))?;
    let rest = (|| {
        if !still_there(reader, index.offset, last).map_err(read_error)? {
            tracing::warn!(
                file.path = %log_path.display(),
                "the event log was cut back while start-up read it (another process's failed write); reading it again"
            );
            (index, checkpointed) = starting_point(dir, log_path, reader);
        }
        let len = reader.metadata().map_err(read_error)?.len();
        let mut scanner = Scanner::new(reader, index.offset, len);
        while let Some(step) = scanner.next_step().map_err(read_error)? {
            match step {
                Step::Record { offset, header, payload } => apply_record(dir, &mut index, offset, &header, payload)?,
                Step::Damage(damage) if damage.kind == DamageKind::TornTail => {
                    tracing::warn!(
                        file.path = %log_path.display(),
                        offset = damage.offset,
                        bytes = damage.len(),
                        "the event log ends in a record cut short by a crash; the next write cuts it off and keeps \
                         its bytes in the quarantine"
                    );
                    return Torn::seen(reader, len, damage).map(Some);
                }
                Step::Damage(damage) => return Err(damage_error(dir, damage.offset, damage.describe())),
            }
        }
        Ok(None)
    })();
    let _ = reader.unlock();
    Ok(Built { index, checkpointed, torn: rest? })
}

/// The index start-up begins from, and the offset it covers: the checkpoint's when the log
/// matches it, otherwise an empty one.
fn starting_point(dir: &Path, log_path: &Path, reader: &File) -> (Index, u64) {
    match checkpoint::read(dir).and_then(|c| checked_against_log(log_path, reader, c)) {
        Some(checkpoint) => (checkpoint.index, checkpoint.covered),
        None => (Index::default(), 0),
    }
}

/// Whether the log still holds what a pass read up to `offset`, `last` being the last record it
/// read (a log is only ever cut back, so the last record still there means all of them are).
fn still_there(reader: &File, offset: u64, last: Option<(u64, [u8; HEADER_LEN])>) -> std::io::Result<bool> {
    if reader.metadata()?.len() < offset {
        return Ok(false);
    }
    let Some((at, header)) = last else {
        return Ok(true);
    };
    let mut now = [0u8; HEADER_LEN];
    reader.read_exact_at(&mut now, at)?;
    Ok(now == header)
}

/// The checkpoint if the log holds exactly the records it was made from: every record up to
/// the offset it covers is intact and their headers have its digest.
fn checked_against_log(
    log_path: &Path,
    reader: &File,
    checkpoint: checkpoint::Checkpoint,
) -> Option<checkpoint::Checkpoint> {
    let len = reader.metadata().ok()?.len();
    let mut verdict = None;
    if checkpoint.covered <= len {
        let mut scanner = Scanner::new(reader, 0, checkpoint.covered);
        let mut digest = crc32fast::Hasher::new();
        let mut whole = true;
        loop {
            match scanner.next_step() {
                Ok(Some(Step::Record { header, .. })) => digest.update(&header),
                Ok(None) => break,
                Ok(Some(Step::Damage(_))) | Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        verdict = Some(whole && digest.finalize() == checkpoint.digest);
    }
    if verdict == Some(true) {
        return Some(checkpoint);
    }
    tracing::warn!(
        file.path = %log_path.display(),
        covered = checkpoint.covered,
        "the index checkpoint does not match the event log; rebuilding the index from the log"
    );
    None
}

#[async_trait]
impl EventStore for EmbeddedEventStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.refresh().await?;
        let records = self.shared.state().index.records_after(&stream_id, after_version);
        self.shared.read_events(stream_id, after_version, &records)
    }

    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        self.writer.append(request).await
    }

    /// This store keeps no snapshots (see the module's documentation).
    async fn load_snapshot(&self, _stream_id: Uuid) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }

    async fn save_snapshot(&self, _snapshot: &Snapshot) -> Result<(), StoreError> {
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.refresh().await
    }

    /// From the index, after catching up with the log.
    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        self.refresh().await?;
        let state = self.shared.state();
        Ok(streams.iter().map(|stream| state.index.version(stream)).collect())
    }
}
