//! A connection's bounded queue of frames: one sender (the connection's feed), one receiver
//! (the connection's task).
//!
//! Built for many mostly idle connections: an empty queue holds one small allocation (no
//! pre-allocated block of slots), frames are kept in a ring that grows as they queue up, and a
//! ring grown past a few frames is given back once it empties.
//!
//! A resuming connection's replay may be longer than the capacity: its frames are queued
//! beyond it ([`QueueSender::send_replayed`]), and the queue holds that many more frames until
//! as many have been received, so live frames still find `capacity` places behind the replay.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Frames a queue keeps room for once it has emptied; a larger ring is freed.
const KEPT_CAPACITY: usize = 4;

/// The kinds of frame of which a queue holds one unsent at most: each is a whole list that
/// supersedes the last of its kind ([`QueueSender::send_latest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    /// A tournament's click list.
    Clicks = 0,
    /// A tournament's list of players online.
    Presence = 1,
}

const LATEST_KINDS: usize = 2;

struct State<F> {
    frames: VecDeque<F>,
    /// The receiver waiting for a frame.
    waker: Option<Waker>,
    /// Places beyond the capacity, one per replayed frame not yet matched by a frame received.
    replay_room: u32,
    /// Where the frame of each [`Latest`] kind queued with [`QueueSender::send_latest`] is,
    /// while it is queued.
    latest: [Option<u32>; LATEST_KINDS],
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared<F> {
    state: Mutex<State<F>>,
    capacity: usize,
}

impl<F> Shared<F> {
    fn lock(&self) -> MutexGuard<'_, State<F>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sending side; the queue ends for the receiver when it is dropped.
pub struct QueueSender<F> {
    shared: Arc<Shared<F>>,
}

/// The receiving side.
pub struct QueueReceiver<F> {
    shared: Arc<Shared<F>>,
}

/// Why a frame was not queued; the frame comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<F> {
    /// The queue holds `capacity` frames.
    Full(F),
    /// The receiver is gone.
    Closed(F),
}

/// Why no frame was received now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    /// The sender is gone and every frame was received.
    Disconnected,
}

/// A queue of at most `capacity` frames.
pub fn queue<F>(capacity: usize) -> (QueueSender<F>, QueueReceiver<F>) {
    let state = State {
        frames: VecDeque::new(),
        waker: None,
        replay_room: 0,
        latest: [None; LATEST_KINDS],
        sender_gone: false,
        receiver_gone: false,
    };
    let shared = Arc::new(Shared { state: Mutex::new(state), capacity: capacity.max(1) });
    (QueueSender { shared: Arc::clone(&shared) }, QueueReceiver { shared })
}

