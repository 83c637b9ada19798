//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with the `metrics`
//! feature; without it every function here is an empty inline one.
//!
//! The names and labels are a public contract, listed in `docs/metrics.md`. Labels are
//! low-cardinality by construction: fixed words chosen here, never a token, a subject, a
//! `kid`, an issuer or a URL.

use std::time::Duration;

/// What started a fetch of a key set.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// The store's first fetch, at build time.
    Start,
    /// The refresh schedule, or a retry after a failure.
    Schedule,
    /// A token whose `kid` the set lacked (or a request before any set was loaded).
    UnknownKid,
    /// [`KeyStore::refresh`](crate::KeyStore::refresh).
    Manual,
}

/// The metric names, as `docs/metrics.md` lists them.
#[cfg_attr(not(all(feature = "metrics", feature = "redis")), allow(dead_code))]
pub(crate) mod names {
    pub(crate) const VALIDATIONS: &str = "tower_oauth_validations_total";
    pub(crate) const VALIDATION_DURATION: &str = "tower_oauth_validation_duration_seconds";
    pub(crate) const CACHE_HITS: &str = "tower_oauth_verified_token_cache_hits_total";
    pub(crate) const JWKS_FETCHES: &str = "tower_oauth_jwks_fetches_total";
    pub(crate) const METADATA_FETCHES: &str = "tower_oauth_metadata_fetches_total";
    pub(crate) const UNKNOWN_KID_REFUSED: &str = "tower_oauth_unknown_kid_refetches_refused_total";
    pub(crate) const KEY_WAIT: &str = "tower_oauth_key_wait_seconds";
    pub(crate) const TOKEN_REQUESTS: &str = "tower_oauth_token_requests_total";
    pub(crate) const TOKEN_REFRESHES_AHEAD: &str = "tower_oauth_token_refreshes_ahead_total";
    pub(crate) const TOKEN_WAIT: &str = "tower_oauth_token_wait_seconds";
    pub(crate) const INTROSPECTIONS: &str = "tower_oauth_introspections_total";
    pub(crate) const USERINFO_REQUESTS: &str = "tower_oauth_userinfo_requests_total";
    pub(crate) const STORE_LEASES: &str = "tower_oauth_store_leases_total";
    pub(crate) const REDIS_FAILURES: &str = "tower_oauth_redis_failures_total";
    pub(crate) const DPOP_PROOFS: &str = "tower_oauth_dpop_proofs_total";
    pub(crate) const STEP_UPS: &str = "tower_oauth_step_up_checks_total";
}

#[cfg(feature = "metrics")]
use names::*;

/// Without the feature, the arguments are unused.
macro_rules! unused {
    ($($arg:expr),*) => {
        #[cfg(not(feature = "metrics"))]
        let _ = ($($arg),*);
    };
}

/// How a validation ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Accepted,
    /// The token's fault (401).
    Rejected,
    /// The server's side (503).
    Unavailable,
}

/// Why a validation did not accept the token, in a few classes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reason {
    None,
    Malformed,
    Header,
    UnknownKey,
    Signature,
    Issuer,
    Audience,
    Claims,
    Time,
    Encryption,
    KeysUnavailable,
    IssuerLimit,
    Introspection,
    SenderConstrained,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const OUTCOMES: [&str; 3] = ["accepted", "rejected", "unavailable"];
/// The label of each [`Reason`], in its order.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const REASONS: [&str; 14] = [
    "none",
    "malformed",
    "header",
    "unknown_key",
    "signature",
    "issuer",
    "audience",
    "claims",
    "time",
    "encryption",
    "keys_unavailable",
    "issuer_limit",
    "introspection",
    "sender_constrained",
];

/// The handles of the per-request metrics, registered with the recorder at their first
/// use (one per outcome and reason): the request path then costs an atomic add, not a
/// registry lookup. A recorder must therefore be installed before the first request.
#[cfg(feature = "metrics")]
mod handles {
    use std::sync::OnceLock;

    use metrics::{Counter, Histogram};

    use super::{OUTCOMES, REASONS, names};

    pub(super) struct Validation {
        pub(super) count: Counter,
        pub(super) duration: Histogram,
    }

    static VALIDATIONS: [OnceLock<Validation>; OUTCOMES.len() * REASONS.len()] =
        [const { OnceLock::new() }; OUTCOMES.len() * REASONS.len()];
    static CACHE_HITS: OnceLock<Counter> = OnceLock::new();

    pub(super) fn validation(outcome: usize, reason: usize) -> &'static Validation {
        VALIDATIONS[outcome * REASONS.len() + reason].get_or_init(|| {
            let (outcome, reason) = (OUTCOMES[outcome], REASONS[reason]);
            Validation {
                count: metrics::counter!(names::VALIDATIONS, "outcome" => outcome, "reason" => reason),
                duration: metrics::histogram!(names::VALIDATION_DURATION, "outcome" => outcome),
            }
        })
    }

    pub(super) fn cache_hits() -> &'static Counter {
        CACHE_HITS.get_or_init(|| metrics::counter!(names::CACHE_HITS))
    }
}

/// A validation that ended (accepted, rejected or unavailable), after `took` when it
/// was timed.
#[inline]
pub(crate) fn validation(outcome: Outcome, reason: Reason, took: Option<Duration>) {
    unused!(outcome, reason, took);
    #[cfg(feature = "metrics")]
    {
        let handles = handles::validation(outcome as usize, reason as usize);
        handles.count.increment(1);
        if let Some(took) = took {
            handles.duration.record(took.as_secs_f64());
        }
    }
}

