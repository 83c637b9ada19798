use std::any::Any;
use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use url::Url;

use super::{AuthMethod, IntrospectionError};
use crate::FetchError;
use crate::error::BuildError;
use crate::idp::answers::{Answer, AnswerCache, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_TTL, ttl_until};
use crate::idp::client_auth::{AssertionAudience, Audience, ClientAuth, ClientCredential};
use crate::idp::endpoint::{IdpEndpoint, MetadataMember, transport_failed, unexpected_status};
use crate::idp::fetch::{self, DEFAULT_MAX_BODY_SIZE, Form, Limits, Target, client_or_default};

/// The default time an inactive answer is reused.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Tokens longer than this are inactive without asking: no access token is this long,
/// and the request body stays bounded.
const MAX_TOKEN_SIZE: usize = crate::idp::fetch::DEFAULT_MAX_TOKEN_SIZE;

/// An RFC 7662 introspection client with a bounded, single-flight answer cache; see
/// the [module documentation](super).
///
/// Cheap to clone: clones share the configuration, the cache and the counter. `Debug`
/// shows neither the secret nor any token.
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    endpoint: IdpEndpoint,
    auth: ClientAuth,
    limits: Limits,
    max_ttl: Duration,
    negative_ttl: Duration,
    cache: AnswerCache<Result<Introspected, IntrospectionError>>,
    requests: AtomicU64,
}

/// The answer for an active token: its claims as the introspection endpoint sent them.
///
/// Cheap to clone. `Debug` shows only `exp` and the size of the claims.
#[derive(Clone)]
pub struct Introspected {
    inner: Arc<Kept>,
}

/// One answer, shared by its clones: by every hit of the cache entry that keeps it.
struct Kept {
    claims: Arc<str>,
    expires_at: Option<i64>,
    /// What a reader derived from `claims` once and for all (the validator's parsed
    /// claims), so a cache hit does not parse the same text again. It lives as long as
    /// the answer: a `forget` or the end of the answer's time to live drops it.
    derived: OnceLock<Box<dyn Any + Send + Sync + UnwindSafe + RefUnwindSafe>>,
}

impl Introspected {
    fn new(claims: Arc<str>, expires_at: Option<i64>) -> Introspected {
        Introspected { inner: Arc::new(Kept { claims, expires_at, derived: OnceLock::new() }) }
    }

    /// The response's JSON object as text: the token's claims (`iss`, `sub`, `aud`,
    /// `exp`, `scope`, `client_id`, …) along with `active: true`.
    pub fn claims_json(&self) -> &str {
        &self.inner.claims
    }

    /// The same text, shared.
    pub fn claims(&self) -> &Arc<str> {
        &self.inner.claims
    }

    /// `exp`, in seconds since the epoch, when the response has an integer one.
    pub fn expires_at(&self) -> Option<i64> {
        self.inner.expires_at
    }

    /// The value derived from the claims alone (never from the time or a policy) and
    /// kept with this answer, if it is a `T`: shared by every clone of the answer.
    pub(crate) fn derived<T: Any>(&self) -> Option<&T> {
        let kept: &(dyn Any + Send + Sync) = &**self.inner.derived.get()?;
        kept.downcast_ref()
    }

    /// Keeps `value`, derived from the claims alone, with this answer and its clones.
    /// The first value kept stays.
    pub(crate) fn keep_derived<T: Any + Send + Sync + UnwindSafe + RefUnwindSafe>(&self, value: T) {
        let _ = self.inner.derived.set(Box::new(value));
    }
}

impl PartialEq for Introspected {
    fn eq(&self, other: &Self) -> bool {
        self.inner.claims == other.inner.claims && self.inner.expires_at == other.inner.expires_at
    }
}

impl Eq for Introspected {}

impl fmt::Debug for Introspected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspected")
            .field("expires_at", &self.inner.expires_at)
            .field("claims_len", &self.inner.claims.len())
            .finish()
    }
}

/// The members of an introspection response this client reads (RFC 7662 §2.2).
/// Derived `Deserialize` refuses a duplicate `active`, `exp` or `token_type`.
#[derive(Deserialize)]
struct Head {
    active: bool,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    token_type: Option<serde_json::Value>,
    #[serde(default)]
    cnf: Option<serde_json::Value>,
}

