//! The embedded event store used when no MongoDB is configured.
//!
//! All commits go to one append-only log file, `events.log`, in the data directory. A record
//! is `[len: u32 LE][crc32: u32 LE][JSON]`; one record holds one whole commit (its events and
//! its unique-value claims and releases), so a commit is atomic. Every process keeps an index
//! of the log in memory and catches up from its last offset before each operation.
//!
//! Several processes may share the directory: appends take an exclusive `flock` on the log
//! (re-checking the version and the claims after catching up), reads take a shared one. A
//! record cut short by a crash fails its length or checksum; readers stop before it and the
//! next writer truncates it away. Appends are fsynced before they are acknowledged.
//!
//! Writes go through one writer thread per store that commits whatever has queued up while the
//! previous fsync ran as one batch: one lock, one write and one fsync for the batch, each
//! append checked in order against the log and the appends before it (group commit). Reads
//! that find the index and the file lock free are served on the calling thread; otherwise they
//! wait on the blocking pool.

use async_trait::async_trait;
use domain::ports::{AppendRequest, EventStore, RecordedEvent, Snapshot, StoreError, UniqueKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const LOG_FILE: &str = "events.log";
const HEADER_LEN: usize = 8;
/// Larger records are taken for corruption rather than allocated.
const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// One record of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Record {
    #[serde(rename_all = "camelCase")]
    Commit {
        stream_id: Uuid,
        events: Vec<RecordedEvent>,
        claims: Vec<UniqueKey>,
        releases: Vec<UniqueKey>,
    },
    Snapshot(Snapshot),
}

/// The in-memory index of the log up to `offset`.
struct Index {
    file: File,
    offset: u64,
    streams: HashMap<Uuid, Vec<RecordedEvent>>,
    owners: HashMap<UniqueKey, Uuid>,
    snapshots: HashMap<Uuid, Snapshot>,
}

/// Durable event store in a local directory, safe to share between processes on one host.
#[derive(Clone)]
pub struct EmbeddedEventStore {
    index: Arc<Mutex<Index>>,
    path: PathBuf,
    writer: std::sync::mpsc::Sender<Pending>,
}

/// A write waiting for the writer thread.
enum Pending {
    Append(AppendRequest, tokio::sync::oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>),
    Snapshot(Snapshot, tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// Most writes committed together.
const MAX_BATCH: usize = 256;

fn io_error(context: &str, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}

impl EmbeddedEventStore {
    /// Opens (creating if needed) the store in `dir` and reads the log.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating the data directory", e))?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error("opening the event log", e))?;
        let mut index =
            Index { file, offset: 0, streams: HashMap::new(), owners: HashMap::new(), snapshots: HashMap::new() };
        index.file.lock_shared().map_err(|e| io_error("locking the event log", e))?;
        let caught_up = index.catch_up(false);
        let _ = index.file.unlock();
        caught_up?;
        let index = Arc::new(Mutex::new(index));
        let (writer, writes) = std::sync::mpsc::channel();
        let shared = Arc::clone(&index);
        std::thread::Builder::new()
            .name("lct-event-log".into())
            .spawn(move || write_loop(&shared, &writes))
            .map_err(|e| io_error("starting the event log writer", e))?;
        Ok(Self { index, path, writer })
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on the index caught up with the log, under a shared lock of the file.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Index) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Fast path: nobody holds the index or an exclusive lock on the file, so the read takes
        // microseconds and needs no thread of the blocking pool.
        if let Ok(mut index) = self.index.try_lock() {
            if index.file.try_lock_shared().is_ok() {
                let result = index.catch_up(false).and_then(|()| op(&index));
                let _ = index.file.unlock();
                return result;
            }
        }
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || {
            let mut index = index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            index.file.lock_shared().map_err(|e| io_error("locking the event log", e))?;
            let result = index.catch_up(false).and_then(|()| op(&index));
            let _ = index.file.unlock();
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("event store task failed: {e}")))?
    }

    /// Hands a write to the writer thread and waits for its outcome.
    async fn write<T>(
        &self,
        write: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> Pending,
    ) -> Result<T, StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.writer.send(write(done)).map_err(|_| StoreError::Unavailable("the event log writer stopped".into()))?;
        outcome.await.map_err(|_| StoreError::Unavailable("the event log writer stopped".into()))?
    }
}

