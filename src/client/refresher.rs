//! The state behind a [`TokenCache`](super::TokenCache) handle, and the background
//! task that keeps it fresh: the only caller of the token source. Its rules, when to
//! refresh and how to back off, are in [`policy`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::error::InvalidResponse;
use super::source::TokenSource;
use super::{AccessToken, CacheKey, TokenError};
use crate::idp::background::{self, Background, Worker};
use crate::telemetry;

pub(in crate::client) mod policy;

use policy::{MIN_INTERVAL, RefreshPolicy};

/// How long a caller waits for a token, by default.
pub(super) const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// What every clone of a [`TokenCache`](super::TokenCache) shares.
pub(super) struct TokenCacheState {
    pub(super) current: ArcSwapOption<AccessToken>,
    pub(super) key: CacheKey,
    /// The cold path's decisions. Only callers without a usable token and the
    /// refresher take it, for a few instructions and never across an await.
    control: Mutex<Control>,
    /// Fetches started, finished and failed; how the last one ended.
    background: Background<TokenError>,
    force_cooldown: Duration,
    /// How long a caller waits for a token, retries after transient failures included.
    max_wait: Duration,
}

#[derive(Debug, Default)]
struct Control {
    /// Callers need a token of a generation above this one (0: any valid token).
    demand: Option<u64>,
    /// No fetch before this instant: the backoff after a failure.
    retry_at: Option<Instant>,
    /// When a forced refresh was last granted, and for which rejected generation.
    last_forced: Option<(Instant, u64)>,
}

