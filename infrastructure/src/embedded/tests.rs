use super::*;
use domain::ports::{EventMetadata, UniqueKey};
use domain::{PlayerLimit, PlayerName, PlayerSurname, TournamentEvent, TournamentName, TournamentState};

fn created(name: &str) -> TournamentEvent {
    TournamentEvent::TournamentCreated {
        name: TournamentName::parse(name).unwrap(),
        player_limit: PlayerLimit::new(4).unwrap(),
    }
}

fn joined(name: &str) -> TournamentEvent {
    TournamentEvent::PlayerJoined {
        name: PlayerName::parse(name).unwrap(),
        surname: PlayerSurname::parse("S").unwrap(),
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

fn join(stream_id: Uuid, expected_version: u64, name: &str) -> AppendRequest {
    AppendRequest {
        stream_id,
        expected_version,
        events: vec![joined(name)],
        metadata: EventMetadata { request_id: Some(Uuid::new_v4()), recorded_at_ms: 2 },
        claims: vec![],
        releases: vec![],
    }
}

/// Options that write a checkpoint after every batch and at every open and close.
fn eager_checkpoints() -> EmbeddedOptions {
    EmbeddedOptions { checkpoint_every: 1, checkpoint_at_open_and_close: 1 }
}

/// Options that never write a checkpoint.
fn no_checkpoints() -> EmbeddedOptions {
    EmbeddedOptions { checkpoint_every: u64::MAX, checkpoint_at_open_and_close: u64::MAX }
}

crate::event_store_contract_tests!(basic, racing; {
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
async fn events_and_claims_survive_reopening_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    let store = EmbeddedEventStore::open(dir.path()).unwrap();
    let recorded = store.append(append(id, "Friday")).await.unwrap();
    drop(store);
    let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load(id, 0).await.unwrap(), recorded);
    let err = reopened.append(append(Uuid::new_v4(), "Friday")).await.unwrap_err();
    assert!(matches!(err, StoreError::UniqueTaken(_)));
}

#[tokio::test]
async fn a_batch_that_renames_and_reuses_a_name_keeps_the_claims_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedEventStore::open(dir.path()).unwrap());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(append(a, "Old")).await.unwrap();
    let rename = AppendRequest {
        stream_id: a,
        expected_version: 1,
        events: vec![TournamentEvent::TournamentRenamed { name: TournamentName::parse("New").unwrap() }],
        metadata: EventMetadata { request_id: None, recorded_at_ms: 3 },
        claims: vec![UniqueKey::tournament_name("New")],
        releases: vec![UniqueKey::tournament_name("Old")],
    };
    // Queued together, the second sees the first's release.
    let (renamed, reused) = tokio::join!(store.append(rename), store.append(append(b, "Old")));
    renamed.unwrap();
    reused.unwrap();
    drop(store);
    let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
    assert!(matches!(reopened.append(append(Uuid::new_v4(), "Old")).await, Err(StoreError::UniqueTaken(_))));
    assert!(matches!(reopened.append(append(Uuid::new_v4(), "New")).await, Err(StoreError::UniqueTaken(_))));
    assert_eq!(reopened.load(a, 0).await.unwrap().len(), 2);
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
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(a.load(stream, 0).await.unwrap(), b.load(stream, 0).await.unwrap());
}

#[tokio::test]
async fn what_one_store_appends_the_other_reads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedEventStore::open(dir.path()).unwrap();
    let b = EmbeddedEventStore::open(dir.path()).unwrap();
    let id = Uuid::new_v4();
    a.append(append(id, "Shared")).await.unwrap();
    for version in 1..20 {
        let (writer, reader) = if version % 2 == 0 { (&a, &b) } else { (&b, &a) };
        writer.append(join(id, version, &format!("P{version}"))).await.unwrap();
        let loaded = reader.load(id, 0).await.unwrap();
        assert_eq!(loaded.len() as u64, version + 1, "the other store sees version {}", version + 1);
    }
    assert_eq!(a.load(id, 0).await.unwrap(), b.load(id, 0).await.unwrap());
    assert!(matches!(a.append(append(Uuid::new_v4(), "Shared")).await, Err(StoreError::UniqueTaken(_))));
}