/// The writer thread: takes what has queued up, commits it as one batch, answers each write.
/// Ends when the last handle of the store is dropped.
fn write_loop(index: &Mutex<Index>, writes: &std::sync::mpsc::Receiver<Pending>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let mut index = index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        index.commit(batch);
    }
}

impl Index {
    /// Applies the records written since `offset`. A torn tail is left alone by readers and
    /// cut off by a writer (who holds the exclusive lock, so no one is writing it).
    fn catch_up(&mut self, exclusive: bool) -> Result<(), StoreError> {
        let len = self.file.metadata().map_err(|e| io_error("reading the event log", e))?.len();
        if len <= self.offset {
            return Ok(());
        }
        let mut buffer = Vec::with_capacity((len - self.offset) as usize);
        self.file.seek(SeekFrom::Start(self.offset)).map_err(|e| io_error("reading the event log", e))?;
        (&self.file)
            .take(len - self.offset)
            .read_to_end(&mut buffer)
            .map_err(|e| io_error("reading the event log", e))?;
        let mut at = 0usize;
        while let Some((record, used)) = parse_record(&buffer[at..]) {
            let record: Record = serde_json::from_slice(record)
                .map_err(|e| StoreError::Corrupt(format!("record at byte {}: {e}", self.offset)))?;
            self.apply(record);
            at += used;
            self.offset += used as u64;
        }
        if at < buffer.len() && exclusive {
            tracing::warn!(
                offset = self.offset,
                bytes = buffer.len() - at,
                "truncating a torn record at the end of the event log"
            );
            self.file.set_len(self.offset).map_err(|e| io_error("truncating the event log", e))?;
            self.file.sync_all().map_err(|e| io_error("syncing the event log", e))?;
        }
        Ok(())
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Commit { stream_id, events, claims, releases } => {
                for key in releases {
                    if self.owners.get(&key) == Some(&stream_id) {
                        self.owners.remove(&key);
                    }
                }
                for key in claims {
                    self.owners.insert(key, stream_id);
                }
                self.streams.entry(stream_id).or_default().extend(events);
            }
            Record::Snapshot(snapshot) => {
                let newer = self
                    .snapshots
                    .get(&snapshot.stream_id)
                    .is_none_or(|old| old.state.version < snapshot.state.version);
                if newer {
                    self.snapshots.insert(snapshot.stream_id, snapshot);
                }
            }
        }
    }

    fn version(&self, stream_id: &Uuid) -> u64 {
        self.streams.get(stream_id).map_or(0, |events| events.len() as u64)
    }

    /// Commits a batch: under the exclusive file lock, checks each write in order against the
    /// log and the writes before it, writes the accepted records with one write and one fsync,
    /// then answers every write. If the write fails, nothing of the batch is kept: the log is
    /// cut back and the index re-read.
    fn commit(&mut self, batch: Vec<Pending>) {
        let prepared = self
            .file
            .lock()
            .map_err(|e| io_error("locking the event log", e))
            .and_then(|()| self.catch_up(true));
        if let Err(error) = prepared {
            let _ = self.file.unlock();
            for write in batch {
                write.answer(Err(error.clone()));
            }
            return;
        }
        let start = self.offset;
        let mut bytes = Vec::new();
        // Per write: the events it recorded (none for a snapshot), or why it was refused.
        let mut outcomes = Vec::with_capacity(batch.len());
        for write in &batch {
            let outcome = match write {
                Pending::Append(request, _) => self.accept(request).map(|(record, events)| {
                    encode(&record, &mut bytes);
                    self.apply(record);
                    events
                }),
                Pending::Snapshot(snapshot, _) => {
                    let stale = self
                        .snapshots
                        .get(&snapshot.stream_id)
                        .is_some_and(|old| old.state.version >= snapshot.state.version);
                    if !stale {
                        let record = Record::Snapshot(snapshot.clone());
                        encode(&record, &mut bytes);
                        self.apply(record);
                    }
                    Ok(Vec::new())
                }
            };
            outcomes.push(outcome);
        }
        let mut failure = None;
        if !bytes.is_empty() {
            match self.file.write_all(&bytes).and_then(|()| self.file.sync_data()) {
                Ok(()) => self.offset += bytes.len() as u64,
                Err(error) => {
                    failure = Some(io_error("writing the event log", error));
                    let _ = self.file.set_len(start);
                    self.reload();
                }
            }
        }
        let _ = self.file.unlock();
        for (write, outcome) in batch.into_iter().zip(outcomes) {
            match &failure {
                Some(error) if outcome.is_ok() => write.answer(Err(error.clone())),
                _ => write.answer(outcome),
            }
        }
    }

    /// Checks an append against the index; the record to write and the events it records.
    fn accept(&self, request: &AppendRequest) -> Result<(Record, Vec<RecordedEvent>), StoreError> {
        let actual = self.version(&request.stream_id);
        if actual != request.expected_version {
            return Err(StoreError::VersionConflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            });
        }
        for key in &request.claims {
            match self.owners.get(key) {
                Some(owner) if *owner != request.stream_id => return Err(StoreError::UniqueTaken(key.clone())),
                _ => {}
            }
        }
        let events = request.recorded();
        let record = Record::Commit {
            stream_id: request.stream_id,
            events: events.clone(),
            claims: request.claims.clone(),
            releases: request.releases.clone(),
        };
        Ok((record, events))
    }

    /// Forgets the index and reads the log again from the start (after a failed write, whose
    /// records were applied in memory but are not in the log).
    fn reload(&mut self) {
        self.offset = 0;
        self.streams.clear();
        self.owners.clear();
        self.snapshots.clear();
        if let Err(error) = self.catch_up(false) {
            tracing::error!(%error, "the event log could not be re-read after a failed write");
        }
    }
}