impl<F> QueueSender<F> {
    /// Queues `frame` without waiting.
    pub fn try_send(&self, frame: F) -> Result<(), TrySendError<F>> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(frame));
            }
            if state.frames.len() >= self.shared.capacity + state.replay_room as usize {
                return Err(TrySendError::Full(frame));
            }
            state.frames.push_back(frame);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `frame`, which supersedes the last frame of its `kind` queued this way: if that
    /// one is still queued, it is taken out and `frame` goes to the back in its place (so it
    /// needs no room more, and never goes out ahead of what was queued before it). `Ok(true)`
    /// when it replaced one.
    pub fn send_latest(&self, kind: Latest, frame: F) -> Result<bool, TrySendError<F>> {
        let (replaced, waker) = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(frame));
            }
            let replaced = match state.latest[kind as usize] {
                Some(at) => {
                    let removed = state.frames.remove(at as usize).is_some();
                    // The frames of the other kinds behind it move up a place.
                    for other in state.latest.iter_mut().flatten() {
                        if *other > at {
                            *other -= 1;
                        }
                    }
                    removed
                }
                None if state.frames.len() >= self.shared.capacity + state.replay_room as usize => {
                    return Err(TrySendError::Full(frame));
                }
                None => false,
            };
            state.frames.push_back(frame);
            state.latest[kind as usize] = u32::try_from(state.frames.len() - 1).ok();
            (replaced, state.waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(replaced)
    }

    /// Queues a frame of a replay whatever the queue holds, with a place more for the frames
    /// after it until a frame is received: the replay is bounded by the stream it is read from,
    /// not by the capacity, which stays the room for what comes after it.
    /// Errors: `Closed` when the receiver is gone.
    pub fn send_replayed(&self, frame: F) -> Result<(), TrySendError<F>> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(frame));
            }
            state.frames.push_back(frame);
            state.replay_room = state.replay_room.saturating_add(1);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().frames.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<F> Drop for QueueSender<F> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<F> QueueReceiver<F> {
    fn take(state: &mut State<F>) -> Option<F> {
        let frame = state.frames.pop_front()?;
        state.replay_room = state.replay_room.saturating_sub(1);
        for latest in &mut state.latest {
            *latest = latest.and_then(|at| at.checked_sub(1));
        }
        if state.frames.is_empty() && state.frames.capacity() > KEPT_CAPACITY {
            state.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Result<F, TryRecvError> {
        let mut state = self.shared.lock();
        match Self::take(&mut state) {
            Some(frame) => Ok(frame),
            None if state.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The next frame, or `None` once the sender is gone and every frame was received; when
    /// there is none yet, the task is woken when one comes.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<F>> {
        let mut state = self.shared.lock();
        if let Some(frame) = Self::take(&mut state) {
            return Poll::Ready(Some(frame));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next frame, or `None` once the sender is gone and every frame was received.
    pub async fn recv(&mut self) -> Option<F> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<F> Drop for QueueReceiver<F> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // Frames nobody will read are freed now rather than with the sender.
        state.frames = VecDeque::new();
        state.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_up_to_the_capacity() {
        let (tx, mut rx) = queue::<u32>(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(tx.len(), 3);
        assert_eq!(rx.try_recv(), Ok(0));
        tx.try_send(3).unwrap();
        assert_eq!((rx.try_recv(), rx.try_recv(), rx.try_recv()), (Ok(1), Ok(2), Ok(3)));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn the_queue_ends_for_the_receiver_after_the_last_frame_and_refuses_frames_without_one() {
        let (tx, mut rx) = queue::<u32>(3);
        tx.try_send(1).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        let (tx, rx) = queue::<u32>(3);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[test]
    fn a_ring_grown_past_a_few_frames_is_freed_once_empty() {
        let (tx, mut rx) = queue::<u64>(256);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().frames.capacity(), 0);
        tx.try_send(1).unwrap();
        rx.try_recv().unwrap();
        assert!(rx.shared.lock().frames.capacity() <= KEPT_CAPACITY);
    }

    #[test]
    fn a_replay_longer_than_the_capacity_is_queued_and_the_capacity_stays_for_what_follows() {
        let (tx, mut rx) = queue::<u32>(3);
        for i in 0..10 {
            tx.send_replayed(i).unwrap();
        }
        for i in 10..13 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(13), Err(TrySendError::Full(13)), "three places behind the replay");
        for i in 0..5 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(tx.try_send(13), Err(TrySendError::Full(13)), "the replay's places go as it drains");
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, (5..13).collect::<Vec<_>>());
        for i in 13..16 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(16), Err(TrySendError::Full(16)), "back to the capacity");
        drop(rx);
        assert_eq!(tx.send_replayed(1), Err(TrySendError::Closed(1)));
    }

    #[test]
    fn a_latest_frame_replaces_the_one_still_queued_and_goes_behind_what_came_between() {
        let (tx, mut rx) = queue::<u32>(3);
        assert_eq!(tx.send_latest(Latest::Clicks, 100), Ok(false));
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        // The queue is full, but the latest takes the place of the one it replaces.
        assert_eq!(tx.send_latest(Latest::Clicks, 101), Ok(true));
        assert_eq!(tx.send_latest(Latest::Clicks, 102), Ok(true));
        assert_eq!((rx.try_recv(), rx.try_recv(), rx.try_recv()), (Ok(1), Ok(2), Ok(102)));
        // Once the latest went out, the next is queued anew, and needs room.
        tx.try_send(3).unwrap();
        assert_eq!(tx.send_latest(Latest::Clicks, 103), Ok(false));
        tx.try_send(4).unwrap();
        assert_eq!(tx.try_send(5), Err(TrySendError::Full(5)));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(tx.send_latest(Latest::Clicks, 104), Ok(true));
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, [4, 104]);
        // Behind a replay too.
        tx.send_replayed(7).unwrap();
        assert_eq!(tx.send_latest(Latest::Clicks, 105), Ok(false));
        tx.send_replayed(8).unwrap();
        assert_eq!(tx.send_latest(Latest::Clicks, 106), Ok(true));
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, [7, 8, 106]);
    }

    #[test]
    fn each_kind_of_latest_frame_replaces_only_its_own() {
        let (tx, mut rx) = queue::<u32>(4);
        assert_eq!(tx.send_latest(Latest::Clicks, 100), Ok(false));
        tx.try_send(1).unwrap();
        assert_eq!(tx.send_latest(Latest::Presence, 200), Ok(false));
        tx.try_send(2).unwrap();
        // [100, 1, 200, 2]: a click list replaces the click list, behind everything.
        assert_eq!(tx.send_latest(Latest::Clicks, 101), Ok(true));
        // [1, 200, 2, 101]: a presence list replaces the presence list, found where it moved.
        assert_eq!(tx.send_latest(Latest::Presence, 201), Ok(true));
        // [1, 2, 101, 201]
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.send_latest(Latest::Clicks, 102), Ok(true));
        assert_eq!(tx.send_latest(Latest::Presence, 202), Ok(true));
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, [2, 102, 202]);
        // Once sent, each kind is queued anew.
        assert_eq!(tx.send_latest(Latest::Presence, 203), Ok(false));
        assert_eq!(tx.send_latest(Latest::Clicks, 103), Ok(false));
        assert_eq!(tx.send_latest(Latest::Presence, 204), Ok(true));
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, [103, 204]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_frame_and_by_the_end() {
        let (tx, mut rx) = queue::<u32>(3);
        let receiver = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        let received = tokio::time::timeout(std::time::Duration::from_secs(10), receiver).await;
        assert_eq!(received.expect("the receiver was woken").unwrap(), (Some(7), None));
    }
}