#[tokio::test]
async fn the_store_keeps_no_snapshots_and_saving_one_does_not_grow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open(dir.path()).unwrap();
    let id = Uuid::new_v4();
    store.append(append(id, "Snap")).await.unwrap();
    let size = std::fs::metadata(store.log_path()).unwrap().len();
    let state = TournamentState::default().replay(&[created("Snap")]);
    store.save_snapshot(&Snapshot { stream_id: id, state }).await.unwrap();
    assert_eq!(store.load_snapshot(id).await.unwrap(), None);
    assert_eq!(std::fs::metadata(store.log_path()).unwrap().len(), size);
}

/// A log written by the previous version, with a snapshot record between commits.
#[tokio::test]
async fn a_log_with_snapshot_records_of_the_previous_version_opens_and_ignores_them() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    let events = [created("Legacy"), joined("Anna")];
    let recorded: Vec<RecordedEvent> = AppendRequest {
        stream_id: id,
        expected_version: 0,
        events: events.to_vec(),
        metadata: EventMetadata { request_id: None, recorded_at_ms: 5 },
        claims: vec![],
        releases: vec![],
    }
    .recorded();
    let commit = |events: &[RecordedEvent], claims: serde_json::Value| serde_json::json!({"kind": "commit", "streamId": id, "events": events, "claims": claims, "releases": []});
    let snapshot = serde_json::json!({
        "kind": "snapshot", "streamId": id, "state": TournamentState::default().replay(&events[..1])
    });
    let mut log = Vec::new();
    for payload in [
        commit(&recorded[..1], serde_json::json!([{"scope": "tournament-name", "value": "Legacy"}])),
        snapshot,
        commit(&recorded[1..], serde_json::json!([])),
    ] {
        format::frame(&serde_json::to_vec(&payload).unwrap(), &mut log);
    }
    std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();

    let store = EmbeddedEventStore::open(dir.path()).unwrap();
    assert_eq!(store.load(id, 0).await.unwrap(), recorded);
    assert_eq!(store.load(id, 1).await.unwrap(), recorded[1..]);
    assert!(matches!(store.append(append(Uuid::new_v4(), "Legacy")).await, Err(StoreError::UniqueTaken(_))));
    store.append(join(id, 2, "Ben")).await.unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!((report.records, report.legacy_snapshots, report.events), (4, 1, 3));
    assert!(report.findings.is_empty(), "{report}");
}

#[tokio::test]
async fn reopening_from_a_checkpoint_sees_the_records_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedEventStore::open_with(dir.path(), eager_checkpoints()).unwrap();
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        first.append(append(*id, &format!("Before {i}"))).await.unwrap();
    }
    drop(first);
    let covered = std::fs::metadata(dir.path().join(checkpoint::FILE)).map(|_| ()).is_ok();
    assert!(covered, "closing wrote a checkpoint");
    // A second process goes on without writing checkpoints: the one on disk falls behind.
    let second = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        second.append(join(*id, 1, &format!("P{i}"))).await.unwrap();
    }
    let later = Uuid::new_v4();
    second.append(append(later, "After")).await.unwrap();
    drop(second);
    let checkpoint = checkpoint::read(dir.path()).unwrap();
    assert!(checkpoint.covered < std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len());

    let reopened = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    for id in &ids {
        let events = reopened.load(*id, 0).await.unwrap();
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    }
    assert_eq!(reopened.load(later, 0).await.unwrap().len(), 1);
    assert!(matches!(reopened.append(append(Uuid::new_v4(), "Before 7")).await, Err(StoreError::UniqueTaken(_))));
    assert!(matches!(reopened.append(append(Uuid::new_v4(), "After")).await, Err(StoreError::UniqueTaken(_))));
    assert!(matches!(reopened.append(join(ids[3], 1, "X")).await, Err(StoreError::VersionConflict { actual: 2, .. })));
}

