//! The writer thread: group commit. It takes whatever appends queued up while the previous
//! batch was being written, and commits them as one batch: under the exclusive lock of the log
//! it catches the index up, checks each append in order against the index and the appends
//! before it, writes the accepted records with one write and one fsync, adds them to the index
//! and answers every append. The index is not held during the write and the fsync.

use super::format::{self, CommitOut, Kind, HEADER_LEN, MAX_RECORD_LEN};
use super::index::{BatchView, CommitFacts};
use super::{io_error, LeftOver, Shared, State};
use domain::ports::{AppendRequest, RecordedEvent, StoreError};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
#[cfg(test)]
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Most appends committed together.
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>;

/// An append waiting for the writer thread.
pub(super) struct Pending {
    pub(super) request: AppendRequest,
    pub(super) answer: Answer,
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

/// How often a failed batch left over is tried to be cut again while no append comes.
const CUT_AGAIN_EVERY: Duration = Duration::from_millis(200);

fn run(shared: &Shared, log: &File, appends: &mpsc::Receiver<Pending>) {
    shared.checkpoint_if_grown(shared.options.checkpoint_at_open_and_close);
    loop {
        let left_over = shared.state().left_over.is_some();
        let first = if left_over {
            match appends.recv_timeout(CUT_AGAIN_EVERY) {
                Ok(first) => first,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let cut = cut_left_over(shared, log, &mut shared.state());
                    unlock_unless_left_over(shared, log);
                    if let Err(error) = cut {
                        tracing::debug!(%error, "the failed write is still in the event log");
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match appends.recv() {
                Ok(first) => first,
                Err(_) => break,
            }
        };
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
    if shared.state().left_over.is_some() {
        let _ = cut_left_over(shared, log, &mut shared.state());
    }
    let _ = log.unlock();
    shared.checkpoint_if_grown(shared.options.checkpoint_at_open_and_close);
}

/// Lets the other processes at the log, unless a failed batch is left over in it: the log's
/// exclusive lock is then kept until it is cut, so that no other process reads it as committed
/// or writes after it.
fn unlock_unless_left_over(shared: &Shared, log: &File) {
    if shared.state().left_over.is_none() {
        let _ = log.unlock();
    }
}

/// Cuts off a failed batch that could not be cut back when it failed, under the exclusive lock
/// of the log. While it cannot be, nothing is written (after bytes that are not the store's).
/// Should another process sharing the directory have written after them or in their place
/// meanwhile, it has read them as committed or cut them: what is there stays.
fn cut_left_over(shared: &Shared, log: &File, state: &mut State) -> Result<(), StoreError> {
    let Some(left) = state.left_over else {
        return Ok(());
    };
    let from = state.index.offset;
    if shared.log_len()? == left.end && checksum(&shared.reader, from, left.end).ok() == Some(left.crc) {
        cut_back(shared, log, from).map_err(|e| io_error("cutting a failed write off the event log", e))?;
        tracing::info!(bytes = left.end - from, "a failed write was cut off the event log");
    } else {
        tracing::error!(
            offset = state.index.offset,
            "another process wrote after or in place of a failed write that could not be cut off the event log; what is there stays"
        );
    }
    state.left_over = None;
    Ok(())
}

/// One accepted append of a batch: where its record is in the batch's bytes.
struct Accepted {
    header: [u8; HEADER_LEN],
    payload_len: usize,
}

pub(super) fn commit(shared: &Shared, log: &File, batch: Vec<Pending>) {
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
        match cut_left_over(shared, log, &mut state).and_then(|()| shared.catch_up(&mut state, Some(log))) {
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
        let written = (&*log).write_all(&bytes).and_then(|()| sync(shared, log));
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
                // Nothing of the batch is kept: cut back what may have reached the file. If
                // that fails too, the bytes are left over: not read, and cut before the next
                // write.
                if let Err(cut) = cut_back(shared, log, start) {
                    tracing::error!(%cut, "the event log could not be cut back after a failed write; it is before the next");
                    let end = shared.log_len().unwrap_or(start + bytes.len() as u64);
                    let written = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX).min(bytes.len());
                    state.left_over = Some(LeftOver { end, crc: crc32fast::hash(&bytes[..written]) });
                }
                let error = io_error("writing the event log", error);
                // Refusals owed to an earlier append of the batch no longer hold: it failed too.
                for (pending, outcome) in batch.iter().zip(outcomes.iter_mut()) {
                    if outcome.is_err() && BatchView::default().accept(&state.index, &pending.request).is_ok() {
                        *outcome = Err(error.clone());
                    }
                }
                failure = Some(error);
            }
        }
        state.in_flight = false;
    }
    unlock_unless_left_over(shared, log);
    for (pending, outcome) in batch.into_iter().zip(outcomes) {
        let answer = match (outcome, &failure) {
            (Ok(_), Some(error)) => Err(error.clone()),
            (Ok(_), None) => Ok(pending.request.recorded()),
            (Err(refused), _) => Err(refused),
        };
        let _ = pending.answer.send(answer);
    }
}

/// The checksum of the log's bytes from `from` to `end`.
fn checksum(reader: &File, from: u64, end: u64) -> std::io::Result<u32> {
    let mut bytes = vec![0; usize::try_from(end.saturating_sub(from)).map_err(std::io::Error::other)?];
    reader.read_exact_at(&mut bytes, from)?;
    Ok(crc32fast::hash(&bytes))
}

/// Makes the batch just written durable.
fn sync(shared: &Shared, log: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if Faults::take(&shared.faults.syncs) {
        return Err(std::io::Error::other("the disk failed the fsync (a test's fault)"));
    }
    let _ = shared;
    log.sync_data()
}

/// Cuts the log back to `len` bytes, durably.
fn cut_back(shared: &Shared, log: &File, len: u64) -> std::io::Result<()> {
    #[cfg(test)]
    if Faults::take(&shared.faults.cuts) {
        return Err(std::io::Error::other("the disk failed the cut (a test's fault)"));
    }
    let _ = shared;
    log.set_len(len).and_then(|()| log.sync_all())
}

/// Faults a test makes the disk show the writer: the next `syncs` fsyncs of a batch and the
/// next `cuts` cuts back fail (after a batch's bytes were written, as a disk that takes the
/// write and fails its flush does).
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Faults {
    pub(super) syncs: AtomicU32,
    pub(super) cuts: AtomicU32,
}

#[cfg(test)]
impl Faults {
    fn take(count: &AtomicU32) -> bool {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
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