impl TokenCacheState {
    /// The state, and its task started on `runtime`; the first fetch happens when a
    /// token is first needed.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        source: Box<dyn TokenSource>,
        policy: RefreshPolicy,
        force_cooldown: Duration,
        max_wait: Duration,
    ) -> Arc<TokenCacheState> {
        let (background, signals) = Background::new();
        let state = Arc::new(TokenCacheState {
            current: ArcSwapOption::empty(),
            key: source.key().clone(),
            control: Mutex::new(Control::default()),
            background,
            force_cooldown,
            max_wait,
        });
        let refresher = TokenRefresher { source, policy };
        runtime.spawn(refresher.run(signals.worker(&state)));
        state
    }

    pub(super) fn attempts(&self) -> u64 {
        self.background.attempts()
    }

    pub(super) fn failures(&self) -> u64 {
        self.background.failures()
    }

    /// The current token if it is valid at `now` and of a generation above `newer_than`.
    pub(super) fn valid(&self, now: Instant, newer_than: u64) -> Option<Arc<AccessToken>> {
        let current = self.current.load();
        current.as_ref().filter(|t| t.is_valid_at(now) && t.generation() > newer_than).cloned()
    }

    /// Asks for a new token in place of `generation`, which an API rejected, without
    /// waiting; whether a fetch was asked for.
    pub(super) fn hint_rejected(&self, generation: u64) -> bool {
        let now = background::now();
        if self.valid(now, generation).is_some() {
            return false;
        }
        let asked = self.request(&mut self.control(), generation, true, now).is_ok();
        if asked {
            self.background.wake();
        }
        asked
    }

    /// Waits for a valid token of a generation above `newer_than`, asking the
    /// refresher for a fetch when needed, for at most the cache's `max_wait`.
    ///
    /// After a failure, a caller waits out the backoff (which honours `Retry-After`)
    /// and the retry the refresher makes on its own when the failure is transient and
    /// the retry is due within the caller's bound; otherwise it gets the error at once.
    /// Waiting callers never add requests: the refresher makes one retry for them all.
    pub(super) async fn obtain(&self, newer_than: u64, forced: bool) -> Result<Arc<AccessToken>, TokenError> {
        let timer = telemetry::Timer::start();
        let result = self.obtain_within(newer_than, forced).await;
        telemetry::token_wait(timer.elapsed());
        result
    }

    async fn obtain_within(&self, newer_than: u64, forced: bool) -> Result<Arc<AccessToken>, TokenError> {
        let mut progress = self.background.subscribe();
        let deadline = background::now() + self.max_wait;
        let mut first = true;
        loop {
            {
                let mut control = self.control();
                // Mark what has been seen first, then look at the token: a fetch that
                // completes after this point wakes us below.
                let outcome = progress.borrow_and_update().outcome.clone();
                let now = background::now();
                if let Some(token) = self.valid(now, newer_than) {
                    return Ok(token);
                }
                let retry_at = control.retry_at.filter(|at| now < *at);
                match (retry_at, outcome) {
                    // Backing off after a transient failure, with the retry due within
                    // the bound: wait for it.
                    (Some(at), Err(error)) if error.is_transient() && at <= deadline => {
                        tracing::debug!(%error, wait_ms = (at - now).as_millis() as u64, "waiting for the token request's retry");
                    }
                    (Some(_), outcome) => return Err(outcome.err().unwrap_or(TokenError::Stopped)),
                    (None, Err(error)) if !first && !error.is_transient() => return Err(error),
                    (None, _) => self.request(&mut control, newer_than, forced && first, now)?,
                }
            }
            first = false;
            self.background.wake();
            let wait = deadline.saturating_duration_since(background::now());
            match tokio::time::timeout(wait, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(TokenError::Stopped),
                // The bound passed: the failure that kept the token away, if any.
                Err(_) => return Err(self.background.last_error().unwrap_or(TokenError::Timeout)),
            }
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // Every critical section leaves the state consistent.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a demand for a token above `newer_than`, unless the cache is backing
    /// off (then the last error) or a forced refresh is within its cooldown.
    fn request(&self, control: &mut Control, newer_than: u64, forced: bool, now: Instant) -> Result<(), TokenError> {
        if control.retry_at.is_some_and(|at| now < at) {
            return Err(self.background.last_error().unwrap_or(TokenError::Stopped));
        }
        match control.last_forced {
            // Another caller already forced a refresh for this token (or a newer one):
            // join it.
            Some((_, rejected)) if forced && newer_than <= rejected => {}
            Some((at, _)) if forced && now.duration_since(at) < self.force_cooldown => {
                return Err(TokenError::Throttled);
            }
            _ if forced => control.last_forced = Some((now, newer_than)),
            _ => {}
        }
        control.demand = Some(control.demand.map_or(newer_than, |d| d.max(newer_than)));
        Ok(())
    }

    /// Called by the refresher when woken: whether callers need a fetch now. Clears a
    /// demand that is met, or that must wait for the backoff (its callers were told).
    fn take_demand(&self, now: Instant) -> bool {
        let mut control = self.control();
        let Some(newer_than) = control.demand.take() else { return false };
        let met = self.valid(now, newer_than).is_some();
        let backing_off = control.retry_at.is_some_and(|at| now < at);
        !met && !backing_off
    }

    /// Publishes a new token: first the token, then the progress that wakes waiters.
    fn succeeded(&self, token: AccessToken) {
        let generation = token.generation();
        self.current.store(Some(Arc::new(token)));
        {
            let mut control = self.control();
            control.retry_at = None;
            if control.demand.is_some_and(|d| d < generation) {
                control.demand = None;
            }
        }
        self.background.finish(Ok(()));
    }

    fn failed(&self, error: TokenError, retry_at: Instant) {
        let mut control = self.control();
        control.retry_at = Some(retry_at);
        // Under the lock, so a caller that sees the backoff sees its error too.
        self.background.finish(Err(error));
    }
}

/// The task of a token cache: fetches when callers need a token, ahead of expiry, and
/// again after a failure once the backoff allows.
struct TokenRefresher {
    source: Box<dyn TokenSource>,
    policy: RefreshPolicy,
}

impl TokenRefresher {
    async fn run(mut self, mut worker: Worker<TokenCacheState>) {
        let mut generation = 0_u64;
        let mut failures = 0_u32;
        // The next scheduled fetch: ahead of expiry, or a retry after a failure. None
        // until the first token is needed.
        let mut next: Option<Instant> = None;
        loop {
            {
                let Some(state) = worker.wait(next).await else { return };
                let now = background::now();
                let due = next.is_some_and(|at| now >= at);
                let demanded = state.take_demand(now);
                if !demanded && !due {
                    continue;
                }
                if due && failures == 0 && state.valid(now, 0).is_some() {
                    telemetry::token_refresh_ahead();
                }
                state.background.begin();
            }
            // No strong handle during the fetch: dropping the last handle stops the task
            // even mid-fetch.
            let started = background::now();
            let Some(outcome) = worker.unless_stopped(self.source.fetch()).await else { return };
            let Some(state) = worker.state() else { return };
            let dpop_key = self.source.dpop_key().cloned();
            let token = outcome.and_then(|response| {
                // A token from a shared store was issued earlier, maybe by another
                // process: its lifetime and refresh point count from then.
                let obtained = started.checked_sub(response.issued_ago()).unwrap_or(started);
                // RFC 9449 §5: a DPoP token is usable only with the key it is bound to.
                let dpop = match (response.is_dpop(), dpop_key) {
                    (false, _) => None,
                    (true, Some(key)) => Some(key),
                    (true, None) => return Err(TokenError::UnsupportedTokenType("DPoP".into())),
                };
                let (token, expires_in, _, scope) = response.into_parts();
                let lifetime = expires_in.unwrap_or(self.policy.default_lifetime);
                AccessToken::new(&token, obtained, lifetime, scope, generation + 1, dpop)
                    .ok_or(TokenError::InvalidResponse(InvalidResponse::MalformedAccessToken))
            });
            match token {
                Ok(token) => {
                    generation += 1;
                    failures = 0;
                    let refresh_in = self.policy.refresh_after(token.lifetime());
                    next = Some((token.obtained_at() + refresh_in).max(background::now() + MIN_INTERVAL));
                    tracing::debug!(
                        generation,
                        lifetime_s = token.lifetime().as_secs(),
                        refresh_in_s = refresh_in.as_secs(),
                        "access token obtained"
                    );
                    state.succeeded(token);
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.policy.after_failure(failures, error.retry_after());
                    let retry_at = background::now() + delay;
                    next = Some(retry_at);
                    tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, "token fetch failed; the current token serves until it expires");
                    state.failed(error, retry_at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::source::FetchFuture;
    use crate::client::{GrantKind, TokenResponse};
    use crate::idp::background::script::{Director, Script, script};

    type Outcome = Result<TokenResponse, TokenError>;

    /// A token source whose answers the test hands over, one per fetch, when it likes.
    struct Scripted {
        key: CacheKey,
        script: Script<Outcome>,
    }

    impl TokenSource for Scripted {
        fn key(&self) -> &CacheKey {
            &self.key
        }

        fn fetch(&mut self) -> FetchFuture<'_> {
            Box::pin(self.script.next())
        }
    }

    struct Harness {
        state: Arc<TokenCacheState>,
        director: Director<Outcome>,
    }

    const FORCE_COOLDOWN: Duration = Duration::from_secs(5);
    const MAX_WAIT: Duration = DEFAULT_MAX_WAIT;
    const LIFETIME: Duration = Duration::from_secs(300);

    fn start() -> Harness {
        let (script, director) = script();
        let key = CacheKey::new("memory:", "c", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        let source = Box::new(Scripted { key, script });
        let runtime = tokio::runtime::Handle::current();
        let state = TokenCacheState::start(&runtime, source, RefreshPolicy::default(), FORCE_COOLDOWN, MAX_WAIT);
        Harness { state, director }
    }

    impl Harness {
        fn succeed(&self, token: &str) {
            self.director.send(TokenResponse::bearer(token, Some(LIFETIME)));
        }

        /// A failure that waiting will not mend.
        fn fail(&self) {
            self.director.send(Err(TokenError::Unauthorized));
        }

        fn rate_limited(&self, retry_after: Duration) {
            self.director.send(Err(TokenError::RateLimited { retry_after: Some(retry_after) }));
        }

        fn started(&self) -> u64 {
            self.director.started()
        }

        /// A caller waiting for a token above `newer_than`, in its own task.
        fn obtain(
            &self,
            newer_than: u64,
            forced: bool,
        ) -> tokio::task::JoinHandle<Result<Arc<AccessToken>, TokenError>> {
            let state = self.state.clone();
            tokio::spawn(async move { state.obtain(newer_than, forced).await })
        }

        fn generation(&self) -> Option<u64> {
            self.state.current.load().as_ref().map(|t| t.generation())
        }
    }

    /// Lets every other task run until it waits.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_fetched_until_a_token_is_needed_then_callers_share_one_fetch() {
        let h = start();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!((h.started(), h.state.attempts()), (0, 0));

        let callers = [h.obtain(0, false), h.obtain(0, false), h.obtain(0, false)];
        settle().await;
        assert_eq!((h.started(), h.state.attempts()), (1, 1));
        h.succeed("t1");
        for caller in callers {
            let token = caller.await.unwrap().unwrap();
            assert_eq!((token.expose(), token.generation()), ("t1", 1));
        }
        assert_eq!(h.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_refreshed_ahead_of_expiry_while_it_serves() {
        let h = start();
        let caller = h.obtain(0, false);
        settle().await;
        h.succeed("t1");
        caller.await.unwrap().unwrap();

        // 80 % of 300 s is 240 s.
        tokio::time::sleep(Duration::from_secs(239)).await;
        assert_eq!(h.started(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(h.started(), 2);
        assert!(h.state.valid(background::now(), 0).is_some(), "the current token serves meanwhile");
        h.succeed("t2");
        settle().await;
        assert_eq!(h.generation(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_refresh_replaces_only_the_rejected_generation_once_per_cooldown() {
        let h = start();
        let caller = h.obtain(0, false);
        settle().await;
        h.succeed("t1");
        caller.await.unwrap().unwrap();

        // Two callers with the rejected token 1 share one fetch.
        let (a, b) = (h.obtain(1, true), h.obtain(1, true));
        settle().await;
        assert_eq!(h.started(), 2);
        h.succeed("t2");
        assert_eq!(a.await.unwrap().unwrap().generation(), 2);
        assert_eq!(b.await.unwrap().unwrap().generation(), 2);

        // Token 1 again: replaced already, nothing to fetch.
        assert_eq!(h.state.obtain(1, true).await.unwrap().generation(), 2);
        assert!(!h.state.hint_rejected(1));

        // Token 2 rejected within the cooldown: refused, without a fetch.
        assert!(matches!(h.state.obtain(2, true).await, Err(TokenError::Throttled)));
        assert!(!h.state.hint_rejected(2));
        settle().await;
        assert_eq!(h.started(), 2);

        // After the cooldown, a hint asks for a fetch without waiting for it.
        tokio::time::sleep(FORCE_COOLDOWN).await;
        assert!(h.state.hint_rejected(2));
        settle().await;
        assert_eq!(h.started(), 3);
        h.succeed("t3");
        settle().await;
        assert_eq!(h.generation(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_wakes_the_waiters_and_callers_get_it_until_the_backoff_ends() {
        let h = start();
        let (a, b) = (h.obtain(0, false), h.obtain(0, false));
        settle().await;
        h.fail();
        assert!(matches!(a.await.unwrap(), Err(TokenError::Unauthorized)));
        assert!(matches!(b.await.unwrap(), Err(TokenError::Unauthorized)));
        assert_eq!((h.state.attempts(), h.state.failures()), (1, 1));

        // Within the backoff (1 s ± 20 %): the last error at once, and no fetch.
        let before = background::now();
        assert!(matches!(h.state.obtain(0, false).await, Err(TokenError::Unauthorized)));
        assert_eq!(background::now(), before);
        assert_eq!(h.started(), 1);

        // Then the task retries on its own, and a success wakes the waiter.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(h.started(), 2);
        let caller = h.obtain(0, false);
        settle().await;
        h.succeed("t1");
        assert_eq!(caller.await.unwrap().unwrap().expose(), "t1");
        assert_eq!((h.state.attempts(), h.state.failures()), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_waits_no_longer_than_the_bound() {
        let h = start();
        let started = background::now();
        assert!(matches!(h.state.obtain(0, false).await, Err(TokenError::Timeout)));
        assert_eq!(background::now() - started, MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn cold_callers_wait_out_a_retry_after_within_the_bound_with_one_retry_for_all() {
        let h = start();
        let started = background::now();
        let callers: Vec<_> = (0..50).map(|_| h.obtain(0, false)).collect();
        settle().await;
        assert_eq!(h.started(), 1);
        h.rate_limited(Duration::from_secs(1));
        settle().await;
        assert!(callers.iter().all(|c| !c.is_finished()), "429 with Retry-After: 1 is waited out");

        // The refresher retries once, after the Retry-After (and the jittered backoff).
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(h.started(), 2, "one retry for all the waiting callers");
        h.succeed("t1");
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().expose(), "t1");
        }
        assert!(background::now() - started <= Duration::from_millis(1300));
        assert_eq!((h.state.attempts(), h.state.failures()), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_bound_fails_at_once_with_the_typed_error() {
        let h = start();
        let caller = h.obtain(0, false);
        settle().await;
        h.rate_limited(Duration::from_secs(30));
        let started = background::now();
        let error = caller.await.unwrap().unwrap_err();
        assert!(matches!(error, TokenError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(30)));
        assert_eq!(background::now(), started);
        // And so does a caller that arrives during that backoff.
        assert!(matches!(h.state.obtain(0, false).await, Err(TokenError::RateLimited { .. })));
        assert_eq!(background::now(), started);
        assert_eq!(h.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_after_a_retry_is_waited_out_until_the_bound() {
        let h = start();
        let started = background::now();
        let caller = h.obtain(0, false);
        // Transport-like failures, each retried after a doubling backoff (1, 2, 4 s ±
        // 20 %): the caller waits while the next retry is due within its 10 s.
        for _ in 0..10 {
            settle().await;
            if caller.is_finished() {
                break;
            }
            h.director.send(Err(TokenError::Timeout));
            tokio::time::sleep(Duration::from_millis(100)).await;
            while !caller.is_finished() && h.started() == h.state.attempts() && h.state.attempts() == h.state.failures()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(matches!(caller.await.unwrap(), Err(TokenError::Timeout)));
        let waited = background::now() - started;
        assert!(waited <= MAX_WAIT, "waited {waited:?}");
        assert!(h.started() >= 3, "{} attempts", h.started());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_handle_stops_the_task_even_mid_fetch() {
        let h = start();
        let caller = h.obtain(0, false);
        settle().await;
        caller.abort();
        assert_eq!(h.started(), 1);
        drop(h.state);
        settle().await;
        assert!(h.director.dropped(), "the task ended");

        let h = start();
        settle().await;
        drop(h.state);
        settle().await;
        assert!(h.director.dropped(), "the idle task ended too");
    }
}