#[tokio::test]
async fn a_checkpoint_that_does_not_match_the_log_is_ignored_and_the_index_rebuilt() {
    // Two directories with different logs; the smaller one's checkpoint is put beside the larger.
    let (small, large) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small_store = EmbeddedEventStore::open_with(small.path(), eager_checkpoints()).unwrap();
    let ghost = Uuid::new_v4();
    small_store.append(append(ghost, "Only in the small log")).await.unwrap();
    drop(small_store);
    let large_store = EmbeddedEventStore::open_with(large.path(), no_checkpoints()).unwrap();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        large_store.append(append(*id, &format!("Large {i}"))).await.unwrap();
    }
    drop(large_store);
    std::fs::copy(small.path().join(checkpoint::FILE), large.path().join(checkpoint::FILE)).unwrap();
    assert_eq!(verify(large.path()).unwrap().checkpoint, CheckpointState::Ignored);

    let store = EmbeddedEventStore::open_with(large.path(), no_checkpoints()).unwrap();
    assert_eq!(store.load(ghost, 0).await.unwrap(), vec![]);
    for id in &ids {
        assert_eq!(store.load(*id, 0).await.unwrap().len(), 1);
    }
    store.append(append(Uuid::new_v4(), "Only in the small log")).await.unwrap();

    // A damaged checkpoint is ignored as well.
    drop(store);
    let path = large.path().join(checkpoint::FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let store = EmbeddedEventStore::open_with(large.path(), no_checkpoints()).unwrap();
    assert_eq!(store.load(ids[9], 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn repair_refuses_to_run_while_a_store_has_the_directory_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open(dir.path()).unwrap();
    store.append(append(Uuid::new_v4(), "Busy")).await.unwrap();
    let refused = repair(dir.path()).unwrap_err();
    assert!(matches!(&refused, StoreError::Unavailable(m) if m.contains("stop every process")), "{refused:?}");
    drop(store);
    let report = repair(dir.path()).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.kept_records, 1);
}

#[tokio::test]
async fn verify_reports_a_healthy_directory_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open_with(dir.path(), eager_checkpoints()).unwrap();
    for i in 0..3 {
        let id = Uuid::new_v4();
        store.append(append(id, &format!("Night {i}"))).await.unwrap();
        store.append(join(id, 1, "Anna")).await.unwrap();
    }
    drop(store);
    let report = verify(dir.path()).unwrap();
    assert_eq!((report.records, report.streams, report.events, report.claims), (6, 3, 6, 3));
    assert_eq!(report.checkpoint, CheckpointState::Matches);
    assert!(report.findings.is_empty() && !report.needs_repair());
    assert!(report.to_string().ends_with("state: healthy"), "{report}");
}

#[tokio::test]
async fn a_failed_batch_the_disk_would_not_let_go_of_is_never_read_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    let kept = Uuid::new_v4();
    store.append(append(kept, "Kept")).await.unwrap();
    // The disk takes the batch's bytes but fails their fsync, then every cut back until it
    // recovers.
    let faults = &store.shared.faults;
    faults.syncs.store(1, std::sync::atomic::Ordering::SeqCst);
    faults.cuts.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let lost = Uuid::new_v4();
    assert!(matches!(store.append(append(lost, "Lost")).await, Err(StoreError::Unavailable(_))));
    // Its caller was told it failed, so nobody reads it.
    assert!(store.load(lost, 0).await.unwrap().is_empty());
    // The next append is refused while the failed batch cannot be cut off, rather than
    // written after it.
    let next = Uuid::new_v4();
    assert!(matches!(store.append(append(next, "Next")).await, Err(StoreError::Unavailable(_))));
    assert!(store.load(lost, 0).await.unwrap().is_empty());
    // The disk recovers: the failed batch is cut off and the append committed.
    faults.cuts.store(0, std::sync::atomic::Ordering::SeqCst);
    store.append(append(next, "Next")).await.unwrap();
    assert!(store.load(lost, 0).await.unwrap().is_empty());
    let name_free = store.append(append(Uuid::new_v4(), "Lost")).await;
    assert!(name_free.is_ok(), "the failed batch's name claim is not held: {name_free:?}");
    drop(store);
    let reopened = EmbeddedEventStore::open(dir.path()).unwrap();
    assert!(reopened.load(lost, 0).await.unwrap().is_empty());
    assert_eq!(reopened.load(kept, 0).await.unwrap().len(), 1);
    assert_eq!(reopened.load(next, 0).await.unwrap().len(), 1);
    drop(reopened);
    assert!(!verify(dir.path()).unwrap().needs_repair());
}

