//! The background task behind a [`TokenCache`](super::TokenCache): the only caller of
//! the token source.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::AccessToken;
use super::cache::Shared;
use super::source::TokenSource;

/// When to refresh, and how to back off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) refresh_at: f64,
    pub(super) margin: Duration,
    pub(super) not_before: f64,
    pub(super) default_lifetime: Duration,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            refresh_at: 0.8,
            margin: Duration::from_secs(60),
            not_before: 0.5,
            default_lifetime: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// `Retry-After` is honoured up to this (or the backoff maximum, if larger): a server
/// cannot park the cache for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The shortest time between two scheduled fetches, so a server that issues tokens of
/// no lifetime cannot make the task spin.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Policy {
    /// How long after it was obtained a token of `lifetime` is refreshed:
    /// `refresh_at` of the lifetime, but no later than `margin` before expiry, and never
    /// before `not_before` of the lifetime.
    pub(super) fn refresh_after(&self, lifetime: Duration) -> Duration {
        let preferred = lifetime.mul_f64(self.refresh_at).min(lifetime.saturating_sub(self.margin));
        preferred.max(lifetime.mul_f64(self.not_before))
    }

    /// The delay after `failures` failures in a row: `backoff_initial` doubling up to
    /// `backoff_max`, with ±20 % jitter so a fleet does not retry in step; never sooner
    /// than the server's `Retry-After` (bounded).
    pub(super) fn after_failure(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let cap = MAX_RETRY_AFTER.max(self.backoff_max);
        crate::idp::fetch::backoff(failures, self.backoff_initial, self.backoff_max, retry_after, cap)
    }
}

pub(super) struct Refresher {
    pub(super) source: Box<dyn TokenSource>,
    pub(super) policy: Policy,
}

impl Refresher {
    pub(super) async fn run(mut self, shared: Weak<Shared>, wake: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
        let mut generation = 0_u64;
        let mut failures = 0_u32;
        // The next scheduled fetch: ahead of expiry, or a retry after a failure. None
        // until the first token is needed.
        let mut next: Option<Instant> = None;
        loop {
            let scheduled = async move {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => return,
                () = wake.notified() => {}
                () = scheduled => {}
            }
            let now = Instant::now();
            let due = next.is_some_and(|at| now >= at);
            {
                let Some(shared) = shared.upgrade() else { return };
                if !shared.take_demand(now) && !due {
                    continue;
                }
                shared.begin_fetch();
            }
            // No strong handle during the fetch: dropping the last handle stops the task
            // even mid-fetch.
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = &mut stop => return,
                outcome = self.source.fetch() => outcome,
            };
            let Some(shared) = shared.upgrade() else { return };
            let token = outcome.and_then(|response| {
                // A token from a shared store was issued earlier, maybe by another
                // process: its lifetime and refresh point count from then.
                let obtained = started.checked_sub(response.issued_ago()).unwrap_or(started);
                let (token, expires_in, _, scope) = response.into_parts();
                let lifetime = expires_in.unwrap_or(self.policy.default_lifetime);
                AccessToken::new(&token, obtained, lifetime, scope, generation + 1)
                    .ok_or(super::TokenError::InvalidResponse(super::error::InvalidResponse::MalformedAccessToken))
            });
            match token {
                Ok(token) => {
                    generation += 1;
                    failures = 0;
                    let refresh_in = self.policy.refresh_after(token.lifetime());
                    next = Some((token.obtained_at() + refresh_in).max(Instant::now() + MIN_INTERVAL));
                    tracing::debug!(
                        generation,
                        lifetime_s = token.lifetime().as_secs(),
                        refresh_in_s = refresh_in.as_secs(),
                        "access token obtained"
                    );
                    shared.succeeded(token);
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.policy.after_failure(failures, error.retry_after());
                    let retry_at = Instant::now() + delay;
                    next = Some(retry_at);
                    tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, "token fetch failed; the current token serves until it expires");
                    shared.failed(error, retry_at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_80_percent_but_60_s_before_expiry_and_never_before_half() {
        let p = Policy::default();
        let s = Duration::from_secs;
        assert_eq!(p.refresh_after(s(300)), s(240));
        assert_eq!(p.refresh_after(s(3600)), s(2880));
        assert_eq!(p.refresh_after(s(200)), s(140)); // 60 s before expiry beats 80 %
        assert_eq!(p.refresh_after(s(60)), s(30)); // half the lifetime at the earliest
        assert_eq!(p.refresh_after(s(4)), s(2));
        assert_eq!(p.refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn failures_back_off_with_jitter_and_honour_retry_after_within_bounds() {
        let p = Policy::default();
        for failures in 1..40 {
            let d = p.after_failure(failures, None);
            let base = Duration::from_secs(1u64 << (failures - 1).min(20)).min(p.backoff_max);
            assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{failures}: {d:?}");
        }
        assert!(p.after_failure(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(p.after_failure(1, Some(Duration::from_secs(86_400))) <= MAX_RETRY_AFTER);
    }
}
