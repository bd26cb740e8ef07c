//! Damage to the log, byte by byte: each kind has its documented outcome, and no valid record
//! is ever lost.
//!
//! Every test fills a log with five tournaments of three records each, appended in turns, so
//! the records of a tournament are spread over the log: record `i` is tournament `i % 5`,
//! version `i / 5 + 1`.

use super::*;
use domain::ports::{EventMetadata, UniqueKey};
use domain::{PlayerLimit, PlayerName, PlayerSurname, TournamentEvent, TournamentName};
use std::io::Write;

const STREAMS: usize = 5;
const VERSIONS: usize = 3;

fn request(stream_id: Uuid, version: usize, n: usize) -> AppendRequest {
    let name = format!("Night {n}");
    let event = match version {
        1 => TournamentEvent::TournamentCreated {
            name: TournamentName::parse(&name).unwrap(),
            player_limit: PlayerLimit::new(4).unwrap(),
        },
        v => TournamentEvent::PlayerJoined {
            name: PlayerName::parse(&format!("Player{v}")).unwrap(),
            surname: PlayerSurname::parse("S").unwrap(),
        },
    };
    AppendRequest {
        stream_id,
        expected_version: version as u64 - 1,
        events: vec![event],
        metadata: EventMetadata { request_id: Some(Uuid::new_v4()), recorded_at_ms: 7 },
        claims: if version == 1 { vec![UniqueKey::tournament_name(&name)] } else { vec![] },
        releases: vec![],
    }
}

/// A filled log: the streams, the events each holds, and where every record is.
struct Filled {
    dir: tempfile::TempDir,
    ids: Vec<Uuid>,
    events: Vec<Vec<RecordedEvent>>,
    /// Offset and length (header included) of every record, in log order.
    records: Vec<(u64, u64)>,
}

impl Filled {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<Uuid> = (0..STREAMS).map(|_| Uuid::new_v4()).collect();
        let mut events = vec![Vec::new(); STREAMS];
        let store = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
        for version in 1..=VERSIONS {
            for (n, id) in ids.iter().enumerate() {
                events[n].extend(store.append(request(*id, version, n)).await.unwrap());
            }
        }
        drop(store);
        let log = File::open(dir.path().join(LOG_FILE)).unwrap();
        let mut scanner = Scanner::new(&log, 0, log.metadata().unwrap().len());
        let mut records = Vec::new();
        while let Some(Step::Record { offset, payload, .. }) = scanner.next_step().unwrap() {
            records.push((offset, (HEADER_LEN + payload.len()) as u64));
        }
        assert_eq!(records.len(), STREAMS * VERSIONS);
        Self { dir, ids, events, records }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.log()).unwrap()
    }

    fn rewrite(&self, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self.bytes();
        edit(&mut bytes);
        std::fs::write(self.log(), bytes).unwrap();
    }

    fn open(&self) -> Result<EmbeddedEventStore, StoreError> {
        EmbeddedEventStore::open_with(self.dir.path(), no_checkpoints())
    }

    /// The error start-up gives; it must name the log and the offset and say what to run.
    fn refused_at(&self, offset: u64) -> String {
        let message = match self.open() {
            Ok(_) => panic!("the store opened on a damaged log"),
            Err(StoreError::Corrupt(message)) => message,
            Err(other) => panic!("unexpected {other:?}"),
        };
        let dir = self.dir.path().display();
        assert!(message.contains(&format!("{dir}/{LOG_FILE} at byte {offset}:")), "{message}");
        assert!(message.contains(&format!("lct store repair --data-dir {dir}")), "{message}");
        message
    }

    /// Loads every stream and checks it holds exactly the expected versions, byte-identical to
    /// what was appended.
    async fn assert_holds(&self, store: &EmbeddedEventStore, versions_per_stream: &[usize]) {
        for (n, id) in self.ids.iter().enumerate() {
            let loaded = store.load(*id, 0).await.unwrap();
            assert_eq!(loaded, self.events[n][..versions_per_stream[n]], "stream {n}");
        }
    }

    fn quarantined(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join(QUARANTINE_DIR))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
    }
}

