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

/// For the owners' unit tests: a fetch whose outcomes the test hands over, one per fetch,
/// when it likes.
#[cfg(test)]
pub(crate) mod script {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use tokio::sync::mpsc;

    /// The task's side: the next outcome, once the test sends it.
    pub(crate) struct Script<T> {
        outcomes: mpsc::UnboundedReceiver<T>,
        started: Arc<AtomicU64>,
        dropped: Arc<AtomicBool>,
    }

    /// The test's side: sends outcomes, and sees how many fetches began and whether the
    /// task dropped its fetcher.
    pub(crate) struct Director<T> {
        outcomes: mpsc::UnboundedSender<T>,
        started: Arc<AtomicU64>,
        dropped: Arc<AtomicBool>,
    }

    /// A script and its director.
    pub(crate) fn script<T>() -> (Script<T>, Director<T>) {
        let (outcomes, rx) = mpsc::unbounded_channel();
        let (started, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let script = Script { outcomes: rx, started: started.clone(), dropped: dropped.clone() };
        (script, Director { outcomes, started, dropped })
    }

    impl<T> Script<T> {
        /// One fetch: counted as begun now, it ends with the next outcome sent (never, once
        /// the director is gone).
        pub(crate) fn next(&mut self) -> impl Future<Output = T> + Send + '_
        where
            T: Send,
        {
            self.started.fetch_add(1, Ordering::SeqCst);
            async move {
                match self.outcomes.recv().await {
                    Some(outcome) => outcome,
                    None => std::future::pending().await,
                }
            }
        }
    }

    impl<T> Drop for Script<T> {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    impl<T> Director<T> {
        pub(crate) fn send(&self, outcome: T) {
            self.outcomes.send(outcome).unwrap_or_else(|_| panic!("the task is gone"));
        }

        /// Fetches the task has begun.
        pub(crate) fn started(&self) -> u64 {
            self.started.load(Ordering::SeqCst)
        }

        /// Whether the task dropped its fetcher (it ended).
        pub(crate) fn dropped(&self) -> bool {
            self.dropped.load(Ordering::SeqCst)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// An owner's state: here, only the plumbing.
    struct State {
        background: Background<&'static str>,
    }

    fn start() -> (Arc<State>, Worker<State>) {
        let (background, signals) = Background::new();
        let state = Arc::new(State { background });
        let worker = signals.worker(&state);
        (state, worker)
    }

    /// Lets every other task run until it waits.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_wakes_when_woken_or_due_and_a_wake_up_during_a_fetch_stays_pending() {
        let (state, mut worker) = start();
        let woken = Arc::new(AtomicU64::new(0));
        let counted = woken.clone();
        let due = now() + Duration::from_secs(60);
        let task = tokio::spawn(async move {
            // Woken, then due, then woken by the permit left by a wake-up during "a fetch".
            for due in [Some(due), Some(due), None] {
                let state = worker.wait(due).await.expect("a handle lives");
                counted.fetch_add(1, Ordering::SeqCst);
                drop(state);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        settle().await;
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        state.background.wake();
        settle().await;
        assert_eq!(woken.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(woken.load(Ordering::SeqCst), 1, "not due yet");
        tokio::time::sleep(Duration::from_millis(30_500)).await;
        assert_eq!(woken.load(Ordering::SeqCst), 2, "due");

        // The task is in its one-second "fetch": the wake-up waits for it.
        state.background.wake();
        settle().await;
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(woken.load(Ordering::SeqCst), 3);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn counters_and_progress_follow_begin_and_finish() {
        let (state, _worker) = start();
        let bg = &state.background;
        assert_eq!((bg.attempts(), bg.completed(), bg.failures(), bg.last_error()), (0, 0, 0, None));
        bg.begin();
        assert_eq!((bg.attempts(), bg.completed()), (1, 0));
        bg.finish(Err("down"));
        assert_eq!((bg.attempts(), bg.completed(), bg.failures(), bg.last_error()), (1, 1, 1, Some("down")));
        bg.begin();
        bg.finish(Ok(()));
        assert_eq!((bg.attempts(), bg.completed(), bg.failures(), bg.last_error()), (2, 2, 1, None));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_see_the_fetch_they_wait_for_or_time_out() {
        let (state, _worker) = start();
        let waiter = state.clone();
        let waiting = tokio::spawn(async move { waiter.background.wait_for_fetch(2, Duration::from_secs(10)).await });
        settle().await;
        state.background.finish(Ok(()));
        settle().await;
        assert!(!waiting.is_finished(), "the first fetch is not the one it waits for");
        state.background.finish(Err("down"));
        let progress = waiting.await.unwrap().expect("the second fetch finished");
        assert_eq!((progress.completed, progress.outcome), (2, Err("down")));

        // Already there: at once. Never there: `None` after the timeout.
        assert!(state.background.wait_for_fetch(1, Duration::ZERO).await.is_some());
        let started = now();
        assert!(state.background.wait_for_fetch(3, Duration::from_secs(10)).await.is_none());
        assert_eq!(now() - started, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_handle_stops_the_task_even_mid_fetch() {
        // Waiting for a wake-up.
        let (state, mut worker) = start();
        let task = tokio::spawn(async move { worker.wait(None).await.is_none() });
        settle().await;
        drop(state);
        assert!(task.await.unwrap(), "the task sees the stop");

        // In the middle of a fetch, which is cancelled.
        let (state, mut worker) = start();
        let cancelled = Arc::new(AtomicBool::new(true));
        let finished = cancelled.clone();
        let task = tokio::spawn(async move {
            worker
                .unless_stopped(async {
                    std::future::pending::<()>().await;
                    finished.store(false, Ordering::SeqCst);
                })
                .await
                .is_none()
        });
        settle().await;
        drop(state);
        assert!(task.await.unwrap());
        assert!(cancelled.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_holds_no_strong_handle() {
        let (state, worker) = start();
        assert_eq!(Arc::strong_count(&state), 1);
        let held = worker.state().expect("alive");
        assert_eq!(Arc::strong_count(&held), 2);
        drop((held, state));
        assert!(worker.state().is_none());
    }
}
