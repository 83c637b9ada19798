//! Where an endpoint of the authorization server is: a configured URL, or a member of
//! the issuer's metadata (`token_endpoint`, `introspection_endpoint`,
//! `userinfo_endpoint`, `jwks_uri`) found at its first use. The token endpoint,
//! introspection, userinfo and the key store all find their endpoint here.
//!
//! # The rule for looking it up, and again
//!
//! - A configured URL is used as it is, and never looked up.
//! - A member of the metadata is looked up at the first use, by one caller at a time:
//!   callers that arrive while a lookup runs wait for it and share its outcome.
//! - After a failed lookup (the metadata cannot be had, lacks the member, or names an
//!   insecure URL), no lookup is tried again until a backoff has elapsed: 1 s doubling
//!   with each failure in a row up to 1 min, ±20 % jitter, and never sooner than the
//!   metadata endpoint's `Retry-After` (honoured up to 5 min). Meanwhile every caller is
//!   refused at once with the reason, the cause and the time left. Without this, an
//!   outage of the metadata endpoint would turn every incoming request into a fetch
//!   toward the issuer.
//! - A URL that was found is kept until its user [reports](IdpEndpoint::failed) that it
//!   failed: the exchange with it failed at the transport level, or got an answer the
//!   protocol does not explain (the endpoint may have moved). The next use then looks
//!   it up again, under the same rule (one lookup at a time, backoff if it fails).
//! - A successful lookup ends the backoff and resets the count of failures.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use url::Url;

use crate::error::{BuildError, FetchError};
use crate::idp::discovery::{self, ProviderMetadata};
use crate::idp::fetch::{self, Checked, Limits, Remembered, Target};

/// The first wait after a failed lookup; it doubles with each failure in a row.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between two lookups.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The longest `Retry-After` from the metadata endpoint that is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The metadata member that names an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataMember {
    /// `token_endpoint` (RFC 8414 §2).
    Token,
    /// `introspection_endpoint` (RFC 8414 §2).
    Introspection,
    /// `userinfo_endpoint` (OpenID Connect Discovery 1.0 §3).
    Userinfo,
    /// `jwks_uri` (RFC 8414 §2).
    Jwks,
    /// `mtls_endpoint_aliases.token_endpoint` (RFC 8705 §5), else `token_endpoint`: for
    /// a client that presents a TLS certificate.
    MtlsToken,
    /// `mtls_endpoint_aliases.introspection_endpoint`, else `introspection_endpoint`.
    MtlsIntrospection,
}

impl MetadataMember {
    /// The member's name in the metadata document.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MetadataMember::Token | MetadataMember::MtlsToken => "token_endpoint",
            MetadataMember::Introspection | MetadataMember::MtlsIntrospection => "introspection_endpoint",
            MetadataMember::Userinfo => "userinfo_endpoint",
            MetadataMember::Jwks => "jwks_uri",
        }
    }

    fn take(self, metadata: ProviderMetadata) -> Option<String> {
        match self {
            MetadataMember::Token => metadata.token_endpoint,
            MetadataMember::Introspection => metadata.introspection_endpoint,
            MetadataMember::Userinfo => metadata.userinfo_endpoint,
            MetadataMember::Jwks => metadata.jwks_uri,
            MetadataMember::MtlsToken => {
                metadata.mtls_endpoint_aliases.and_then(|aliases| aliases.token_endpoint).or(metadata.token_endpoint)
            }
            MetadataMember::MtlsIntrospection => metadata
                .mtls_endpoint_aliases
                .and_then(|aliases| aliases.introspection_endpoint)
                .or(metadata.introspection_endpoint),
        }
    }

    /// The cause when the metadata lacks the member.
    fn missing(self) -> FetchError {
        match self {
            MetadataMember::Token | MetadataMember::MtlsToken => {
                FetchError::InvalidDocument("metadata has no token_endpoint")
            }
            MetadataMember::Introspection | MetadataMember::MtlsIntrospection => {
                FetchError::InvalidDocument("metadata has no introspection_endpoint")
            }
            MetadataMember::Userinfo => FetchError::InvalidDocument("metadata has no userinfo_endpoint"),
            MetadataMember::Jwks => FetchError::MissingJwksUri,
        }
    }

    /// The reason, in a few words, when the metadata lacks the member.
    fn missing_reason(self) -> &'static str {
        match self {
            MetadataMember::Token | MetadataMember::MtlsToken => "no token_endpoint in the issuer's metadata",
            MetadataMember::Introspection | MetadataMember::MtlsIntrospection => {
                "no introspection_endpoint in the issuer's metadata"
            }
            MetadataMember::Userinfo => "no userinfo_endpoint in the issuer's metadata",
            MetadataMember::Jwks => "no jwks_uri in the issuer's metadata",
        }
    }

    /// The reason, in a few words, when the member is not an https (or loopback) URL.
    fn insecure_reason(self) -> &'static str {
        match self {
            MetadataMember::Token | MetadataMember::MtlsToken => "discovered token_endpoint is insecure or invalid",
            MetadataMember::Introspection | MetadataMember::MtlsIntrospection => {
                "discovered introspection_endpoint is insecure or invalid"
            }
            MetadataMember::Userinfo => "discovered userinfo_endpoint is insecure or invalid",
            MetadataMember::Jwks => "discovered jwks_uri is insecure or invalid",
        }
    }
}