impl Introspector {
    /// Configures an introspector for the endpoint at `url`, authenticating as
    /// `client_id` with `client_secret`.
    pub fn builder(
        url: impl Into<String>,
        client_id: impl Into<String>,
        credential: impl Into<ClientCredential>,
    ) -> IntrospectorBuilder {
        IntrospectorBuilder::new(Target::Url(url.into()), client_id.into(), credential.into())
    }

    /// Like [`builder`](Self::builder), with the endpoint found as
    /// `introspection_endpoint` in `issuer`'s metadata (OpenID Connect discovery, then
    /// RFC 8414) at the first introspection. The metadata must name the same issuer and
    /// the endpoint must be https (or loopback).
    ///
    /// One discovery runs at a time, and concurrent introspections wait for it. After a
    /// failed discovery, introspections are refused at once with
    /// [`IntrospectionError::Unavailable`], whose `retry_after` is the time left, until
    /// a backoff elapses: 1 s doubling up to 1 min with jitter, and never sooner than
    /// the metadata endpoint's `Retry-After`. An outage of the metadata endpoint thus
    /// costs the issuer a few requests, not one per introspection.
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        credential: impl Into<ClientCredential>,
    ) -> IntrospectorBuilder {
        IntrospectorBuilder::new(Target::Issuer(issuer.into()), client_id.into(), credential.into())
    }

    /// Whether `token` is active, and its claims if it is: from the cache, or from the
    /// one request that runs for this token (concurrent callers share it).
    ///
    /// # Errors
    ///
    /// [`IntrospectionError::Inactive`] when the server says so (or the token is empty,
    /// over 16 KiB, or not a bearer token); [`IntrospectionError::Unavailable`] or
    /// [`IntrospectionError::Rejected`] when the endpoint cannot give an answer.
    pub async fn introspect(&self, token: &str) -> Result<Introspected, IntrospectionError> {
        if token.is_empty() || token.len() > MAX_TOKEN_SIZE {
            return Err(IntrospectionError::Inactive);
        }
        let inner = &*self.inner;
        inner.cache.get_or_fetch(token, || inner.fetch(token)).await
    }

    /// The answer kept for `token`, without waiting for anything: the synchronous path a
    /// validator can take before it needs the network (no future, no lock held across
    /// an await). `None` when nothing usable is kept: never asked, expired, being
    /// fetched, or a failure (never kept). An empty or oversized token is inactive, as
    /// [`introspect`](Self::introspect) says.
    pub(crate) fn cached_answer(&self, token: &str) -> Option<Result<Introspected, IntrospectionError>> {
        if token.is_empty() || token.len() > MAX_TOKEN_SIZE {
            return Some(Err(IntrospectionError::Inactive));
        }
        self.inner.cache.get(token)
    }

    /// Keeps `answer` for `token` for a minute, as a fetch would.
    #[cfg(test)]
    pub(crate) async fn keep(&self, token: &str, answer: Result<Introspected, IntrospectionError>) {
        let kept = Answer { value: answer, ttl: Duration::from_secs(60), weight: 16 };
        let _ = self.inner.cache.get_or_fetch(token, || async { kept }).await;
    }

    /// The answer an introspection endpoint gives as `json`.
    #[cfg(test)]
    pub(crate) fn answer(json: &str) -> Result<Introspected, IntrospectionError> {
        parse(json.as_bytes())
    }

    /// Forgets the cached answer for `token`, say after a revocation notice.
    pub fn forget(&self, token: &str) {
        self.inner.cache.remove(token);
    }

    /// How many introspection requests were sent (discovery not included).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many answers are cached.
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }
}

impl Inner {
    async fn fetch(&self, token: &str) -> Answer<Result<Introspected, IntrospectionError>> {
        let result = self.exchange(token).await;
        crate::telemetry::introspection(match &result {
            Ok(_) => "active",
            Err(IntrospectionError::Inactive) => "inactive",
            Err(_) => "error",
        });
        let (ttl, weight) = match &result {
            Ok(introspected) => {
                (ttl_until(introspected.expires_at(), self.max_ttl), introspected.claims_json().len() as u64)
            }
            Err(IntrospectionError::Inactive) => (self.negative_ttl, 0),
            // Failures are shared with the callers waiting on this flight, never kept.
            Err(_) => (Duration::ZERO, 0),
        };
        Answer { value: result, ttl, weight }
    }