fn no_checkpoints() -> EmbeddedOptions {
    EmbeddedOptions { checkpoint_every: u64::MAX, checkpoint_at_open_and_close: u64::MAX }
}

const ALL: [usize; STREAMS] = [VERSIONS; STREAMS];

#[tokio::test]
async fn a_byte_damaged_in_the_middle_stops_start_up_and_repair_keeps_every_other_record() {
    let log = Filled::new().await;
    // Record 12 is the last of stream 2 (version 3), with records of other streams after it.
    let (offset, len) = log.records[12];
    let original = log.bytes()[offset as usize..(offset + len) as usize].to_vec();
    log.rewrite(|b| b[offset as usize + 40] ^= 0x01);

    log.refused_at(offset);
    let report = verify(log.dir.path()).unwrap();
    assert!(report.needs_repair());
    assert_eq!(report.findings, vec![Finding { offset, len, kind: FindingKind::Damaged }]);
    assert_eq!(report.records, 14);

    let repaired = repair(log.dir.path()).unwrap();
    assert_eq!(repaired.removed.len(), 1);
    let mut damaged = original.clone();
    damaged[40] ^= 0x01;
    assert_eq!(log.quarantined(), vec![damaged], "the quarantine holds the damaged bytes as they were");
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[2] = 2;
    log.assert_holds(&store, &expected).await;
    // The lost version can be written again.
    store.append(request(log.ids[2], 3, 2)).await.unwrap();
    assert!(verify(log.dir.path()).unwrap().findings.is_empty());
}

#[tokio::test]
async fn records_after_a_damaged_one_of_the_same_tournament_go_to_the_quarantine_with_it() {
    let log = Filled::new().await;
    // Record 6 is stream 1 version 2; record 11 (version 3) cannot be replayed without it.
    let (offset, _) = log.records[6];
    log.rewrite(|b| b[offset as usize + 60] ^= 0x20);
    log.refused_at(offset);
    let repaired = repair(log.dir.path()).unwrap();
    // The damaged bytes cannot say whose they were; record 11 is found not to follow.
    let kinds: Vec<_> = repaired.removed.iter().map(|(f, _)| f.kind.clone()).collect();
    assert!(matches!(kinds[..], [FindingKind::Damaged, FindingKind::OutOfSequence(_)]), "{kinds:?}");
    assert_eq!(repaired.removed[1].0.offset, log.records[11].0);
    assert_eq!(repaired.kept_records, 13);
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[1] = 1;
    log.assert_holds(&store, &expected).await;
}

#[tokio::test]
async fn a_flipped_length_field_in_the_middle_stops_start_up_and_repair_cuts_only_that_record() {
    let log = Filled::new().await;
    let (offset, len) = log.records[13];
    for flipped in [0x01u8, 0x80] {
        let log_bytes = log.bytes();
        log.rewrite(|b| b[offset as usize] ^= flipped);
        log.refused_at(offset);
        let report = verify(log.dir.path()).unwrap();
        assert_eq!(report.findings, vec![Finding { offset, len, kind: FindingKind::Damaged }], "flip {flipped:#x}");
        std::fs::write(log.log(), log_bytes).unwrap();
    }
    log.rewrite(|b| b[offset as usize + 3] ^= 0x10);
    log.refused_at(offset);
    repair(log.dir.path()).unwrap();
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[3] = 2;
    log.assert_holds(&store, &expected).await;
}

#[tokio::test]
async fn a_byte_damaged_in_the_last_record_stops_start_up_rather_than_cutting_it() {
    let log = Filled::new().await;
    let (offset, len) = *log.records.last().unwrap();
    log.rewrite(|b| b[offset as usize + 30] ^= 0x04);
    let before = log.bytes();
    log.refused_at(offset);
    assert_eq!(log.bytes(), before, "start-up changed nothing");
    let report = verify(log.dir.path()).unwrap();
    assert_eq!(report.findings, vec![Finding { offset, len, kind: FindingKind::DamagedTail }]);
    repair(log.dir.path()).unwrap();
    assert_eq!(log.quarantined(), vec![before[offset as usize..].to_vec()]);
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[4] = 2;
    log.assert_holds(&store, &expected).await;
}

