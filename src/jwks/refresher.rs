//! The background task behind a remote [`KeyStore`](super::KeyStore).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use url::Url;

use super::store::{Handle, Shared};
use crate::KeySet;
use crate::error::FetchError;
use crate::idp::discovery;
use crate::idp::fetch::{self, Limits};

pub(super) enum Source {
    Issuer(String),
    JwksUri(Url),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Issuer(issuer) => f.debug_tuple("Issuer").field(issuer).finish(),
            Source::JwksUri(uri) => f.debug_tuple("JwksUri").field(&uri.as_str()).finish(),
        }
    }
}

/// When to fetch again.
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
    fn after_success(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.interval, |age| age.clamp(self.min, self.max))
    }

    /// After `failures` failures in a row: 1 s doubling up to the interval, with ±20 %
    /// jitter so a fleet does not retry in step; never sooner than `Retry-After`.
    fn after_failure(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        fetch::backoff(failures, Duration::from_secs(1), self.interval, retry_after, self.max)
    }
}

pub(super) struct Refresher {
    pub(super) client: reqwest::Client,
    pub(super) source: Source,
    pub(super) limits: Limits,
    pub(super) schedule: Schedule,
}

impl Refresher {
    pub(super) async fn run(self, shared: Weak<Shared>, wake: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
        let mut jwks_uri = match &self.source {
            Source::JwksUri(uri) => Some(uri.clone()),
            Source::Issuer(_) => None,
        };
        let mut failures = 0u32;
        let mut delay = Duration::ZERO;
        let mut first = true;
        loop {
            // The first fetch starts at once; a wake-up that arrives meanwhile stays
            // pending as a permit and triggers the next one.
            if !first {
                tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
            let Some(handle) = Handle::upgrade(&shared) else { return };
            handle.begin(std::mem::take(&mut first));
            let outcome = tokio::time::timeout(self.limits.timeout, self.fetch(&mut jwks_uri)).await;
            let outcome = outcome.unwrap_or(Err(FetchError::Timeout));
            match outcome {
                Ok((keys, max_age)) => {
                    tracing::debug!(keys = keys.len(), "key set refreshed");
                    failures = 0;
                    delay = self.schedule.after_success(max_age);
                    handle.finish(Ok(keys));
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    delay = self.schedule.after_failure(failures, error.retry_after());
                    tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, "key set refresh failed; keeping the last good keys");
                    // A discovered URI that fails may have moved: discover again next time.
                    if matches!(self.source, Source::Issuer(_)) {
                        jwks_uri = None;
                    }
                    handle.finish(Err(error));
                }
            }
        }
    }

    async fn fetch(&self, jwks_uri: &mut Option<Url>) -> Result<(KeySet, Option<Duration>), FetchError> {
        let uri = match (&*jwks_uri, &self.source) {
            (Some(uri), _) => uri.clone(),
            (None, Source::Issuer(issuer)) => {
                let metadata = discovery::discover(&self.client, issuer, self.limits).await?;
                let uri = fetch::parse_url(metadata.jwks_uri.as_deref().ok_or(FetchError::MissingJwksUri)?)?;
                jwks_uri.insert(uri).clone()
            }
            (None, Source::JwksUri(uri)) => uri.clone(),
        };
        let fetched = fetch::get(&self.client, &uri, self.limits).await?;
        let keys = KeySet::from_jwks(&fetched.body).map_err(|_| FetchError::InvalidDocument("not a JWK Set"))?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok((keys, fetched.max_age))
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