#[tokio::test]
async fn an_append_refused_for_another_of_its_batch_that_failed_gets_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    store.shared.faults.syncs.store(1, std::sync::atomic::Ordering::SeqCst);
    // Two creates of one name committed together: the second is refused for the first, whose
    // write then fails.
    let log = std::fs::OpenOptions::new().read(true).append(true).open(store.log_path()).unwrap();
    let (first, first_answer) = tokio::sync::oneshot::channel();
    let (second, second_answer) = tokio::sync::oneshot::channel();
    let batch = vec![
        writer::Pending { request: append(Uuid::new_v4(), "Same"), answer: first },
        writer::Pending { request: append(Uuid::new_v4(), "Same"), answer: second },
    ];
    writer::commit(&store.shared, &log, batch);
    assert!(matches!(first_answer.await.unwrap(), Err(StoreError::Unavailable(_))));
    let second = second_answer.await.unwrap();
    assert!(matches!(second, Err(StoreError::Unavailable(_))), "the name is free, not taken: {second:?}");
    // Refusals the index itself makes stand.
    store.append(append(Uuid::new_v4(), "Taken")).await.unwrap();
    store.shared.faults.syncs.store(1, std::sync::atomic::Ordering::SeqCst);
    let (third, third_answer) = tokio::sync::oneshot::channel();
    let (fourth, fourth_answer) = tokio::sync::oneshot::channel();
    let batch = vec![
        writer::Pending { request: append(Uuid::new_v4(), "Other"), answer: third },
        writer::Pending { request: append(Uuid::new_v4(), "Taken"), answer: fourth },
    ];
    writer::commit(&store.shared, &log, batch);
    assert!(matches!(third_answer.await.unwrap(), Err(StoreError::Unavailable(_))));
    assert!(matches!(fourth_answer.await.unwrap(), Err(StoreError::UniqueTaken(_))));
}

#[tokio::test]
async fn another_store_sharing_the_directory_never_reads_a_failed_batch_left_over() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    let b = EmbeddedEventStore::open_with(dir.path(), no_checkpoints()).unwrap();
    a.append(append(Uuid::new_v4(), "Kept")).await.unwrap();
    // A's batch reaches the file, its fsync fails and so does the cut back, once.
    a.shared.faults.syncs.store(1, std::sync::atomic::Ordering::SeqCst);
    a.shared.faults.cuts.store(1, std::sync::atomic::Ordering::SeqCst);
    let lost = Uuid::new_v4();
    assert!(a.append(append(lost, "Lost")).await.is_err());
    // B waits while A cuts it off, then reads a log without it.
    assert!(b.load(lost, 0).await.unwrap().is_empty(), "B read a batch whose commands were answered 503");
    let next = Uuid::new_v4();
    b.append(append(next, "Lost")).await.expect("the failed batch's name is free");
    assert_eq!(a.load(next, 0).await.unwrap().len(), 1);
    assert!(a.load(lost, 0).await.unwrap().is_empty());
    b.check().await.unwrap();
    a.check().await.unwrap();
}
