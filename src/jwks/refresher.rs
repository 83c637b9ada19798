//! The state behind a [`KeyStore`](super::KeyStore) handle, and the background task
//! that keeps it fresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::schedule::Schedule;
use super::source::FetchKeys;
use crate::KeySet;
use crate::error::FetchError;
use crate::idp::background::{self, Background, Worker};

/// What every clone of a [`KeyStore`](super::KeyStore) shares.
pub(super) struct KeyStoreState {
    pub(super) keys: ArcSwapOption<KeySet>,
    remote: Option<Remote>,
}

struct Remote {
    /// Fetches started (the first counts from build time), finished and failed; why
    /// the last one failed.
    background: Background<FetchError>,
    /// The cold path's one decision: claim, join or refuse an on-demand fetch. A lock
    /// is fine here: only requests with an unknown `kid` come this way, and they hold it
    /// for a few instructions, never across an await.
    on_demand: Mutex<OnDemand>,
    cooldown: Duration,
    /// How long a request waits for an on-demand fetch: the one in flight, then its own.
    wait: Duration,
}

#[derive(Debug, Default)]
struct OnDemand {
    /// When the last on-demand fetch was claimed.
    last: Option<Instant>,
    /// The fetch number that claim waits for (one that starts after the claim).
    target: u64,
}

impl KeyStoreState {
    /// Fixed keys, never fetched.
    pub(super) fn fixed(keys: KeySet) -> KeyStoreState {
        KeyStoreState { keys: ArcSwapOption::from_pointee(keys), remote: None }
    }

    /// Remote keys, fetched by a task started on `runtime`; its first fetch begins at once.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        fetcher: impl FetchKeys,
        schedule: Schedule,
        cooldown: Duration,
        wait: Duration,
    ) -> Arc<KeyStoreState> {
        let (background, signals) = Background::new();
        // The first fetch counts as started now, so early requests join it.
        background.begin();
        let remote = Remote { background, on_demand: Mutex::new(OnDemand::default()), cooldown, wait };
        let state = Arc::new(KeyStoreState { keys: ArcSwapOption::empty(), remote: Some(remote) });
        let refresher = KeyRefresher { fetcher, schedule };
        runtime.spawn(refresher.run(signals.worker(&state)));
        state
    }

    pub(super) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Fetches started so far (discovery and JWKS together count as one).
    pub(super) fn attempts(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.background.attempts())
    }

    pub(super) fn failures(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.background.failures())
    }

    pub(super) fn last_error(&self) -> Option<FetchError> {
        self.remote.as_ref().and_then(|r| r.background.last_error())
    }

    /// Waits until a key set is loaded, up to `timeout`; returns whether one is.
    pub(super) async fn wait_until_loaded(&self, timeout: Duration) -> bool {
        if let Some(remote) = &self.remote {
            remote.background.wait_until(timeout, |_| self.is_loaded()).await;
        }
        self.is_loaded()
    }

    /// Fetches now, whatever the schedule and the cooldown, and waits for a fetch that
    /// starts after this call; whether it succeeded within the wait bound.
    pub(super) async fn refresh(&self) -> bool {
        let Some(remote) = &self.remote else { return self.is_loaded() };
        let target = remote.background.attempts() + 1;
        remote.background.wake();
        remote.background.wait_for_fetch(target, remote.wait).await.is_some_and(|p| p.outcome.is_ok())
    }

    /// For a request whose token names a `kid` the set lacks, or when no set is loaded:
    /// waits for a fetch that can have the key, sharing it with every other such
    /// request, and starting one at most once per cooldown; returns at once when the
    /// cooldown allows no fetch.
    pub(super) async fn refresh_for_unknown_kid(&self) {
        let Some(remote) = &self.remote else { return };
        let target = {
            let mut on_demand = remote.on_demand.lock().unwrap_or_else(|e| e.into_inner());
            let started = remote.background.attempts();
            let completed = remote.background.completed();
            if !self.is_loaded() && started > completed {
                // The first fetch is under way: any fetch will do.
                started
            } else if on_demand.target > completed {
                // Another request claimed a fetch that has not finished: join it.
                on_demand.target
            } else if on_demand.last.is_none_or(|at| background::now().duration_since(at) >= remote.cooldown) {
                // Claim a fetch that starts after now, so it sees the new key even if an
                // older (scheduled) fetch is running at this moment.
                on_demand.last = Some(background::now());
                on_demand.target = started + 1;
                tracing::debug!("unknown kid: fetching keys on demand");
                remote.background.wake();
                on_demand.target
            } else {
                return;
            }
        };
        remote.background.wait_for_fetch(target, remote.wait).await;
    }

    /// Publishes a fetch: the new keys (or the error, keeping the last good keys), then
    /// the progress that wakes waiters.
    fn finish(&self, outcome: Result<KeySet, FetchError>) {
        let Some(remote) = &self.remote else { return };
        let outcome = outcome.map(|keys| self.keys.store(Some(Arc::new(keys))));
        remote.background.finish(outcome);
    }

    fn begin(&self) {
        if let Some(remote) = &self.remote {
            remote.background.begin();
        }
    }
}

