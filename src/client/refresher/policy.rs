//! When a token cache refreshes, and how it backs off: the rules alone, free of any
//! state, shared with the [`SharedStore`](crate::client::store::SharedStore), which
//! decides by them whether the fleet's token is due.

use std::time::Duration;

/// When to refresh, and how to back off.
#[derive(Debug, Clone, Copy)]
pub(in crate::client) struct RefreshPolicy {
    pub(in crate::client) refresh_at: f64,
    pub(in crate::client) margin: Duration,
    pub(in crate::client) not_before: f64,
    pub(in crate::client) default_lifetime: Duration,
    pub(in crate::client) backoff_initial: Duration,
    pub(in crate::client) backoff_max: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
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
pub(in crate::client) const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl RefreshPolicy {
    /// How long after it was obtained a token of `lifetime` is refreshed:
    /// `refresh_at` of the lifetime, but no later than `margin` before expiry, and never
    /// before `not_before` of the lifetime.
    pub(in crate::client) fn refresh_after(&self, lifetime: Duration) -> Duration {
        let preferred = lifetime.mul_f64(self.refresh_at).min(lifetime.saturating_sub(self.margin));
        preferred.max(lifetime.mul_f64(self.not_before))
    }

    /// The delay after `failures` failures in a row: `backoff_initial` doubling up to
    /// `backoff_max`, with ±20 % jitter so a fleet does not retry in step; never sooner
    /// than the server's `Retry-After` (bounded).
    pub(in crate::client) fn after_failure(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let cap = MAX_RETRY_AFTER.max(self.backoff_max);
        crate::idp::fetch::backoff(failures, self.backoff_initial, self.backoff_max, retry_after, cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_80_percent_but_60_s_before_expiry_and_never_before_half() {
        let p = RefreshPolicy::default();
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
        let p = RefreshPolicy::default();
        for failures in 1..40 {
            let d = p.after_failure(failures, None);
            let base = Duration::from_secs(1u64 << (failures - 1).min(20)).min(p.backoff_max);
            assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{failures}: {d:?}");
        }
        assert!(p.after_failure(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(p.after_failure(1, Some(Duration::from_secs(86_400))) <= MAX_RETRY_AFTER);
    }
}
