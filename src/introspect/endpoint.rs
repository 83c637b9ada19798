//! Where an endpoint is: a configured URL, or a member of an issuer's metadata found at
//! the first use. What introspection and userinfo share.
//!
//! Discovery runs once at a time: callers that arrive while it runs wait for it. After
//! a failure it is not tried again until a backoff has elapsed (1 s doubling up to
//! 1 min, jittered, never sooner than the server's `Retry-After`); meanwhile every
//! caller is refused at once with the time left. Without this, an outage of the
//! metadata endpoint would turn every incoming request into a fetch toward the issuer.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use url::Url;

use crate::error::BuildError;
use crate::idp::discovery::{self, ProviderMetadata};
use crate::idp::fetch::{self, Checked, Limits, Target};

/// The first wait after a failed discovery; it doubles with each failure in a row.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between two discoveries.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The longest `Retry-After` from the metadata endpoint that is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl Location {
    /// The endpoint a builder was given, checked, for `member`.
    pub(crate) fn from_target(target: Target, member: Member) -> Result<Location, BuildError> {
        Ok(match target.check()? {
            Checked::Url(url) => Location::Url(url),
            Checked::Issuer(issuer) => Location::issuer(issuer, member),
        })
    }
}

/// A configured endpoint, or one to discover.
pub(crate) enum Location {
    Url(Url),
    Issuer(Discovered),
}

/// The metadata member that names the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// `introspection_endpoint` (RFC 8414 §2).
    Introspection,
    /// `userinfo_endpoint` (OpenID Connect Discovery 1.0 §3).
    Userinfo,
}

impl Member {
    fn name(self) -> &'static str {
        match self {
            Member::Introspection => "introspection_endpoint",
            Member::Userinfo => "userinfo_endpoint",
        }
    }

    fn take(self, metadata: ProviderMetadata) -> Option<String> {
        match self {
            Member::Introspection => metadata.introspection_endpoint,
            Member::Userinfo => metadata.userinfo_endpoint,
        }
    }

    fn missing(self) -> &'static str {
        match self {
            Member::Introspection => "no introspection_endpoint in the issuer's metadata",
            Member::Userinfo => "no userinfo_endpoint in the issuer's metadata",
        }
    }

    fn insecure(self) -> &'static str {
        match self {
            Member::Introspection => "discovered introspection_endpoint is insecure or invalid",
            Member::Userinfo => "discovered userinfo_endpoint is insecure or invalid",
        }
    }
}

/// Why no endpoint is known, and how long until discovery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable {
    pub(crate) reason: &'static str,
    /// What is left of the backoff: the wait a client should be told.
    pub(crate) retry_after: Duration,
}

/// An endpoint found in `issuer`'s metadata, once.
pub(crate) struct Discovered {
    issuer: String,
    member: Member,
    url: OnceLock<Url>,
    /// Held by the one discovery in flight.
    flight: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
}

/// The failures in a row, and the refusal that stands until `until`.
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    reason: &'static str,
}

impl Location {
    pub(crate) fn issuer(issuer: String, member: Member) -> Location {
        Location::Issuer(Discovered {
            issuer,
            member,
            url: OnceLock::new(),
            flight: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff { failures: 0, until: None, reason: "" }),
        })
    }

    /// The configured URL or issuer, for `Debug`.
    pub(crate) fn target(&self) -> &str {
        match self {
            Location::Url(url) => url.as_str(),
            Location::Issuer(discovered) => &discovered.issuer,
        }
    }

    /// The endpoint: the configured one, the one discovered before, or the one this
    /// call discovers (or waits for another call to discover).
    ///
    /// Metadata is fetched with `client` within `timeout`, and the usual cap on
    /// metadata bodies.
    pub(crate) async fn endpoint(&self, client: &reqwest::Client, timeout: Duration) -> Result<&Url, Unavailable> {
        match self {
            Location::Url(url) => Ok(url),
            Location::Issuer(discovered) => discovered.endpoint(client, timeout).await,
        }
    }
}

impl Discovered {
    async fn endpoint(&self, client: &reqwest::Client, timeout: Duration) -> Result<&Url, Unavailable> {
        if let Some(url) = self.url.get() {
            return Ok(url);
        }
        self.refused(Instant::now())?;
        let _flight = self.flight.lock().await;
        // The flight we waited for may have settled it either way.
        if let Some(url) = self.url.get() {
            return Ok(url);
        }
        self.refused(Instant::now())?;
        match self.discover(client, timeout).await {
            // Once the URL is set, the backoff is never read again.
            Ok(url) => Ok(self.url.get_or_init(|| url)),
            Err((reason, retry_after)) => {
                let mut backoff = self.lock();
                backoff.failures = backoff.failures.saturating_add(1);
                let wait = fetch::backoff(backoff.failures, BACKOFF_INITIAL, BACKOFF_MAX, retry_after, MAX_RETRY_AFTER);
                backoff.until = Some(Instant::now() + wait);
                backoff.reason = reason;
                tracing::warn!(
                    issuer = %self.issuer,
                    endpoint = self.member.name(),
                    failures = backoff.failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "{reason}; discovery is not tried again before the backoff elapses"
                );
                Err(Unavailable { reason, retry_after: wait })
            }
        }
    }

    /// The refusal that stands at `now`, if any.
    fn refused(&self, now: Instant) -> Result<(), Unavailable> {
        let backoff = self.lock();
        match backoff.until {
            Some(until) if now < until => Err(Unavailable { reason: backoff.reason, retry_after: until - now }),
            _ => Ok(()),
        }
    }

    /// One discovery: the metadata, its member, and the URL checked. On failure, why
    /// and the metadata endpoint's `Retry-After`.
    async fn discover(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Url, (&'static str, Option<Duration>)> {
        let (issuer, member) = (&self.issuer, self.member);
        let limits = Limits { timeout, max_body: fetch::DEFAULT_MAX_BODY };
        let metadata = discovery::discover(client, issuer, limits).await.map_err(|error| {
            tracing::warn!(%error, %issuer, endpoint = member.name(), "endpoint discovery failed");
            ("discovery failed", error.retry_after())
        })?;
        let endpoint = member.take(metadata).ok_or_else(|| {
            tracing::error!(%issuer, endpoint = member.name(), "the issuer's metadata lacks the endpoint");
            (member.missing(), None)
        })?;
        fetch::parse_url(&endpoint).map_err(|_| {
            tracing::error!(%issuer, endpoint = member.name(), "the discovered endpoint is not an https url");
            (member.insecure(), None)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_stands_until_its_time_and_names_the_time_left() {
        let location = Location::issuer("https://idp.example".to_owned(), Member::Userinfo);
        let Location::Issuer(discovered) = &location else { unreachable!() };
        let now = Instant::now();
        assert_eq!(discovered.refused(now), Ok(()));
        *discovered.lock() = Backoff { failures: 1, until: Some(now + Duration::from_secs(2)), reason: "why" };
        let refused = discovered.refused(now + Duration::from_millis(500)).unwrap_err();
        assert_eq!(refused, Unavailable { reason: "why", retry_after: Duration::from_millis(1500) });
        assert_eq!(discovered.refused(now + Duration::from_secs(2)), Ok(()));
        assert_eq!(location.target(), "https://idp.example");
    }
}