/// The task of a remote store: fetches at once, then on its [`Schedule`] and when woken.
struct KeyRefresher<F> {
    fetcher: F,
    schedule: Schedule,
}

impl<F: FetchKeys> KeyRefresher<F> {
    async fn run(mut self, mut worker: Worker<KeyStoreState>) {
        let mut failures = 0u32;
        let mut due = None;
        loop {
            // The first fetch starts at once; a wake-up that arrives meanwhile stays
            // pending as a permit and triggers the next one.
            let state = match due {
                None => worker.state(),
                Some(_) => worker.wait(due).await,
            };
            let Some(state) = state else { return };
            if due.is_some() {
                // The first was counted at build time.
                state.begin();
            }
            drop(state);
            let Some(outcome) = worker.unless_stopped(self.fetcher.fetch()).await else { return };
            let Some(state) = worker.state() else { return };
            let delay = match outcome {
                Ok((keys, max_age)) => {
                    tracing::debug!(keys = keys.len(), "key set refreshed");
                    failures = 0;
                    state.finish(Ok(keys));
                    self.schedule.after_success(max_age)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.schedule.after_failure(failures, error.retry_after());
                    tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, "key set refresh failed; keeping the last good keys");
                    state.finish(Err(error));
                    delay
                }
            };
            due = Some(background::now() + delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;
    use crate::idp::background::script::{Director, Script, script};
    use crate::jwks::source::Fetched;
    use crate::{Jwk, Secret};

    /// A fetch whose outcome the test hands over, one per fetch, when it likes.
    struct Scripted(Script<Fetched>);

    impl FetchKeys for Scripted {
        async fn fetch(&mut self) -> Fetched {
            self.0.next().await
        }
    }

    struct Harness {
        state: Arc<KeyStoreState>,
        director: Director<Fetched>,
    }

    const COOLDOWN: Duration = Duration::from_secs(30);
    const WAIT: Duration = Duration::from_secs(21);

    fn start() -> Harness {
        let (script, director) = script();
        let runtime = tokio::runtime::Handle::current();
        let state = KeyStoreState::start(&runtime, Scripted(script), Schedule::default(), COOLDOWN, WAIT);
        Harness { state, director }
    }

    impl Harness {
        fn succeed(&self, kid: &str) {
            self.director.send(Ok((keys(kid), None)));
        }

        fn fail(&self) {
            self.director.send(Err(FetchError::Timeout));
        }

        fn kid(&self) -> Option<String> {
            self.state.keys.load().as_ref().and_then(|k| k.iter().next()?.kid().map(str::to_owned))
        }

        /// A request with an unknown `kid`, in its own task.
        fn unknown_kid(&self) -> tokio::task::JoinHandle<()> {
            let state = self.state.clone();
            tokio::spawn(async move { state.refresh_for_unknown_kid().await })
        }
    }

    fn keys(kid: &str) -> KeySet {
        let secret = Secret::new([7_u8; 32]);
        KeySet::from_keys([Jwk::hmac(Algorithm::HS256, &secret, Some(kid)).unwrap()])
    }

    /// Lets every other task run until it waits.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_fetch_counts_from_the_start_and_early_requests_join_it() {
        let h = start();
        assert_eq!(h.state.attempts(), 1, "counted before the task runs");
        let (a, b) = (h.unknown_kid(), h.unknown_kid());
        settle().await;
        assert_eq!(h.director.started(), 1);
        assert!(!a.is_finished() && !b.is_finished());
        h.succeed("k1");
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("k1"));
        assert!(h.state.wait_until_loaded(Duration::ZERO).await);
        assert_eq!((h.state.attempts(), h.director.started()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_share_one_fetch_and_the_cooldown_refuses_another() {
        let h = start();
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);

        // Claimed by the first request, joined by the second: one fetch.
        let (a, b) = (h.unknown_kid(), h.unknown_kid());
        settle().await;
        assert_eq!((h.state.attempts(), h.director.started()), (2, 2));
        h.succeed("k2");
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("k2"));

        // Within the cooldown: refused, at once, with no fetch.
        tokio::time::sleep(COOLDOWN - Duration::from_secs(1)).await;
        let started = background::now();
        h.state.refresh_for_unknown_kid().await;
        assert_eq!(background::now(), started);
        settle().await;
        assert_eq!(h.state.attempts(), 2);

        // After it: a new claim.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c = h.unknown_kid();
        settle().await;
        assert_eq!(h.state.attempts(), 3);
        h.succeed("k3");
        c.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("k3"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_waits_for_a_fetch_that_starts_after_its_claim() {
        let h = start();
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);

        // A fetch is running (here a forced refresh) when the request claims one: that
        // fetch may have left before the new key was published, so it waits for the next.
        let state = h.state.clone();
        let refresh = tokio::spawn(async move { state.refresh().await });
        settle().await;
        assert_eq!(h.director.started(), 2);
        let request = h.unknown_kid();
        settle().await;
        h.succeed("old");
        assert!(refresh.await.unwrap());
        settle().await;
        assert!(!request.is_finished(), "the running fetch is not the one it claimed");
        assert_eq!((h.state.attempts(), h.director.started()), (3, 3));
        h.succeed("new");
        request.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("new"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_no_longer_than_the_bound() {
        let h = start();
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);
        let started = background::now();
        h.state.refresh_for_unknown_kid().await; // the fetch never ends
        assert_eq!(background::now() - started, WAIT);
        assert!(!h.state.refresh().await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_counted_and_its_error_kept_until_a_success() {
        let h = start();
        h.fail();
        assert!(!h.state.wait_until_loaded(Duration::from_millis(100)).await);
        settle().await;
        assert_eq!(h.state.failures(), 1);
        assert!(matches!(h.state.last_error(), Some(FetchError::Timeout)));

        // Retried after the backoff (1 s ± 20 %), on its own.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(h.director.started(), 2);
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);
        assert_eq!((h.state.attempts(), h.state.failures()), (2, 1));
        assert!(h.state.last_error().is_none());

        // A failed refresh keeps the last good keys.
        let state = h.state.clone();
        let refresh = tokio::spawn(async move { state.refresh().await });
        settle().await;
        h.fail();
        assert!(!refresh.await.unwrap());
        assert_eq!(h.kid().as_deref(), Some("k1"));
        assert_eq!(h.state.failures(), 2);
        assert!(h.state.last_error().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_keys_are_fetched_again_on_schedule() {
        let h = start();
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert_eq!(h.state.attempts(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!((h.state.attempts(), h.director.started()), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_handle_stops_the_task_even_mid_fetch() {
        let h = start();
        settle().await;
        assert_eq!(h.director.started(), 1);
        drop(h.state);
        settle().await;
        assert!(h.director.dropped(), "the task ended");

        let h = start();
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);
        drop(h.state);
        settle().await;
        assert!(h.director.dropped(), "the task ended between fetches too");
    }
}