/// Why no endpoint can be had now, and how long until a lookup is tried again.
#[derive(Debug, Clone)]
pub(crate) struct LookupFailed {
    /// What went wrong, in a few words.
    pub(crate) reason: &'static str,
    /// The cause: the failed fetch of the metadata, a missing member
    /// ([`FetchError::InvalidDocument`] or [`FetchError::MissingJwksUri`]), or an insecure
    /// or invalid URL ([`FetchError::InsecureUrl`], [`FetchError::InvalidUrl`]).
    pub(crate) error: FetchError,
    /// What is left of the backoff: the wait a client should be told.
    pub(crate) retry_after: Duration,
}

/// An endpoint of the authorization server: configured, or found in the issuer's
/// metadata under the [rule](self) of this module.
#[derive(Debug)]
pub(crate) struct IdpEndpoint(EndpointKind);

#[derive(Debug)]
enum EndpointKind {
    Configured(Arc<Url>),
    Discovered(Box<MetadataLookup>),
}

/// An endpoint found in `issuer`'s metadata.
struct MetadataLookup {
    issuer: String,
    member: MetadataMember,
    /// The URL found, until a user reports that it failed.
    found: ArcSwapOption<Url>,
    /// Held by the one lookup in flight, with the metadata it read last (so the next
    /// lookup asks whether it changed).
    flight: tokio::sync::Mutex<Remembered<ProviderMetadata>>,
    backoff: Mutex<LookupBackoff>,
}

