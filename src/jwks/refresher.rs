//! The state behind a [`KeyStore`](super::KeyStore) handle, and the background task
//! that keeps it fresh.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::schedule::Schedule;
use super::source::{FetchKeys, Keys};
use crate::KeySet;
use crate::error::FetchError;
use crate::idp::background::{self, Background, Worker};
use crate::telemetry::{self, Trigger};

/// What every clone of a [`KeyStore`](super::KeyStore) shares.
pub(super) struct KeyStoreState {
    pub(super) keys: ArcSwapOption<KeySet>,
    remote: Option<Remote>,
}

/// Why the task was woken, for the metrics: a [`Trigger`] as a number (0: the schedule).
const SCHEDULE: u8 = 0;
const UNKNOWN_KID: u8 = 1;
const MANUAL: u8 = 2;

struct Remote {
    /// Fetches started (the first counts from build time), finished and failed; why
    /// the last one failed.
    background: Background<FetchError>,
    /// The cold path's one decision: claim, join or refuse an on-demand fetch. A lock
    /// is fine here: only requests with an unknown `kid` come this way, and they hold it
    /// for a few instructions, never across an await.
    on_demand: Mutex<OnDemand>,
    pacing: Pacing,
    /// How long a request waits for an on-demand fetch: the one in flight, then its own.
    wait: Duration,
    /// What woke the task last: [`UNKNOWN_KID`], [`MANUAL`], or [`SCHEDULE`] once taken.
    trigger: AtomicU8,
}

/// How often unknown `kid`s may trigger a fetch: see [`KeyStoreState::refresh_for_unknown_kid`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    /// The cooldown after the first on-demand fetch; it doubles with each further one.
    pub(super) first: Duration,
    /// The longest cooldown, and the quiet time (no unknown `kid` at all) that brings
    /// the cooldown back to `first`.
    pub(super) max: Duration,
    /// The longest a request waits for the cooldown to end before its fetch.
    pub(super) max_wait: Duration,
}

impl Pacing {
    /// The first cooldown of a kind of on-demand fetch: ordinary ones start at
    /// [`Pacing::first`], repeated-`kid` ones at 1 s (or the ceiling, when shorter).
    fn first(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Ordinary => self.first,
            Kind::Repeated => REPEAT_FIRST_COOLDOWN.min(self.max),
        }
    }
}

/// The two kinds of on-demand fetch, each paced on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    /// Claimed by any unknown `kid` once the cooldown has passed.
    #[default]
    Ordinary,
    /// Claimed inside a long cooldown by a `kid` that [`REPEATS`] requests named.
    Repeated,
}

/// The fetches of one kind claimed since the last reset, and when the last was: the
/// cooldown is the kind's first one, doubled with each claim, up to the ceiling.
#[derive(Debug, Default)]
struct Paced {
    last: Option<Instant>,
    claims: u32,
}

impl Paced {
    /// When the next fetch of this kind may start (at once if none was claimed).
    fn next(&self, first: Duration, max: Duration, now: Instant) -> Instant {
        let doublings = self.claims.saturating_sub(1).min(31);
        self.last.map_or(now, |last| last + first.saturating_mul(1 << doublings).min(max))
    }
}

/// How many requests inside the cooldown must name the same unknown `kid` before it
/// earns a fetch of its own: a real new key is on every token its issuer now signs,
/// while a flood of made-up `kid`s names each once.
const REPEATS: u32 = 3;

/// How many unknown `kid`s are counted between fetches: at 100 made-up `kid`s a second
/// a new one is kept for over a second, time for requests to name it again.
const SUSPECTS: usize = 128;

