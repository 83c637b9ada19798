//! The plumbing of a value refreshed by a background task, shared by the key store and
//! the token cache; each of them keeps its own rules for when to fetch.
//!
//! - [`Background`] lives in the owner's state, which every handle shares: it wakes the
//!   task, counts attempts and failures, and publishes [`Progress`] (fetches finished,
//!   how the last one ended) for the callers that wait on a fetch. The task ends when it
//!   is dropped with the last handle.
//! - [`Worker`] is the task's side: it sleeps until woken or due, and holds only a
//!   `Weak` to the state, upgraded between fetches, so that dropping the last handle
//!   stops the task even in the middle of a fetch.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

/// The clock of the refresh rules: tokio's, so that tests with paused time drive it.
/// Outside such tests it is the system's monotonic clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How the fetches went so far.
#[derive(Debug, Clone)]
pub(crate) struct Progress<E> {
    /// Fetches finished so far.
    pub(crate) completed: u64,
    /// How the last one ended (`Ok` before the first).
    pub(crate) outcome: Result<(), E>,
}

/// The owner's side of a background task; see the [module docs](self).
pub(crate) struct Background<E> {
    wake: Arc<Notify>,
    progress: watch::Sender<Progress<E>>,
    attempts: AtomicU64,
    failures: AtomicU64,
    /// Dropped with the last handle, which tells the task to stop.
    _stop: oneshot::Sender<()>,
}

/// What the task needs before its state exists; turned into a [`Worker`] once it does.
pub(crate) struct Signals {
    wake: Arc<Notify>,
    stop: oneshot::Receiver<()>,
}

impl<E: Clone> Background<E> {
    /// The plumbing, and the signals its task will listen to.
    pub(crate) fn new() -> (Background<E>, Signals) {
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let background = Background {
            wake: wake.clone(),
            progress: watch::Sender::new(Progress { completed: 0, outcome: Ok(()) }),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            _stop: stop_tx,
        };
        (background, Signals { wake, stop: stop_rx })
    }

    /// Wakes the task. A wake-up while it fetches stays pending and starts the next one.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Fetches started so far.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// Fetches failed so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Fetches finished so far.
    pub(crate) fn completed(&self) -> u64 {
        self.progress.borrow().completed
    }

    /// Why the last fetch failed; `None` when it succeeded or none has finished.
    pub(crate) fn last_error(&self) -> Option<E> {
        self.progress.borrow().outcome.clone().err()
    }

    /// Counts a fetch as started.
    pub(crate) fn begin(&self) {
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a fetch as finished and wakes its waiters. The owner publishes the value
    /// first, so a waiter woken here sees it.
    pub(crate) fn finish(&self, outcome: Result<(), E>) {
        if outcome.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.send_modify(|p| {
            p.completed += 1;
            p.outcome = outcome;
        });
    }

    /// A receiver of the progress, for a waiter with its own loop.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress<E>> {
        self.progress.subscribe()
    }

    /// Waits up to `timeout` until `done` holds of the progress (at once if it already
    /// does); the progress then, or `None` on timeout.
    pub(crate) async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Progress<E>) -> bool,
    ) -> Option<Progress<E>> {
        let mut progress = self.progress.subscribe();
        match tokio::time::timeout(timeout, progress.wait_for(|p| done(p))).await {
            Ok(Ok(progress)) => Some(progress.clone()),
            _ => None,
        }
    }

    /// Waits up to `timeout` until fetch number `fetch` (counted from 1) has finished;
    /// the progress then, or `None` on timeout.
    pub(crate) async fn wait_for_fetch(&self, fetch: u64, timeout: Duration) -> Option<Progress<E>> {
        self.wait_until(timeout, |p| p.completed >= fetch).await
    }
}

impl Signals {
    /// The task's side, for the state that holds the [`Background`].
    pub(crate) fn worker<S>(self, state: &Arc<S>) -> Worker<S> {
        Worker { state: Arc::downgrade(state), wake: self.wake, stop: self.stop }
    }
}

/// The task's side of a [`Background`]; see the [module docs](self).
pub(crate) struct Worker<S> {
    state: Weak<S>,
    wake: Arc<Notify>,
    stop: oneshot::Receiver<()>,
}

impl<S> Worker<S> {
    /// Sleeps until woken or until `due` (only woken when `None`); then the state, or
    /// `None` when the last handle is gone and the task must end.
    pub(crate) async fn wait(&mut self, due: Option<Instant>) -> Option<Arc<S>> {
        let scheduled = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut self.stop => return None,
            () = self.wake.notified() => {}
            () = scheduled => {}
        }
        self.state()
    }

    /// The state, or `None` when the last handle is gone.
    pub(crate) fn state(&self) -> Option<Arc<S>> {
        self.state.upgrade()
    }

    /// Runs `fetch` while no strong handle is held: `None` when the last handle is
    /// dropped meanwhile (the fetch is cancelled).
    pub(crate) async fn unless_stopped<F: Future>(&mut self, fetch: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = &mut self.stop => None,
            output = fetch => Some(output),
        }
    }
}