    async fn exchange(&self, token: &str) -> Result<Introspected, IntrospectionError> {
        let url = self.url().await?;
        let mut form = Form::default();
        form.pair("token", token.as_bytes());
        form.pair("token_type_hint", b"access_token");
        let to = Audience { issuer: self.endpoint.issuer(), endpoint: url.as_str() };
        let authorization = self.auth.authenticate(&mut form, to).map_err(IntrospectionError::ClientAssertion)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let posted = fetch::post_form(&self.client, &url, authorization.as_ref(), form.into_bytes(), self.limits)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "introspection request failed");
                if transport_failed(&error) {
                    self.endpoint.failed(&url);
                }
                unavailable(error)
            })?;
        let status = posted.status;
        if unexpected_status(status) {
            self.endpoint.failed(&url);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "introspection endpoint unavailable");
            let (reason, error) = if status.is_server_error() {
                ("server error", FetchError::Status(status))
            } else {
                ("rate limited", FetchError::RateLimited { retry_after: posted.retry_after })
            };
            return Err(IntrospectionError::Unavailable { retry_after: posted.retry_after, reason, error });
        }
        if !status.is_success() {
            // 401/403: the endpoint does not accept our credentials. Our configuration
            // is wrong, not the caller's token.
            tracing::error!(
                status = status.as_u16(),
                client_id = %self.auth.client_id(),
                "introspection endpoint refused the request; check the client credentials"
            );
            let hint = (matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                && self.auth.encoding_may_matter())
            .then_some(super::error::BASIC_ENCODING_HINT);
            return Err(IntrospectionError::Rejected { status, hint });
        }
        let body = posted.body.map_err(|error| {
            tracing::warn!(%error, "introspection response could not be read");
            unavailable(error)
        })?;
        parse(&body)
    }

    async fn url(&self) -> Result<Arc<Url>, IntrospectionError> {
        self.endpoint.url(&self.client, self.limits.timeout).await.map_err(|failed| IntrospectionError::Unavailable {
            retry_after: Some(failed.retry_after),
            reason: failed.reason,
            error: failed.error,
        })
    }
}

fn unavailable(error: FetchError) -> IntrospectionError {
    let reason = match error {
        FetchError::Timeout => "timed out",
        FetchError::BodyTooLarge { .. } => "response body too large",
        FetchError::InsecureUrl => "redirected to an insecure url",
        _ => "request failed",
    };
    IntrospectionError::unavailable(reason, error)
}