/// The first cooldown of the repeated-`kid` fetches.
const REPEAT_FIRST_COOLDOWN: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct OnDemand {
    /// Ordinary claims since a quiet spell, less those whose fetch brought a new key.
    ordinary: Paced,
    /// Repeated-`kid` claims, counted the same way.
    repeated: Paced,
    /// Until when an unknown `kid` was last seen: when its request arrived, or when it
    /// stops waiting, whichever is later.
    last_seen: Option<Instant>,
    /// The fetch number the last claim waits for (one that starts after the claim), and
    /// the kind of that claim.
    target: u64,
    target_kind: Kind,
    /// The unknown `kid`s refused since the last claim, by a keyed hash (an attacker's
    /// `kid`s are neither kept nor able to collide on purpose), with how many requests
    /// named each: bounded, the least named making room.
    suspects: Vec<(u64, u32)>,
    hasher: RandomState,
}

impl OnDemand {
    /// A request with an unknown `kid` is there until `until`.
    fn seen_until(&mut self, until: Instant) {
        self.last_seen = Some(self.last_seen.map_or(until, |seen| seen.max(until)));
    }

    fn paced(&mut self, kind: Kind) -> &mut Paced {
        match kind {
            Kind::Ordinary => &mut self.ordinary,
            Kind::Repeated => &mut self.repeated,
        }
    }

    /// Counts one more request naming `kid`; returns how many did since the last claim.
    fn suspect(&mut self, kid: &str) -> u32 {
        let kid = self.hasher.hash_one(kid);
        if let Some((_, count)) = self.suspects.iter_mut().find(|(known, _)| *known == kid) {
            *count += 1;
            return *count;
        }
        if self.suspects.len() >= SUSPECTS {
            // The oldest of the least named makes room: the order is that of arrival.
            let least = self.suspects.iter().enumerate().min_by_key(|(_, (_, count))| *count).map(|(i, _)| i);
            if let Some(least) = least {
                self.suspects.remove(least);
            }
        }
        self.suspects.push((kid, 1));
        1
    }

    /// A fetch of `kind`, claimed at `now`, starts after now for every request that
    /// waits on `target`.
    fn claim(&mut self, kind: Kind, now: Instant, target: u64) {
        let paced = self.paced(kind);
        paced.last = Some(now);
        paced.claims = paced.claims.saturating_add(1);
        self.target = target;
        self.target_kind = kind;
        self.suspects.clear();
    }
}