impl Pending {
    /// Answers the write: an append gets its recorded events, a snapshot only whether it
    /// was saved.
    fn answer(self, outcome: Result<Vec<RecordedEvent>, StoreError>) {
        match self {
            Pending::Append(_, done) => {
                let _ = done.send(outcome);
            }
            Pending::Snapshot(_, done) => {
                let _ = done.send(outcome.map(drop));
            }
        }
    }
}

/// Appends `[len][crc32][JSON]` of a record to `bytes`.
fn encode(record: &Record, bytes: &mut Vec<u8>) {
    let payload = serde_json::to_vec(record).expect("records serialise");
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
}

/// The payload of the first whole, intact record of `bytes` and the bytes it spans.
fn parse_record(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len > MAX_RECORD_LEN {
        return None;
    }
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len as usize)?;
    (crc32fast::hash(payload) == crc).then_some((payload, HEADER_LEN + len as usize))
}

#[async_trait]
impl EventStore for EmbeddedEventStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |index| {
            Ok(index
                .streams
                .get(&stream_id)
                .map(|events| events.iter().skip(after_version as usize).cloned().collect())
                .unwrap_or_default())
        })
        .await
    }

    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        self.write(|done| Pending::Append(request, done)).await
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError> {
        self.read(move |index| Ok(index.snapshots.get(&stream_id).cloned())).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        self.write(|done| Pending::Snapshot(snapshot, done)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read(|_| Ok(())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::EventMetadata;
    use domain::{PlayerLimit, TournamentEvent, TournamentName};

    fn created(name: &str) -> TournamentEvent {
        TournamentEvent::TournamentCreated {
            name: TournamentName::parse(name).unwrap(),
            player_limit: PlayerLimit::new(4).unwrap(),
        }
    }

    fn append(stream_id: Uuid, name: &str) -> AppendRequest {
        AppendRequest {
            stream_id,
            expected_version: 0,
            events: vec![created(name)],
            metadata: EventMetadata { request_id: None, recorded_at_ms: 1 },
            claims: vec![UniqueKey::tournament_name(name)],
            releases: vec![],
        }
    }

    crate::event_store_contract_tests!({
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedEventStore::open(dir.path()).unwrap();
        (std::sync::Arc::new(store) as std::sync::Arc<dyn EventStore>, dir)
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_committed_together_keep_every_rule_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedEventStore::open(dir.path()).unwrap());
        // 60 new streams at once: 40 names, 10 of which two more streams race for...
        let ids: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();
        let mut tasks = Vec::new();
        for (i, id) in ids.iter().copied().enumerate() {
            let store = Arc::clone(&store);
            let name = if i < 40 { format!("Night {i}") } else { format!("Night {}", i % 10) };
            tasks.push(tokio::spawn(async move { store.append(append(id, &name)).await }));
        }
        // ...and 10 appends of one stream at the same expected version.
        let contested = Uuid::new_v4();
        for i in 0..10 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move { store.append(append(contested, &format!("Contested {i}"))).await }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert!(results[10..40].iter().all(Result::is_ok), "uncontested names all commit");
        let mut winners = Vec::new();
        for k in 0..10 {
            let contenders = [k, 40 + k, 50 + k];
            let won: Vec<usize> = contenders.into_iter().filter(|&i| results[i].is_ok()).collect();
            assert_eq!(won.len(), 1, "one stream gets 'Night {k}'");
            for i in contenders.into_iter().filter(|i| !won.contains(i)) {
                assert!(matches!(results[i], Err(StoreError::UniqueTaken(_))), "{:?}", results[i]);
            }
            winners.extend(won);
        }
        let contested_ok = results[60..].iter().filter(|r| r.is_ok()).count();
        let conflicts = results[60..].iter().filter(|r| matches!(r, Err(StoreError::VersionConflict { .. }))).count();
        assert_eq!((contested_ok, conflicts), (1, 9), "one append per expected version");

        drop(store);
        let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let committed = (10..40).contains(&i) || winners.contains(&i);
            assert_eq!(reopened.load(*id, 0).await.unwrap().len(), usize::from(committed), "stream {i}");
        }
        assert_eq!(reopened.load(contested, 0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_survive_reopening_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        EmbeddedEventStore::open(dir.path()).unwrap().append(append(id, "Friday")).await.unwrap();
        let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
        assert_eq!(reopened.load(id, 0).await.unwrap().len(), 1);
        let err = reopened.append(append(Uuid::new_v4(), "Friday")).await.unwrap_err();
        assert!(matches!(err, StoreError::UniqueTaken(_)));
    }

    #[tokio::test]
    async fn a_torn_tail_is_ignored_and_cut_off_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let store = EmbeddedEventStore::open(dir.path()).unwrap();
        store.append(append(id, "Friday")).await.unwrap();
        let good_len = std::fs::metadata(store.log_path()).unwrap().len();
        // A crash in the middle of a write leaves half a record behind.
        let mut file = OpenOptions::new().append(true).open(store.log_path()).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
        drop(store);

        let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
        assert_eq!(reopened.load(id, 0).await.unwrap().len(), 1);
        let other = Uuid::new_v4();
        reopened.append(append(other, "Saturday")).await.unwrap();
        assert!(std::fs::metadata(reopened.log_path()).unwrap().len() > good_len);
        let again = EmbeddedEventStore::open(dir.path()).unwrap();
        assert_eq!(again.load(other, 0).await.unwrap().len(), 1);
        assert_eq!(again.load(id, 0).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_sharing_a_directory_never_double_book_a_version_or_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = EmbeddedEventStore::open(dir.path()).unwrap();
        let b = EmbeddedEventStore::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                // Every writer claims the same name for its own stream.
                let stream = if i == 0 { id } else { Uuid::new_v4() };
                store.append(append(stream, "Contested")).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => winners += 1,
                Err(StoreError::UniqueTaken(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners, 1);

        let stream = Uuid::new_v4();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let mut request = append(stream, &format!("T{i}"));
                request.claims.clear();
                store.append(request).await
            }));
        }
        let results: Vec<_> = futures_join(tasks).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert_eq!(a.load(stream, 0).await.unwrap(), b.load(stream, 0).await.unwrap());
    }

    async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }
}