/// Why a lookup failed: the reason, the cause, and whether the URL found was bad.
#[derive(Clone)]
struct LookupFailure(&'static str, FetchError);

/// The failures in a row, and the refusal that stands until `until`.
#[derive(Default)]
struct LookupBackoff {
    failures: u32,
    refusal: Option<(Instant, LookupFailure)>,
}

impl std::fmt::Debug for MetadataLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataLookup")
            .field("issuer", &self.issuer)
            .field("member", &self.member)
            .field("found", &self.found.load().as_deref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// Whether an exchange failed in a way that says the endpoint itself failed, so that a
/// discovered one should be looked up again: a transport failure (connection, TLS,
/// DNS, a redirect to an insecure URL) or a timeout.
pub(crate) fn transport_failed(error: &FetchError) -> bool {
    matches!(error, FetchError::Request(_) | FetchError::Timeout | FetchError::InsecureUrl)
}

/// Whether `status` is one no endpoint of the protocol answers with, so that the URL
/// may be wrong: a redirect, 404, 405, 410, … — not a success, nor the server's
/// considered refusal (400, 401, 403), nor its overload (429, 5xx).
pub(crate) fn unexpected_status(status: http::StatusCode) -> bool {
    !(status.is_success() || status.is_server_error() || matches!(status.as_u16(), 400 | 401 | 403 | 429))
}

impl IdpEndpoint {
    /// The endpoint a builder was given, checked: its URL, or `member` of the issuer's
    /// metadata.
    pub(crate) fn new(target: Target, member: MetadataMember) -> Result<IdpEndpoint, BuildError> {
        Ok(match target.check()? {
            Checked::Url(url) => IdpEndpoint::configured(url),
            Checked::Issuer(issuer) => IdpEndpoint::discovered(issuer, member),
        })
    }

    /// An endpoint at a configured (and checked) URL.
    pub(crate) fn configured(url: Url) -> IdpEndpoint {
        IdpEndpoint(EndpointKind::Configured(Arc::new(url)))
    }

    /// `member` of `issuer`'s metadata, looked up at the first use.
    pub(crate) fn discovered(issuer: String, member: MetadataMember) -> IdpEndpoint {
        IdpEndpoint(EndpointKind::Discovered(Box::new(MetadataLookup {
            issuer,
            member,
            found: ArcSwapOption::empty(),
            flight: tokio::sync::Mutex::new(Remembered::default()),
            backoff: Mutex::new(LookupBackoff::default()),
        })))
    }

    /// The issuer whose metadata names the endpoint, when it is discovered.
    pub(crate) fn issuer(&self) -> Option<&str> {
        match &self.0 {
            EndpointKind::Configured(_) => None,
            EndpointKind::Discovered(lookup) => Some(&lookup.issuer),
        }
    }

    /// The configured URL or issuer, for `Debug` and cache keys.
    pub(crate) fn target(&self) -> &str {
        match &self.0 {
            EndpointKind::Configured(url) => url.as_str(),
            EndpointKind::Discovered(lookup) => &lookup.issuer,
        }
    }

    /// The URL without waiting: the configured one, or the one found before, if any.
    #[cfg(test)]
    pub(crate) fn known(&self) -> Option<Arc<Url>> {
        match &self.0 {
            EndpointKind::Configured(url) => Some(Arc::clone(url)),
            EndpointKind::Discovered(lookup) => lookup.found.load_full(),
        }
    }

    /// The endpoint: the configured one, the one found before, or the one this call
    /// looks up (or waits for another call to look up). The metadata is fetched with
    /// `client` within `timeout`, and the usual cap on metadata bodies.
    ///
    /// # Errors
    ///
    /// [`LookupFailed`] when the lookup failed now or failed before and its backoff has
    /// not elapsed.
    pub(crate) async fn url(&self, client: &reqwest::Client, timeout: Duration) -> Result<Arc<Url>, LookupFailed> {
        match &self.0 {
            EndpointKind::Configured(url) => Ok(Arc::clone(url)),
            EndpointKind::Discovered(lookup) => lookup.url(client, timeout, true).await,
        }
    }

    /// Like [`url`](Self::url), for an owner that paces its own fetches (the key store,
    /// with its schedule, its backoff and its on-demand cooldown): a standing refusal
    /// does not hold this call back, so an explicit refresh is never refused by a
    /// backoff the owner did not choose. The lookup is still single-flight.
    pub(crate) async fn url_paced_by_owner(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Arc<Url>, LookupFailed> {
        match &self.0 {
            EndpointKind::Configured(url) => Ok(Arc::clone(url)),
            EndpointKind::Discovered(lookup) => lookup.url(client, timeout, false).await,
        }
    }

    /// Reports that `url`, which [`url`](Self::url) returned, failed at the transport
    /// level or with an answer the protocol does not explain: the next use looks the
    /// endpoint up again. Nothing happens for a configured URL, or when another report
    /// or lookup replaced `url` already.
    pub(crate) fn failed(&self, url: &Arc<Url>) {
        if let EndpointKind::Discovered(lookup) = &self.0 {
            let previous = lookup.found.compare_and_swap(url, None);
            if previous.as_ref().is_some_and(|previous| Arc::ptr_eq(previous, url)) {
                tracing::info!(
                    issuer = %lookup.issuer,
                    endpoint = lookup.member.name(),
                    "the discovered endpoint failed; it is looked up again at the next use"
                );
            }
        }
    }
}

impl MetadataLookup {
    /// The URL; `backoff`: whether a standing refusal holds this call back.
    async fn url(&self, client: &reqwest::Client, timeout: Duration, backoff: bool) -> Result<Arc<Url>, LookupFailed> {
        if let Some(url) = self.found.load_full() {
            return Ok(url);
        }
        if backoff {
            self.refused(Instant::now())?;
        }
        let mut known = self.flight.lock().await;
        // The flight we waited for may have settled it either way.
        if let Some(url) = self.found.load_full() {
            return Ok(url);
        }
        if backoff {
            self.refused(Instant::now())?;
        }
        match self.look_up(client, timeout, &mut known).await {
            Ok(url) => {
                let url = Arc::new(url);
                *self.lock() = LookupBackoff::default();
                self.found.store(Some(Arc::clone(&url)));
                Ok(url)
            }
            Err(LookupFailure(reason, error)) => {
                let mut backoff = self.lock();
                backoff.failures = backoff.failures.saturating_add(1);
                let wait = fetch::backoff(
                    backoff.failures,
                    BACKOFF_INITIAL,
                    BACKOFF_MAX,
                    error.retry_after(),
                    MAX_RETRY_AFTER,
                );
                backoff.refusal = Some((Instant::now() + wait, LookupFailure(reason, error.clone())));
                tracing::warn!(
                    issuer = %self.issuer,
                    endpoint = self.member.name(),
                    failures = backoff.failures,
                    retry_in_ms = wait.as_millis() as u64,
                    %error,
                    "{reason}; the endpoint is not looked up again before the backoff elapses"
                );
                Err(LookupFailed { reason, error, retry_after: wait })
            }
        }
    }

    /// The refusal that stands at `now`, if any.
    fn refused(&self, now: Instant) -> Result<(), LookupFailed> {
        match &self.lock().refusal {
            Some((until, LookupFailure(reason, error))) if now < *until => {
                Err(LookupFailed { reason, error: error.clone(), retry_after: *until - now })
            }
            _ => Ok(()),
        }
    }

    /// One lookup: the metadata, its member, and the URL checked. On failure, why.
    async fn look_up(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
        known: &mut Remembered<ProviderMetadata>,
    ) -> Result<Url, LookupFailure> {
        let limits = Limits { timeout, max_body: fetch::DEFAULT_DOCUMENT_MAX_BODY_SIZE };
        let metadata = discovery::discover(client, &self.issuer, limits, known)
            .await
            .map_err(|error| LookupFailure("discovery failed", error))?;
        let member = self.member;
        let url = member.take(metadata).ok_or_else(|| LookupFailure(member.missing_reason(), member.missing()))?;
        fetch::parse_url(&url).map_err(|error| LookupFailure(member.insecure_reason(), error))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LookupBackoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A metadata server on loopback that answers every request with `answer` after
    /// `delay`, counting the requests.
    struct Metadata {
        issuer: String,
        requests: Arc<AtomicUsize>,
        answer: Arc<Mutex<(u16, String)>>,
    }

    impl Metadata {
        async fn start(delay: Duration) -> Metadata {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let issuer = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(AtomicUsize::new(0));
            let answer = Arc::new(Mutex::new((500, String::new())));
            let (counted, answered) = (Arc::clone(&requests), Arc::clone(&answer));
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let (counted, answered) = (Arc::clone(&counted), Arc::clone(&answered));
                    tokio::spawn(async move {
                        let mut buf = [0; 4096];
                        let _ = socket.read(&mut buf).await;
                        counted.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let (status, body) = answered.lock().unwrap().clone();
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                             connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(reply.as_bytes()).await;
                    });
                }
            });
            Metadata { issuer, requests, answer }
        }

        fn answer(&self, status: u16, token_endpoint: &str) {
            let body = format!(r#"{{"issuer":"{}","token_endpoint":"{token_endpoint}"}}"#, self.issuer);
            *self.answer.lock().unwrap() = (status, body);
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn only_a_transport_failure_or_an_unexpected_status_says_the_endpoint_failed() {
        assert!(transport_failed(&FetchError::Timeout) && transport_failed(&FetchError::InsecureUrl));
        assert!(!transport_failed(&FetchError::BodyTooLarge { limit: 1 }));
        for status in [302, 404, 405, 410] {
            assert!(unexpected_status(http::StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 400, 401, 403, 429, 500, 503] {
            assert!(!unexpected_status(http::StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }

    #[tokio::test]
    async fn a_configured_url_is_never_looked_up() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let endpoint = IdpEndpoint::configured(url.clone());
        let found = endpoint.url(&client(), TIMEOUT).await.unwrap();
        assert_eq!(*found, url);
        endpoint.failed(&found);
        assert_eq!(endpoint.known().as_deref(), Some(&url));
        assert_eq!(endpoint.target(), "https://idp.example/token");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_lookup() {
        let metadata = Metadata::start(Duration::from_millis(200)).await;
        metadata.answer(200, "https://idp.example/token");
        let endpoint = Arc::new(IdpEndpoint::discovered(metadata.issuer.clone(), MetadataMember::Token));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let endpoint = Arc::clone(&endpoint);
                tokio::spawn(async move { endpoint.url(&client(), TIMEOUT).await.map(|url| url.to_string()) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "https://idp.example/token");
        }
        assert_eq!(metadata.requests(), 1, "one lookup, OIDC's document first");
        endpoint.url(&client(), TIMEOUT).await.unwrap();
        assert_eq!(metadata.requests(), 1, "kept");
    }

    #[tokio::test]
    async fn a_failed_lookup_refuses_callers_with_the_time_left_until_the_backoff_elapses() {
        let metadata = Metadata::start(Duration::ZERO).await;
        metadata.answer(500, "https://idp.example/token");
        let endpoint = IdpEndpoint::discovered(metadata.issuer.clone(), MetadataMember::Token);
        let failed = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        assert_eq!(failed.reason, "discovery failed");
        assert!(matches!(failed.error, FetchError::Status(status) if status == 500), "{:?}", failed.error);
        assert!(failed.retry_after <= Duration::from_millis(1200), "{:?}", failed.retry_after);
        assert_eq!(metadata.requests(), 2, "both documents tried");

        // Refused at once, with the same reason and cause and less time, without a fetch.
        metadata.answer(200, "https://idp.example/token");
        let refused = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        assert_eq!(refused.reason, failed.reason);
        assert!(matches!(refused.error, FetchError::Status(_)));
        assert!(refused.retry_after <= failed.retry_after);
        assert_eq!(metadata.requests(), 2);

        tokio::time::sleep(failed.retry_after).await;
        assert_eq!(endpoint.url(&client(), TIMEOUT).await.unwrap().as_str(), "https://idp.example/token");
        assert_eq!(metadata.requests(), 3);
    }

    #[tokio::test]
    async fn a_missing_or_insecure_member_is_a_failed_lookup() {
        let metadata = Metadata::start(Duration::ZERO).await;
        *metadata.answer.lock().unwrap() = (200, format!(r#"{{"issuer":"{}"}}"#, metadata.issuer));
        let endpoint = IdpEndpoint::discovered(metadata.issuer.clone(), MetadataMember::Token);
        let missing = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        assert_eq!(missing.reason, "no token_endpoint in the issuer's metadata");
        assert!(matches!(missing.error, FetchError::InvalidDocument("metadata has no token_endpoint")));

        metadata.answer(200, "http://idp.example/token");
        let endpoint = IdpEndpoint::discovered(metadata.issuer.clone(), MetadataMember::Token);
        let insecure = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        assert_eq!(insecure.reason, "discovered token_endpoint is insecure or invalid");
        assert!(matches!(insecure.error, FetchError::InsecureUrl));
    }

    #[tokio::test]
    async fn a_reported_failure_makes_the_next_use_look_the_endpoint_up_again() {
        let metadata = Metadata::start(Duration::ZERO).await;
        metadata.answer(200, "https://idp.example/old");
        let endpoint = IdpEndpoint::discovered(metadata.issuer.clone(), MetadataMember::Token);
        let old = endpoint.url(&client(), TIMEOUT).await.unwrap();
        assert_eq!(endpoint.known().as_deref(), Some(&*old));
        metadata.answer(200, "https://idp.example/new");
        endpoint.failed(&old);
        assert_eq!(endpoint.known(), None);
        let new = endpoint.url(&client(), TIMEOUT).await.unwrap();
        assert_eq!(new.as_str(), "https://idp.example/new");
        assert_eq!(metadata.requests(), 2);

        // A late report about the URL already replaced changes nothing.
        endpoint.failed(&old);
        assert_eq!(endpoint.known().as_deref(), Some(&*new));

        // The look-up after a report is under the same backoff when it fails.
        metadata.answer(503, "https://idp.example/new");
        endpoint.failed(&new);
        let failed = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        let refused = endpoint.url(&client(), TIMEOUT).await.unwrap_err();
        assert!(refused.retry_after <= failed.retry_after);
        assert_eq!(metadata.requests(), 4, "the second caller was refused without a fetch");
    }
}