/// What a request with an unknown `kid` does now.
enum Decision {
    /// Wait for this fetch (joined or claimed).
    Fetch(u64),
    /// The cooldown ends at this instant, within the request's wait: sleep, then decide again.
    Sleep(Instant),
    /// No fetch of its own within the request's wait, but one that other requests naming
    /// the same `kid` may earn: wait for a fetch that starts after now, until the
    /// request's wait ends.
    Watch(u64),
    /// No fetch within the request's wait.
    Refuse,
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
        pacing: Pacing,
        wait: Duration,
    ) -> Arc<KeyStoreState> {
        let (background, signals) = Background::new();
        // The first fetch counts as started now, so early requests join it.
        background.begin();
        let remote = Remote {
            background,
            on_demand: Mutex::new(OnDemand::default()),
            pacing,
            wait,
            trigger: AtomicU8::new(SCHEDULE),
        };
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
        remote.trigger.store(MANUAL, Ordering::Relaxed);
        remote.background.wake();
        remote.background.wait_for_fetch(target, remote.wait).await.is_some_and(|p| p.outcome.is_ok())
    }

    /// For a request whose token names a `kid` the set lacks, or when no set is loaded:
    /// waits for a fetch that can have the key, sharing it with every other such
    /// request.
    ///
    /// On-demand fetches are paced by a cooldown that starts short ([`Pacing::first`])
    /// and doubles with each on-demand fetch that brings no new key, up to
    /// [`Pacing::max`]; a quiet spell of [`Pacing::max`] with no unknown `kid` brings it
    /// back to its start. So a few made-up `kid`s cost a rotation at most a short wait,
    /// while a flood of them costs the issuer a handful of fetches a minute. A request
    /// inside the cooldown waits for its end when that is within [`Pacing::max_wait`].
    /// A made-up `kid` and a real one take the same path.
    ///
    /// Inside a long cooldown, a `kid` that [`REPEATS`] requests named earns a fetch of
    /// its own, paced apart (1 s doubling to the ceiling), and the requests before it
    /// wait for that fetch (up to [`Pacing::max_wait`]): the first tokens of a new key
    /// are served within moments even during a flood of made-up `kid`s, each named once.
    /// A made-up `kid` therefore waits [`Pacing::max_wait`] before it is refused, as a
    /// real one would.
    pub(super) async fn refresh_for_unknown_kid(&self, kid: Option<&str>) {
        let Some(remote) = &self.remote else { return };
        let deadline = background::now() + remote.pacing.max_wait;
        let timer = telemetry::Timer::start();
        let target = loop {
            match self.decide(remote, deadline, kid) {
                Decision::Fetch(target) => break target,
                Decision::Sleep(until) => tokio::time::sleep_until(until.into()).await,
                Decision::Watch(target) => {
                    let left = deadline.saturating_duration_since(background::now());
                    let fetched = remote.background.wait_for_fetch(target, left).await.is_some();
                    if !fetched {
                        telemetry::unknown_kid_refused();
                    }
                    telemetry::key_wait(timer.elapsed());
                    return;
                }
                Decision::Refuse => {
                    telemetry::unknown_kid_refused();
                    return;
                }
            }
        };
        remote.background.wait_for_fetch(target, remote.wait).await;
        telemetry::key_wait(timer.elapsed());
    }

    fn decide(&self, remote: &Remote, deadline: Instant, kid: Option<&str>) -> Decision {
        let mut on_demand = remote.on_demand.lock().unwrap_or_else(|e| e.into_inner());
        let now = background::now();
        if on_demand.last_seen.is_some_and(|seen| now.saturating_duration_since(seen) >= remote.pacing.max) {
            on_demand.ordinary.claims = 0;
            on_demand.repeated.claims = 0;
        }
        on_demand.seen_until(now);
        let started = remote.background.attempts();
        let completed = remote.background.completed();
        if !self.is_loaded() && started > completed {
            // The first fetch is under way: any fetch will do.
            return Decision::Fetch(started);
        }
        if on_demand.target > completed {
            // Another request claimed a fetch that has not finished: join it.
            return Decision::Fetch(on_demand.target);
        }
        let pacing = &remote.pacing;
        let next = on_demand.ordinary.next(pacing.first(Kind::Ordinary), pacing.max, now);
        if next <= now {
            return self.claim(remote, &mut on_demand, Kind::Ordinary, now, started);
        }
        if next <= deadline {
            // A request asleep is still there: the quiet spell starts once it is done.
            on_demand.seen_until(next);
            return Decision::Sleep(next);
        }
        // A long cooldown: only a `kid` that requests keep naming earns a fetch now.
        let repeated = kid.is_some_and(|kid| on_demand.suspect(kid) >= REPEATS);
        if repeated && on_demand.repeated.next(pacing.first(Kind::Repeated), pacing.max, now) <= now {
            return self.claim(remote, &mut on_demand, Kind::Repeated, now, started);
        }
        match kid {
            // Other requests may yet name it enough.
            Some(_) if deadline > now => {
                on_demand.seen_until(deadline);
                Decision::Watch(started + 1)
            }
            _ => Decision::Refuse,
        }
    }

    /// Claims a fetch of `kind` that starts after now, so it sees the new key even if an
    /// older (scheduled) fetch is running at this moment, and wakes the task for it.
    fn claim(&self, remote: &Remote, on_demand: &mut OnDemand, kind: Kind, now: Instant, started: u64) -> Decision {
        on_demand.claim(kind, now, started + 1);
        tracing::debug!(?kind, claims = on_demand.paced(kind).claims, "unknown kid: fetching keys on demand");
        remote.trigger.store(UNKNOWN_KID, Ordering::Relaxed);
        remote.background.wake();
        Decision::Fetch(on_demand.target)
    }

    /// Publishes a fetch: the new keys (or the error, keeping the last good keys), then
    /// the progress that wakes waiters.
    fn finish(&self, outcome: Result<KeySet, FetchError>) {
        let Some(remote) = &self.remote else { return };
        let outcome = outcome.map(|keys| {
            let previous = self.keys.swap(Some(Arc::new(keys)));
            let current = self.keys.load();
            if let (Some(previous), Some(current)) = (previous, &*current)
                && brought_a_new_key(&previous, current)
            {
                // The cooldown grows only with fetches that bring nothing new: the claim
                // of a fetch that brought a key is taken back.
                let fetch = remote.background.completed() + 1;
                let mut on_demand = remote.on_demand.lock().unwrap_or_else(|e| e.into_inner());
                if on_demand.target == fetch {
                    let kind = on_demand.target_kind;
                    let paced = on_demand.paced(kind);
                    paced.claims = paced.claims.saturating_sub(1);
                }
            }
        });
        remote.background.finish(outcome);
    }

    /// What started the fetch that begins now, and back to the schedule for the next.
    fn take_trigger(&self) -> Trigger {
        match self.remote.as_ref().map_or(SCHEDULE, |r| r.trigger.swap(SCHEDULE, Ordering::Relaxed)) {
            UNKNOWN_KID => Trigger::UnknownKid,
            MANUAL => Trigger::Manual,
            _ => Trigger::Schedule,
        }
    }

    fn begin(&self) {
        if let Some(remote) = &self.remote {
            remote.background.begin();
        }
    }
}

