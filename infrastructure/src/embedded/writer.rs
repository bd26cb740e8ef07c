//! The writer thread: group commit. It takes whatever appends queued up while the previous
//! batch was being written, and commits them as one batch: under the exclusive lock of the log
//! it catches the index up, checks each append in order against the index and the appends
//! before it, writes the accepted records with one write and one fsync, adds them to the index
//! and answers every append. The index is not held during the write and the fsync.

use super::format::{self, CommitOut, Kind, HEADER_LEN, MAX_RECORD_LEN};
use super::index::{BatchView, CommitFacts};
use super::{io_error, Shared};
use domain::ports::{AppendRequest, RecordedEvent, StoreError};
use std::fs::File;
use std::io::Write;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most appends committed together.
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>;

/// An append waiting for the writer thread.
struct Pending {
    request: AppendRequest,
    answer: Answer,
}

/// The handle of the writer thread; dropping the last one lets the thread finish its queue,
/// write a last checkpoint, and waits for it.
pub struct Handle {
    queue: Option<mpsc::Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Starts the thread; it owns the log's append handle and the directory's presence lock.
    pub fn start(shared: Arc<Shared>, log: File, presence: File) -> Result<Self, StoreError> {
        let (queue, appends) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lct-event-log".into())
            .spawn(move || {
                run(&shared, &log, &appends);
                drop(presence);
            })
            .map_err(|e| io_error("starting the event log writer", e))?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    pub async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        let stopped = || StoreError::Unavailable("the event log writer stopped".into());
        let (answer, outcome) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Pending { request, answer }).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, log: &File, appends: &mpsc::Receiver<Pending>) {
    shared.checkpoint_if_grown(shared.options.checkpoint_at_open_and_close);
    while let Ok(first) = appends.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        commit(shared, log, batch);
        shared.checkpoint_if_grown(shared.options.checkpoint_every);
    }
    shared.checkpoint_if_grown(shared.options.checkpoint_at_open_and_close);
}

/// One accepted append of a batch: where its record is in the batch's bytes.
struct Accepted {
    header: [u8; HEADER_LEN],
    payload_len: usize,
}

fn commit(shared: &Shared, log: &File, batch: Vec<Pending>) {
    if let Err(error) = log.lock() {
        let error = io_error("locking the event log", error);
        for pending in batch {
            let _ = pending.answer.send(Err(error.clone()));
        }
        return;
    }
    let mut bytes = Vec::new();
    // Per append: where its record is, or why it was refused.
    let mut outcomes: Vec<Result<Accepted, StoreError>> = Vec::with_capacity(batch.len());
    let start = {
        let mut state = shared.state();
        match shared.catch_up(&mut state, Some(log)) {
            Ok(()) => {
                let mut view = BatchView::default();
                for pending in &batch {
                    let outcome = payload(&pending.request).and_then(|payload| {
                        view.accept(&state.index, &pending.request)?;
                        let header = format::frame(&payload, &mut bytes);
                        Ok(Accepted { header, payload_len: payload.len() })
                    });
                    outcomes.push(outcome);
                }
                state.in_flight = !bytes.is_empty();
            }
            Err(error) => outcomes.extend(batch.iter().map(|_| Err(error.clone()))),
        }
        state.index.offset
    };
    let mut failure = None;
    if !bytes.is_empty() {
        let written = (&*log).write_all(&bytes).and_then(|()| log.sync_data());
        let mut state = shared.state();
        match written {
            Ok(()) => {
                for (pending, outcome) in batch.iter().zip(&outcomes) {
                    if let Ok(accepted) = outcome {
                        let facts = CommitFacts::from_request(&pending.request);
                        state.index.apply(&accepted.header, accepted.payload_len, Some(&facts));
                    }
                }
            }
            Err(error) => {
                // Nothing of the batch is kept: cut back what may have reached the file.
                if let Err(cut) = log.set_len(start).and_then(|()| log.sync_all()) {
                    tracing::error!(%cut, "the event log could not be cut back after a failed write");
                }
                failure = Some(io_error("writing the event log", error));
            }
        }
        state.in_flight = false;
    }
    let _ = log.unlock();
    for (pending, outcome) in batch.into_iter().zip(outcomes) {
        let answer = match (outcome, &failure) {
            (Ok(_), Some(error)) => Err(error.clone()),
            (Ok(_), None) => Ok(pending.request.recorded()),
            (Err(refused), _) => Err(refused),
        };
        let _ = pending.answer.send(answer);
    }
}

/// The payload of the record of an append.
fn payload(request: &AppendRequest) -> Result<Vec<u8>, StoreError> {
    let events = request.recorded();
    let commit = CommitOut {
        kind: Kind::Commit,
        stream_id: request.stream_id,
        events: &events,
        claims: &request.claims,
        releases: &request.releases,
    };
    let payload =
        serde_json::to_vec(&commit).map_err(|e| StoreError::Unavailable(format!("encoding a commit: {e}")))?;
    if payload.len() > MAX_RECORD_LEN {
        return Err(StoreError::Unavailable(format!(
            "a commit of {} bytes is larger than a record may be",
            payload.len()
        )));
    }
    Ok(payload)
}
