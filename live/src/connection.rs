//! What the engine and a transport share about one connection: its protocol, and how and why
//! it is being closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use tokio_util::sync::CancellationToken;

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    SignalR,
    V2,
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    None = 0,
    /// The client did not keep up with its queue.
    TooSlow = 1,
    /// The pod is draining.
    ShuttingDown = 2,
}

/// The bit of [`ConnectionControl`]'s state set once the connection is closed; the reason is
/// in the bits below it.
const CLOSED: u8 = 0x80;

/// Per-connection control shared by the connection's task and its feed.
///
/// The connection's task looks at it on every wake-up, so waiting for the close costs an atomic
/// load and no lock: the task's waker is stored once (again only if the task's waker changes),
/// and a close takes it. The hub lists the controls of its connections and closes them all
/// when the pod drains ([`Hub::drain`](crate::Hub::drain)).
#[derive(Debug)]
pub struct ConnectionControl {
    /// 0 while open; then [`CLOSED`] with the first reason given.
    state: AtomicU8,
    /// The task waiting for the close (one: the connection's own).
    waiter: Mutex<Option<Waker>>,
    /// The pod's drain token: a connection whose queue ended because the pod drains was
    /// closed for that reason, even when nobody gave one.
    shutdown: CancellationToken,
}

impl ConnectionControl {
    pub(crate) fn new(shutdown: &CancellationToken) -> Self {
        ConnectionControl { state: AtomicU8::new(0), waiter: Mutex::new(None), shutdown: shutdown.clone() }
    }

    /// Closes the connection for `reason` (the first reason given is kept) and wakes its task.
    pub fn close(&self, reason: CloseReason) {
        let closed = CLOSED | reason as u8;
        if self.state.compare_exchange(0, closed, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let waiter = self.waiter.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(waker) = waiter {
                waker.wake();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    pub fn reason(&self) -> CloseReason {
        match self.state.load(Ordering::Acquire) & !CLOSED {
            1 => CloseReason::TooSlow,
            2 => CloseReason::ShuttingDown,
            _ if self.shutdown.is_cancelled() => CloseReason::ShuttingDown,
            _ => CloseReason::None,
        }
    }

    /// Completes once the connection is closed. Meant for the connection's own task, kept for
    /// the connection's life: a second waiter would take the first one's place.
    pub fn closed(&self) -> Closed<'_> {
        Closed { control: self, registered: None }
    }
}

/// The future of [`ConnectionControl::closed`].
#[derive(Debug)]
pub struct Closed<'a> {
    control: &'a ConnectionControl,
    /// The waker last stored in the control.
    registered: Option<Waker>,
}

impl Future for Closed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.control.is_closed() {
            return Poll::Ready(());
        }
        if !self.registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            *self.control.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
            self.registered = Some(waker);
            // A close between the first look and the store found no waker to wake.
            if self.control.is_closed() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_close_wakes_the_waiting_task_and_keeps_the_first_reason() {
        let control = Arc::new(ConnectionControl::new(&CancellationToken::new()));
        let waiting = Arc::clone(&control);
        let task = tokio::spawn(async move { waiting.closed().await });
        tokio::task::yield_now().await;
        assert!(!task.is_finished() && !control.is_closed());

        control.close(CloseReason::TooSlow);
        control.close(CloseReason::ShuttingDown);
        tokio::time::timeout(std::time::Duration::from_secs(1), task).await.unwrap().unwrap();
        assert_eq!(control.reason(), CloseReason::TooSlow);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_reaches_a_task_whose_waker_changed_and_one_that_looks_after_it() {
        let control = ConnectionControl::new(&CancellationToken::new());
        let mut closed = control.closed();
        let (first, second) = (counting_waker(), counting_waker());
        assert!(Pin::new(&mut closed).poll(&mut Context::from_waker(&first.0)).is_pending());
        assert!(Pin::new(&mut closed).poll(&mut Context::from_waker(&second.0)).is_pending());
        control.close(CloseReason::None);
        assert_eq!((first.1.count(), second.1.count()), (0, 1), "the waker polled last is woken");
        assert!(Pin::new(&mut closed).poll(&mut Context::from_waker(&second.0)).is_ready());
        assert!(Pin::new(&mut control.closed()).poll(&mut Context::from_waker(&first.0)).is_ready());
        assert_eq!(control.reason(), CloseReason::None);
    }

    #[test]
    fn a_connection_closed_without_a_reason_while_the_pod_drains_was_closed_by_the_drain() {
        let shutdown = CancellationToken::new();
        let control = ConnectionControl::new(&shutdown);
        control.close(CloseReason::None);
        assert_eq!(control.reason(), CloseReason::None);
        shutdown.cancel();
        assert_eq!(control.reason(), CloseReason::ShuttingDown);
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Count {
        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting_waker() -> (Waker, Arc<Count>) {
        let count = Arc::new(Count::default());
        (Waker::from(Arc::clone(&count)), count)
    }
}