/// Whether `current` holds a key that `previous` did not (by `kid`, or by thumbprint
/// for keys without one). Sets are small and bounded, so the pairwise look is cheap.
fn brought_a_new_key(previous: &KeySet, current: &KeySet) -> bool {
    current.iter().any(|key| match key.kid() {
        Some(kid) => !previous.contains_kid(kid),
        None => !previous.iter().any(|old| old.thumbprint() == key.thumbprint()),
    })
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
            let trigger = if due.is_some() {
                // The first was counted at build time.
                state.begin();
                state.take_trigger()
            } else {
                Trigger::Start
            };
            drop(state);
            let Some(outcome) = worker.unless_stopped(self.fetcher.fetch()).await else { return };
            let Some(state) = worker.state() else { return };
            let result = match &outcome {
                Ok(fetched) if fetched.not_modified => "not_modified",
                Ok(_) => "ok",
                Err(_) => "error",
            };
            telemetry::jwks_fetch(result, trigger);
            let delay = match outcome {
                Ok(Keys { keys, max_age, .. }) => {
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

    const PACING: Pacing =
        Pacing { first: Duration::from_millis(250), max: Duration::from_secs(30), max_wait: Duration::from_secs(2) };
    const WAIT: Duration = Duration::from_secs(21);

    fn start() -> Harness {
        start_with(PACING)
    }

    /// A store whose first fetch loaded the key `k1`.
    async fn loaded(pacing: Pacing) -> Harness {
        let h = start_with(pacing);
        h.succeed("k1");
        assert!(h.state.wait_until_loaded(Duration::from_secs(1)).await);
        h
    }

    fn start_with(pacing: Pacing) -> Harness {
        let (script, director) = script();
        let runtime = tokio::runtime::Handle::current();
        let state = KeyStoreState::start(&runtime, Scripted(script), Schedule::default(), pacing, WAIT);
        Harness { state, director }
    }

    impl Harness {
        fn succeed(&self, kid: &str) {
            self.director.send(Ok(Keys { keys: keys(kid), max_age: None, not_modified: false }));
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
            tokio::spawn(async move { state.refresh_for_unknown_kid(None).await })
        }

        /// A made-up `kid` whose fetch brings the same keys: returns the time it took.
        async fn made_up_kid(&self, answered: &mut u64) -> Duration {
            let started = background::now();
            let request = self.unknown_kid();
            while !request.is_finished() {
                settle().await;
                if self.director.started() > *answered {
                    *answered += 1;
                    self.succeed("k1");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            background::now() - started
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
    async fn unknown_kids_share_one_fetch_and_a_long_cooldown_refuses_another() {
        let h = loaded(Pacing { max_wait: Duration::ZERO, ..PACING }).await;

        // Claimed by the first request, joined by the second: one fetch.
        let (a, b) = (h.unknown_kid(), h.unknown_kid());
        settle().await;
        assert_eq!((h.state.attempts(), h.director.started()), (2, 2));
        h.succeed("k1");
        a.await.unwrap();
        b.await.unwrap();

        // Within the cooldown (250 ms after one fruitless fetch), with no wait allowed:
        // refused, at once, with no fetch.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = background::now();
        h.state.refresh_for_unknown_kid(None).await;
        assert_eq!(background::now(), started);
        settle().await;
        assert_eq!(h.state.attempts(), 2);

        // After it: a new claim, which brings a new key.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = h.unknown_kid();
        settle().await;
        assert_eq!(h.state.attempts(), 3);
        h.succeed("k2");
        c.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("k2"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cooldown_doubles_with_each_fetch_that_brings_nothing_up_to_its_ceiling() {
        let h = loaded(PACING).await;
        let mut answered = 1;
        // Each made-up kid back to back: the first fetches at once, each later one waits
        // out the cooldown left by the fetches before it, while that is within 2 s.
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(h.made_up_kid(&mut answered).await.as_millis() / 10 * 10);
        }
        assert_eq!(waits, [10, 250, 500, 1000, 2000], "rounded to the harness's 10 ms steps");
        assert_eq!(h.director.started(), 6);
        // Now 4 s: beyond the wait, so refused at once with no fetch.
        let started = background::now();
        h.state.refresh_for_unknown_kid(None).await;
        assert_eq!(background::now(), started);
        assert_eq!(h.director.started(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_made_up_kids_costs_at_most_eight_fetches_a_minute() {
        let h = loaded(PACING).await;
        // 50 made-up kids a second for 60 s; every fetch brings the same keys.
        let mut answered = 1;
        let mut requests = Vec::new();
        for _ in 0..3000 {
            requests.push(h.unknown_kid());
            tokio::time::sleep(Duration::from_millis(20)).await;
            while h.director.started() > answered {
                answered += 1;
                h.succeed("k1");
            }
        }
        let on_demand = h.director.started() - 1;
        assert!((6..=8).contains(&on_demand), "{on_demand} on-demand fetches in a minute");
        for request in requests {
            request.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotation_after_a_few_made_up_kids_is_fetched_within_two_seconds() {
        let h = loaded(PACING).await;
        let mut answered = 1;
        for _ in 0..3 {
            h.made_up_kid(&mut answered).await;
        }
        // The issuer publishes k2; its first token arrives at once.
        let started = background::now();
        let request = h.unknown_kid();
        while h.director.started() == answered {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.succeed("k2");
        request.await.unwrap();
        assert_eq!(h.kid().as_deref(), Some("k2"));
        assert!(background::now() - started <= Duration::from_secs(2), "{:?}", background::now() - started);

        // The fetch that brought the key did not grow the cooldown: it is still the 1 s
        // the three made-up kids left, counted from that fetch.
        let fetched = background::now();
        tokio::time::sleep(Duration::from_millis(900)).await;
        let request = h.unknown_kid();
        settle().await;
        assert_eq!(h.director.started(), answered + 1, "it waits for the cooldown");
        while h.director.started() == answered + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(background::now() - fetched, Duration::from_secs(1));
        h.succeed("k2");
        request.await.unwrap();
    }

    #[test]
    fn the_suspects_make_room_by_the_oldest_of_the_least_named() {
        let mut on_demand = OnDemand::default();
        assert_eq!(on_demand.suspect("real"), 1);
        for i in 0..SUSPECTS - 1 {
            on_demand.suspect(&format!("junk-{i}"));
        }
        // Full: the next newcomer pushes out the oldest entry named once, "real".
        on_demand.suspect("newcomer");
        assert_eq!(on_demand.suspect("real"), 1, "counted afresh");
        assert_eq!(on_demand.suspect("real"), 2);
        // Named twice, it outlives a table's worth of kids named once.
        for i in 0..SUSPECTS * 2 {
            on_demand.suspect(&format!("more-junk-{i}"));
        }
        assert_eq!(on_demand.suspect("real"), 3);
        on_demand.claim(Kind::Ordinary, background::now(), 7);
        assert!(on_demand.suspects.is_empty(), "a claim answers for every suspect");
    }

    /// Requests naming `kid`, each in its own task.
    fn named(h: &Harness, kid: &str) -> tokio::task::JoinHandle<()> {
        let (state, kid) = (h.state.clone(), kid.to_owned());
        tokio::spawn(async move { state.refresh_for_unknown_kid(Some(&kid)).await })
    }

    #[tokio::test(start_paused = true)]
    async fn inside_a_long_cooldown_a_kid_that_requests_keep_naming_earns_a_fetch() {
        // A cooldown of 8 s from the first on-demand fetch on: beyond the 2 s wait.
        let h = loaded(Pacing { first: Duration::from_secs(8), ..PACING }).await;
        let mut answered = 1;
        h.made_up_kid(&mut answered).await;
        // 100 kids, each named once, all at once: each waits its 2 s, and none fetches.
        let before = h.director.started();
        let started = background::now();
        let junk: Vec<_> = (0..100).map(|i| named(&h, &format!("junk-{i}"))).collect();
        for request in junk {
            request.await.unwrap();
        }
        assert_eq!(h.director.started(), before, "kids named once earn nothing");
        assert_eq!(background::now() - started, Duration::from_secs(2));

        // The issuer rotates; the new kid is on every token. The first two requests
        // wait, and the third fetches for all three.
        let started = background::now();
        let (first, second) = (named(&h, "k2"), named(&h, "k2"));
        settle().await;
        assert_eq!(h.director.started(), before, "two requests are not enough");
        let third = named(&h, "k2");
        settle().await;
        assert_eq!(h.director.started(), before + 1);
        h.succeed("k2");
        for request in [first, second, third] {
            request.await.unwrap();
        }
        assert_eq!(h.kid().as_deref(), Some("k2"));
        assert_eq!(background::now(), started, "no request waited for the clock");
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_made_up_kid_earns_fetches_only_at_a_doubling_pace() {
        let h = loaded(PACING).await;
        let mut answered = 1;
        for _ in 0..6 {
            h.made_up_kid(&mut answered).await;
        }
        // An attacker names the same made-up kid 20 times a second for 30 s; every
        // fetch brings the same keys.
        let before = h.director.started();
        let t0 = background::now();
        let mut requests = Vec::new();
        while background::now() - t0 < Duration::from_secs(30) {
            requests.push(named(&h, "junk"));
            tokio::time::sleep(Duration::from_millis(50)).await;
            while h.director.started() > answered {
                answered += 1;
                h.succeed("k1");
            }
        }
        // Repeated-kid fetches at 0, 1, 3, 7 and 15 s (the next at 31 s), and the
        // ordinary pacing's own: its 4 s cooldown doubling to 8 and 16 s.
        let fetched = h.director.started() - before;
        assert!((5..=8).contains(&fetched), "{fetched} fetches in 30 s");
        for request in requests {
            request.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_brings_the_cooldown_back_to_its_start() {
        let h = loaded(PACING).await;
        let mut answered = 1;
        for _ in 0..5 {
            h.made_up_kid(&mut answered).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        // 4 s of cooldown had been left; after 30 s with no unknown kid it is 250 ms again.
        assert_eq!(h.made_up_kid(&mut answered).await, Duration::from_millis(10));
        assert_eq!(h.made_up_kid(&mut answered).await.as_millis() / 10 * 10, 250);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_waits_for_a_fetch_that_starts_after_its_claim() {
        let h = loaded(PACING).await;

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
        let h = loaded(PACING).await;
        let started = background::now();
        h.state.refresh_for_unknown_kid(None).await; // the fetch never ends
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
        let h = loaded(PACING).await;
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

        let h = loaded(PACING).await;
        drop(h.state);
        settle().await;
        assert!(h.director.dropped(), "the task ended between fetches too");
    }
}