/// RFC 7662 §2.2: a JSON object with a boolean `active`; everything else is the
/// server's failure, not the token's.
fn parse(body: &[u8]) -> Result<Introspected, IntrospectionError> {
    let garbage = || {
        tracing::warn!("introspection response is not an RFC 7662 JSON object");
        IntrospectionError::unavailable(
            "not an introspection response",
            FetchError::InvalidDocument("not an RFC 7662 JSON object"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|_| garbage())?.trim();
    let head: Head = serde_json::from_str(text).map_err(|_| garbage())?;
    if !head.active {
        return Err(IntrospectionError::Inactive);
    }
    // Only access tokens: a refresh token must not pass. A DPoP token (RFC 9449 §6.2)
    // must name its key in `cnf.jkt`, which the validator then holds the proof to;
    // without it, nothing would. `token_type` is optional (RFC 7662 §2.2).
    if let Some(token_type) = &head.token_type {
        let access = match token_type.as_str() {
            Some(t) if t.eq_ignore_ascii_case("bearer") => true,
            Some(t) if t.eq_ignore_ascii_case("dpop") => {
                head.cnf.as_ref().and_then(|cnf| cnf.get("jkt")).is_some_and(serde_json::Value::is_string)
            }
            _ => false,
        };
        if !access {
            tracing::debug!("introspected token is not an access token this server can check");
            return Err(IntrospectionError::Inactive);
        }
    }
    let expires_at = head.exp.as_ref().and_then(serde_json::Value::as_i64);
    Ok(Introspected::new(text.into(), expires_at))
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Introspector")
            .field("target", &inner.endpoint.target())
            .field("client_id", &inner.auth.client_id())
            .field("client_secret", &"***")
            .field("auth_method", &inner.auth.method())
            .field("max_ttl", &inner.max_ttl)
            .field("negative_ttl", &inner.negative_ttl)
            .field("cached", &inner.cache.len())
            .field("cache_weight", &inner.cache.weight())
            .field("cache_capacity", &inner.cache.capacity())
            .finish_non_exhaustive()
    }
}

/// Configures an [`Introspector`]; from [`Introspector::builder`] or
/// [`Introspector::discover`].
#[must_use]
pub struct IntrospectorBuilder {
    target: Target,
    client_id: String,
    credential: ClientCredential,
    method: Option<AuthMethod>,
    assertion_audience: AssertionAudience,
    limits: Limits,
    cache_capacity: u64,
    max_ttl: Duration,
    negative_ttl: Duration,
    http_client: Option<reqwest::Client>,
}

impl IntrospectorBuilder {
    fn new(target: Target, client_id: String, credential: ClientCredential) -> Self {
        IntrospectorBuilder {
            target,
            client_id,
            credential,
            method: None,
            assertion_audience: AssertionAudience::default(),
            limits: Limits { timeout: fetch::DEFAULT_TIMEOUT, max_body: DEFAULT_MAX_BODY_SIZE },
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            max_ttl: DEFAULT_MAX_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            http_client: None,
        }
    }

    /// How the client authenticates. The default follows the credential:
    /// [`AuthMethod::ClientSecretBasic`] for a secret (with the id and secret
    /// form-urlencoded first, RFC 6749 §2.3.1), [`AuthMethod::PrivateKeyJwt`] for a
    /// [`ClientKey`](crate::client::ClientKey), [`AuthMethod::TlsClientAuth`] for
    /// [`ClientCredential::TlsCertificate`] (give an [`http_client`](Self::http_client)
    /// with the certificate). A method that does not fit the credential fails
    /// [`build`](Self::build).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The `aud` of client assertions; default [`AssertionAudience::Issuer`] (the
    /// introspection endpoint's URL when it was configured rather than discovered).
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// The time limit of one introspection (and of discovery); default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The largest response body read; default 64 KiB
    /// ([`DEFAULT_MAX_BODY_SIZE`](crate::client::DEFAULT_MAX_BODY_SIZE)).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// The bound of the answer cache in bytes; default 16 MiB.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// The longest an active answer is reused, whatever the token's `exp`; default
    /// 5 min. It bounds how long a revoked token stays accepted. `0` turns the cache of
    /// active answers off.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// How long an inactive answer is reused; default 10 s, `0` to disable.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The HTTP client for custom roots, mTLS or a proxy. It should not follow
    /// redirects (the default client does not); a response from an insecure URL is
    /// refused all the same.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`BuildError::Url`] for a URL that does not parse or is plain http off loopback,
    /// [`BuildError::MissingIssuer`] for an empty issuer, and
    /// [`BuildError::HttpClient`] when the default client cannot be built.
    pub fn build(self) -> Result<Introspector, BuildError> {
        let auth = ClientAuth::new(self.client_id, self.credential, self.method, self.assertion_audience)?;
        // RFC 8705 §5: a client that authenticates with its certificate uses the aliases.
        let member =
            if auth.method().is_mtls() { MetadataMember::MtlsIntrospection } else { MetadataMember::Introspection };
        let endpoint = IdpEndpoint::new(self.target, member)?;
        let client = client_or_default(self.http_client)?;
        Ok(Introspector {
            inner: Arc::new(Inner {
                client,
                endpoint,
                auth,
                limits: self.limits,
                max_ttl: self.max_ttl,
                negative_ttl: self.negative_ttl,
                cache: AnswerCache::with_capacity(self.cache_capacity),
                requests: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for IntrospectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target.as_str();
        f.debug_struct("IntrospectorBuilder")
            .field("target", &target)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("auth_method", &self.method)
            .field("timeout", &self.limits.timeout)
            .field("max_ttl", &self.max_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_follow_rfc7662() {
        let ok = parse(br#"{"active":true,"sub":"alice","exp":2000000000,"token_type":"Bearer"}"#).unwrap();
        assert_eq!(ok.expires_at(), Some(2_000_000_000));
        assert!(ok.claims_json().contains("alice"));
        assert_eq!(parse(br#"{"active":true}"#).unwrap().expires_at(), None);
        assert_eq!(parse(br#"{"active":false}"#), Err(IntrospectionError::Inactive));
        assert_eq!(parse(br#"{"active":true,"token_type":"refresh_token"}"#), Err(IntrospectionError::Inactive));
        // A DPoP token must name its key; with it, the proof is checked by the layer.
        assert_eq!(parse(br#"{"active":true,"token_type":"DPoP"}"#), Err(IntrospectionError::Inactive));
        assert_eq!(parse(br#"{"active":true,"token_type":"DPoP","cnf":{}}"#), Err(IntrospectionError::Inactive));
        assert!(parse(br#"{"active":true,"token_type":"DPoP","cnf":{"jkt":"abc"}}"#).is_ok());
        for garbage in
            [&b"<html>"[..], b"[]", b"{}", br#"{"active":"true"}"#, br#"{"active":false,"active":true}"#, b"\xff"]
        {
            let error = parse(garbage).unwrap_err();
            assert!(error.is_server_error(), "{}: {error}", String::from_utf8_lossy(garbage));
        }
    }

    #[tokio::test]
    async fn a_kept_answer_is_served_synchronously() {
        let introspector = Introspector::builder("https://idp/introspect", "c", "s").build().unwrap();
        assert_eq!(introspector.cached_answer(""), Some(Err(IntrospectionError::Inactive)));
        assert_eq!(introspector.cached_answer("t"), None);
        let active = parse(br#"{"active":true,"sub":"alice"}"#);
        let kept = Answer { value: active.clone(), ttl: Duration::from_secs(60), weight: 16 };
        assert!(introspector.inner.cache.get_or_fetch("t", || async { kept }).await.is_ok());
        assert_eq!(introspector.cached_answer("t"), Some(active));
        let inactive = Answer { value: Err(IntrospectionError::Inactive), ttl: Duration::from_secs(10), weight: 0 };
        assert!(introspector.inner.cache.get_or_fetch("u", || async { inactive }).await.is_err());
        assert_eq!(introspector.cached_answer("u"), Some(Err(IntrospectionError::Inactive)));
    }

    #[test]
    fn clones_share_one_derived_slot_and_equality_is_by_content() {
        let answer = parse(br#"{"active":true,"sub":"alice"}"#).unwrap();
        let clone = answer.clone();
        answer.keep_derived(7_u32);
        answer.keep_derived(8_u32);
        assert_eq!(clone.derived::<u32>(), Some(&7), "shared, and the first kept stays");
        assert_eq!(clone.derived::<u64>(), None);
        let fresh = parse(br#"{"active":true,"sub":"alice"}"#).unwrap();
        assert!(fresh.derived::<u32>().is_none(), "a new answer derives anew");
        assert_eq!(fresh, answer);
        assert_ne!(parse(br#"{"active":true,"sub":"bob"}"#).unwrap(), answer);
    }

    #[test]
    fn an_answer_stays_send_sync_and_unwind_safe() {
        fn check<T: Send + Sync + UnwindSafe + RefUnwindSafe>() {}
        check::<Introspected>();
    }

    #[test]
    fn an_unavailable_answer_keeps_its_cause_as_source() {
        use std::error::Error as _;
        let garbage = parse(b"<html>").unwrap_err();
        assert_eq!(garbage.to_string(), "introspection unavailable: not an introspection response");
        assert!(garbage.source().is_some_and(|cause| cause.to_string().starts_with("invalid document")));
        let timeout = unavailable(FetchError::Timeout);
        assert_eq!(timeout.source().map(ToString::to_string).as_deref(), Some("request timed out"));
        assert!(IntrospectionError::Inactive.source().is_none());
    }

    #[test]
    fn insecure_or_malformed_configuration_is_refused() {
        let build = |url: &str| Introspector::builder(url, "c", "s").build().map(|_| ());
        assert!(matches!(build("http://idp.example/introspect"), Err(BuildError::Url(FetchError::InsecureUrl))));
        assert!(matches!(build("not a url"), Err(BuildError::Url(FetchError::InvalidUrl))));
        assert!(build("http://127.0.0.1:8080/introspect").is_ok());
        assert!(matches!(Introspector::discover(" ", "c", "s").build(), Err(BuildError::MissingIssuer)));
    }

    #[test]
    fn debug_shows_no_secret() {
        let introspector = Introspector::builder("https://idp/introspect", "c", "hunter2").build().unwrap();
        assert!(!format!("{introspector:?}").contains("hunter2"));
        assert!(!format!("{:?}", Introspector::builder("https://idp/i", "c", "hunter2")).contains("hunter2"));
    }
}