#[tokio::test]
async fn a_log_truncated_mid_record_opens_and_the_next_write_cuts_the_torn_record_into_the_quarantine() {
    let log = Filled::new().await;
    let (offset, len) = *log.records.last().unwrap();
    for cut in [3, HEADER_LEN as u64, len / 2, len - 1] {
        let full = log.bytes();
        std::fs::OpenOptions::new().write(true).open(log.log()).unwrap().set_len(offset + cut).unwrap();
        let store = log.open().unwrap();
        let mut expected = ALL;
        expected[4] = 2;
        log.assert_holds(&store, &expected).await;
        assert_eq!(std::fs::metadata(log.log()).unwrap().len(), offset + cut, "reads leave the tail alone");
        let report = verify(log.dir.path()).unwrap();
        assert_eq!(report.findings, vec![Finding { offset, len: cut, kind: FindingKind::TornTail }]);
        assert!(!report.needs_repair());
        drop(store);
        std::fs::write(log.log(), full).unwrap();
    }

    // The next write cuts the torn record (keeping its bytes) and goes on from there.
    let full = log.bytes();
    std::fs::OpenOptions::new().write(true).open(log.log()).unwrap().set_len(offset + 20).unwrap();
    let store = log.open().unwrap();
    store.append(request(log.ids[4], 3, 4)).await.unwrap();
    assert_eq!(log.quarantined(), vec![full[offset as usize..offset as usize + 20].to_vec()]);
    drop(store);
    assert!(verify(log.dir.path()).unwrap().findings.is_empty());
    let store = log.open().unwrap();
    assert_eq!(store.load(log.ids[4], 0).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_tail_of_zeros_is_a_torn_write_and_is_cut_by_the_next_write() {
    let log = Filled::new().await;
    let end = log.bytes().len() as u64;
    log.rewrite(|b| b.extend_from_slice(&[0; 4096]));
    let store = log.open().unwrap();
    log.assert_holds(&store, &ALL).await;
    let extra = Uuid::new_v4();
    store.append(request(extra, 1, 99)).await.unwrap();
    assert_eq!(log.quarantined(), vec![vec![0; 4096]]);
    assert!(std::fs::metadata(log.log()).unwrap().len() > end);
    drop(store);
    let store = log.open().unwrap();
    log.assert_holds(&store, &ALL).await;
    assert_eq!(store.load(extra, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_flipped_length_field_in_the_last_record_stops_start_up_and_is_never_cut_as_torn() {
    let log = Filled::new().await;
    let (offset, len) = *log.records.last().unwrap();
    let set_len = |b: &mut Vec<u8>, payload_len: u64| {
        b[offset as usize..offset as usize + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    };
    let payload_len = len - HEADER_LEN as u64;
    let original = log.bytes();
    // Longer than the file: the record seems to run past the end, but its bytes up to the end
    // match its checksum, which the prefix a write cut short leaves cannot. It may be an
    // acknowledged commit: lct stops rather than cut it.
    log.rewrite(|b| set_len(b, payload_len + 1000));
    log.refused_at(offset);
    assert_eq!(verify(log.dir.path()).unwrap().findings, vec![Finding { offset, len, kind: FindingKind::DamagedTail }]);
    // Cut short for real (its last byte gone) with the same header: a torn write, cut off.
    log.rewrite(|b| {
        b.pop();
    });
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[4] = 2;
    log.assert_holds(&store, &expected).await;
    drop(store);
    assert_eq!(verify(log.dir.path()).unwrap().findings[0].kind, FindingKind::TornTail);
    // Shorter than the record: a whole record whose checksum fails.
    log.rewrite(|b| {
        *b = original;
        set_len(b, payload_len - 5);
    });
    log.refused_at(offset);
    assert_eq!(verify(log.dir.path()).unwrap().findings, vec![Finding { offset, len, kind: FindingKind::DamagedTail }]);
}

#[tokio::test]
async fn a_torn_tail_rewritten_to_the_same_length_is_read_by_a_process_that_saw_it_torn() {
    let log = Filled::new().await;
    let whole = log.bytes();
    let (offset, _) = *log.records.last().unwrap();
    // The last record's space allocated by the file system, its bytes never written: zeros.
    log.rewrite(|b| b[offset as usize..].fill(0));
    let store = log.open().unwrap();
    let mut expected = ALL;
    expected[4] = 2;
    log.assert_holds(&store, &expected).await;
    // Another process cuts the zeros and writes a record of the same length there (the retried
    // command): the log is as long as when this one saw it torn.
    log.rewrite(|b| b[offset as usize..].copy_from_slice(&whole[offset as usize..]));
    log.assert_holds(&store, &ALL).await;
}

#[tokio::test]
async fn a_record_with_a_valid_checksum_that_does_not_decode_stops_start_up() {
    let log = Filled::new().await;
    let (offset, len) = log.records[7];
    // Replace the payload by JSON of the same length that is not a record.
    log.rewrite(|b| {
        let payload_len = len as usize - HEADER_LEN;
        let mut replacement = vec![b' '; payload_len];
        replacement[0] = b'[';
        replacement[payload_len - 1] = b']';
        let mut framed = Vec::new();
        format::frame(&replacement, &mut framed);
        b[offset as usize..(offset + len) as usize].copy_from_slice(&framed);
    });
    let message = log.refused_at(offset);
    assert!(message.contains("cannot be decoded"), "{message}");
    let report = verify(log.dir.path()).unwrap();
    assert!(matches!(report.findings[0].kind, FindingKind::Undecodable(_)), "{report}");
    repair(log.dir.path()).unwrap();
    let store = log.open().unwrap();
    let mut expected = ALL;
    // Record 7 was stream 2 version 2; its version 3 (record 12) is orphaned: stream 2 has no
    // stream id in the undecodable record, so the gap is found at record 12.
    expected[2] = 1;
    log.assert_holds(&store, &expected).await;
}

#[tokio::test]
async fn a_torn_record_another_process_left_is_ignored_by_reads_and_cut_by_the_next_write() {
    let log = Filled::new().await;
    let store = log.open().unwrap();
    let end = log.bytes().len() as u64;
    // A process that died in the middle of a write left half a record.
    let mut file = std::fs::OpenOptions::new().append(true).open(log.log()).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']).unwrap();
    drop(file);
    log.assert_holds(&store, &ALL).await;
    store.check().await.unwrap();
    assert_eq!(std::fs::metadata(log.log()).unwrap().len(), end + 10);
    let extra = Uuid::new_v4();
    store.append(request(extra, 1, 42)).await.unwrap();
    assert_eq!(log.quarantined(), vec![vec![200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']]);
    drop(store);
    let store = log.open().unwrap();
    log.assert_holds(&store, &ALL).await;
    assert_eq!(store.load(extra, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn damage_in_the_middle_found_while_running_fails_operations_and_cuts_nothing() {
    let log = Filled::new().await;
    let store = log.open().unwrap();
    let other = log.open().unwrap();
    // The other process appends; then its record is damaged before this one reads it, and
    // more records follow.
    other.append(request(log.ids[0], 4, 0)).await.unwrap();
    other.append(request(log.ids[1], 4, 1)).await.unwrap();
    drop(other);
    let before = log.bytes();
    let damaged_at = log.records.last().map(|(o, l)| o + l).unwrap();
    log.rewrite(|b| b[damaged_at as usize + 50] ^= 0x08);
    assert!(matches!(store.load(log.ids[0], 0).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(store.check().await, Err(StoreError::Corrupt(_))));
    assert!(matches!(store.append(request(log.ids[3], 4, 3)).await, Err(StoreError::Corrupt(_))));
    assert_eq!(log.bytes().len(), before.len(), "nothing was cut or written");
}

/// The bytes of the one record `request` makes, framed as a store writes it.
async fn framed(request: AppendRequest) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    store.append(request).await.unwrap();
    drop(store);
    std::fs::read(dir.path().join(LOG_FILE)).unwrap()
}

#[tokio::test]
async fn start_up_does_not_keep_a_failed_write_another_process_cut_back_while_it_read() {
    let log = Filled::new().await;
    let (ghost, real) = (Uuid::new_v4(), Uuid::new_v4());
    // Another process's batch, written but not yet fsynced, as start-up's first pass reads.
    let failed = framed(request(ghost, 1, 77)).await;
    let committed = framed(request(real, 1, 78)).await;
    assert_eq!(failed.len(), committed.len(), "a batch of the same length takes its place");
    let before = log.bytes().len() as u64;
    std::fs::OpenOptions::new().append(true).open(log.log()).unwrap().write_all(&failed).unwrap();
    // Between start-up's two passes, the other process's fsync fails: it cuts its batch back
    // and commits the next one in its place.
    let path = log.log();
    BETWEEN_PASSES.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move || {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(before).unwrap();
            drop(file);
            file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(&committed).unwrap();
        }))
    });
    let store = log.open().unwrap();
    assert!(BETWEEN_PASSES.with(|hook| hook.borrow().is_none()), "start-up read the log in two passes");
    log.assert_holds(&store, &ALL).await;
    assert!(store.load(ghost, 0).await.unwrap().is_empty(), "the failed write is not the store's");
    assert_eq!(store.load(real, 0).await.unwrap().len(), 1, "the write that took its place is");
    assert!(store.append(request(Uuid::new_v4(), 1, 77)).await.is_ok(), "the failed write's name is free");
    let taken = store.append(request(Uuid::new_v4(), 1, 78)).await;
    assert!(matches!(taken, Err(StoreError::UniqueTaken(_))), "{taken:?}");
}

#[tokio::test]
async fn a_failed_write_left_over_is_not_cut_once_another_process_wrote_in_its_place() {
    let log = Filled::new().await;
    let store = log.open().unwrap();
    let before = log.bytes().len() as u64;
    // This process's batch is written, its fsync fails, and so does every cut back.
    store.shared.faults.syncs.store(1, std::sync::atomic::Ordering::SeqCst);
    store.shared.faults.cuts.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    assert!(store.append(request(Uuid::new_v4(), 1, 77)).await.is_err());
    // Another process sharing the directory cuts those bytes (as it cuts a torn tail) and
    // commits a batch of the same length in their place.
    let (real, committed) = {
        let real = Uuid::new_v4();
        (real, framed(request(real, 1, 78)).await)
    };
    assert_eq!(log.bytes().len() as u64, before + committed.len() as u64, "a batch of the same length");
    let file = std::fs::OpenOptions::new().write(true).open(log.log()).unwrap();
    file.set_len(before).unwrap();
    drop(file);
    std::fs::OpenOptions::new().append(true).open(log.log()).unwrap().write_all(&committed).unwrap();
    // This process's next write must not cut the other's acknowledged batch.
    store.append(request(Uuid::new_v4(), 1, 79)).await.unwrap();
    assert_eq!(store.load(real, 0).await.unwrap().len(), 1);
    drop(store);
    let reopened = log.open().unwrap();
    assert_eq!(reopened.load(real, 0).await.unwrap().len(), 1, "the other process's batch survives");
    log.assert_holds(&reopened, &ALL).await;
}

#[tokio::test]
async fn a_commit_of_an_event_this_version_cannot_read_fails_its_tournament_s_reads_only() {
    let log = Filled::new().await;
    let newer = Uuid::new_v4();
    // A commit a newer version wrote, of an event type this one does not know.
    let record = framed(request(newer, 1, 77)).await;
    let payload = String::from_utf8(record[HEADER_LEN..].to_vec()).unwrap();
    assert!(payload.contains(r#""type":"TournamentCreated""#), "{payload}");
    let payload = payload.replace(r#""type":"TournamentCreated""#, r#""type":"TournamentArchived""#);
    let mut unknown = Vec::new();
    format::frame(payload.as_bytes(), &mut unknown);
    let offset = log.bytes().len() as u64;
    std::fs::OpenOptions::new().append(true).open(log.log()).unwrap().write_all(&unknown).unwrap();

    let store = log.open().expect("lct starts");
    log.assert_holds(&store, &ALL).await;
    match store.load(newer, 0).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains(&format!("at byte {offset}")), "{message}"),
        other => panic!("expected the record to be named, got {other:?}"),
    }
    let report = verify(log.dir.path()).unwrap();
    assert!(report.needs_repair(), "{report}");
    assert!(report.findings.iter().any(|f| f.offset == offset), "{report}");
}
