//! When a remote key store fetches again: the rules alone, free of any state.

use std::time::Duration;

use crate::idp::fetch;

/// When to fetch again after a fetch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    pub(super) interval: Duration,
    pub(super) min: Duration,
    pub(super) max: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: Duration::from_secs(300),
            min: Duration::from_secs(60),
            max: Duration::from_secs(24 * 3600),
        }
    }
}

impl Schedule {
    /// After a success: the server's `max-age` within bounds, else the interval.
    pub(super) fn after_success(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.interval, |age| age.clamp(self.min, self.max))
    }

    /// After `failures` failures in a row: 1 s doubling up to the interval, with ±20 %
    /// jitter so a fleet does not retry in step; never sooner than `Retry-After`.
    pub(super) fn after_failure(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        fetch::backoff(failures, Duration::from_secs(1), self.interval, retry_after, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_honoured_within_bounds() {
        let s = Schedule::default();
        assert_eq!(s.after_success(None), Duration::from_secs(300));
        assert_eq!(s.after_success(Some(Duration::from_secs(5))), Duration::from_secs(60));
        assert_eq!(s.after_success(Some(Duration::from_secs(900))), Duration::from_secs(900));
        assert_eq!(s.after_success(Some(Duration::from_secs(u64::MAX / 4))), Duration::from_secs(86400));
    }

    #[test]
    fn failures_back_off_with_jitter_up_to_the_interval_and_respect_retry_after() {
        let s = Schedule::default();
        for failures in 1..40 {
            let d = s.after_failure(failures, None);
            let base = Duration::from_secs(1u64 << (failures - 1).min(16)).min(s.interval);
            assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{failures}: {d:?}");
        }
        assert!(s.after_failure(1, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
    }
}