/// A request served from the verified-token cache.
#[inline]
pub(crate) fn cache_hit() {
    #[cfg(feature = "metrics")]
    handles::cache_hits().increment(1);
}

/// A fetch of a key set ended: `ok`, `not_modified` or `error`.
#[inline]
pub(crate) fn jwks_fetch(result: &'static str, trigger: Trigger) {
    unused!(result, trigger);
    #[cfg(feature = "metrics")]
    {
        let trigger = match trigger {
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
            Trigger::UnknownKid => "unknown_kid",
            Trigger::Manual => "manual",
        };
        metrics::counter!(JWKS_FETCHES, "result" => result, "trigger" => trigger).increment(1);
    }
}

/// One more of the counter `name`, labelled with `result`.
#[inline]
fn count_result(name: &'static str, result: &'static str) {
    unused!(name, result);
    #[cfg(feature = "metrics")]
    metrics::counter!(name, "result" => result).increment(1);
}

/// A fetch of a metadata document ended: `ok` or `error`.
#[inline]
pub(crate) fn metadata_fetch(result: &'static str) {
    count_result(names::METADATA_FETCHES, result);
}

/// A request with an unknown `kid` got no fetch: the cooldown ran beyond its wait.
#[inline]
pub(crate) fn unknown_kid_refused() {
    #[cfg(feature = "metrics")]
    metrics::counter!(UNKNOWN_KID_REFUSED).increment(1);
}

/// A request waited `took` for keys (an on-demand or first fetch).
#[inline]
pub(crate) fn key_wait(took: Option<Duration>) {
    unused!(took);
    #[cfg(feature = "metrics")]
    if let Some(took) = took {
        metrics::histogram!(KEY_WAIT).record(took.as_secs_f64());
    }
}

/// A token request ended: the grant, and `ok` or an error class.
#[inline]
pub(crate) fn token_request(grant: &'static str, result: &'static str) {
    unused!(grant, result);
    #[cfg(feature = "metrics")]
    metrics::counter!(TOKEN_REQUESTS, "grant" => grant, "result" => result).increment(1);
}

/// The token cache started a refresh ahead of expiry.
#[inline]
pub(crate) fn token_refresh_ahead() {
    #[cfg(feature = "metrics")]
    metrics::counter!(TOKEN_REFRESHES_AHEAD).increment(1);
}

/// A caller with no usable token waited `took`.
#[inline]
pub(crate) fn token_wait(took: Option<Duration>) {
    unused!(took);
    #[cfg(feature = "metrics")]
    if let Some(took) = took {
        metrics::histogram!(TOKEN_WAIT).record(took.as_secs_f64());
    }
}

/// An introspection request ended: `active`, `inactive` or `error`.
#[inline]
pub(crate) fn introspection(result: &'static str) {
    count_result(names::INTROSPECTIONS, result);
}

/// A userinfo request ended: `ok` or `error`.
#[inline]
pub(crate) fn userinfo(result: &'static str) {
    count_result(names::USERINFO_REQUESTS, result);
}

/// A shared-store lease: `acquired`, `held_elsewhere` or `error`.
#[inline]
pub(crate) fn store_lease(result: &'static str) {
    count_result(names::STORE_LEASES, result);
}

/// A DPoP proof was judged: `accepted`, `invalid`, `use_nonce`, `replayed` or
/// `unavailable` (the replay cache could not answer).
#[inline]
pub(crate) fn dpop_proof(result: &'static str) {
    count_result(names::DPOP_PROOFS, result);
}

/// A step-up requirement was checked: `met`, `acr` or `max_age` (what fell short).
#[inline]
pub(crate) fn step_up(result: &'static str) {
    count_result(names::STEP_UPS, result);
}

/// A Redis command of the shared store failed.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[inline]
pub(crate) fn redis_failure() {
    #[cfg(feature = "metrics")]
    metrics::counter!(REDIS_FAILURES).increment(1);
}

/// A start time, taken only when metrics are compiled in (and, for a [sampled](Self::sampled)
/// timer, only for one call in [`SAMPLE`]).
#[derive(Clone, Copy)]
pub(crate) struct Timer(#[cfg(feature = "metrics")] Option<std::time::Instant>);

/// One synchronous validation in this many, per thread, is timed: two clock reads would
/// be several percent of an HS256 validation, and a histogram needs a sample, not all.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const SAMPLE: u32 = 16;

impl Timer {
    /// A timer that always takes the time (with the `metrics` feature).
    #[inline]
    pub(crate) fn start() -> Timer {
        Timer(
            #[cfg(feature = "metrics")]
            Some(std::time::Instant::now()),
        )
    }

    /// A timer that takes the time for one call in [`SAMPLE`] on this thread.
    #[inline]
    pub(crate) fn sampled() -> Timer {
        #[cfg(feature = "metrics")]
        {
            thread_local!(static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
            let call = CALLS.with(|calls| {
                let call = calls.get().wrapping_add(1);
                calls.set(call);
                call
            });
            Timer(call.is_multiple_of(SAMPLE).then(std::time::Instant::now))
        }
        #[cfg(not(feature = "metrics"))]
        Timer()
    }

    /// The time since the timer started, when it took the time.
    #[inline]
    pub(crate) fn elapsed(self) -> Option<Duration> {
        #[cfg(feature = "metrics")]
        return self.0.map(|start| start.elapsed());
        #[cfg(not(feature = "metrics"))]
        None
    }
}
