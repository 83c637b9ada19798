//! OpenID Connect userinfo (Core 1.0 §5.3) as an optional enrichment step behind
//! [`BearerAuthLayer`](crate::BearerAuthLayer): the user's claims, fetched with the
//! presented access token, cached, and handed to handlers as [`UserinfoClaims`].
//!
//! [`UserinfoLayer`] goes *inside* the bearer layer (in axum, `.layer(userinfo)` before
//! `.layer(bearer)`), so it only sees requests whose token was validated. For each
//! request it:
//!
//! - takes the validated [`Claims`] and the bearer token;
//! - looks up the answer cached for the token (keyed by the SHA-256 of the token, never
//!   the token itself), or fetches the userinfo endpoint with the token (one request
//!   per token at a time: concurrent requests share it);
//! - checks that the answer's `sub` equals the token's `sub` (Core 1.0 §5.3.2: otherwise
//!   the answer must not be used);
//! - puts the [`UserinfoClaims`] into the request's extensions, where handlers (and the axum
//!   extractor) find it.
//!
//! An answer is reused until the token's `exp`, and never longer than
//! [`max_ttl`](UserinfoLayerBuilder::max_ttl) (default 5 min). Failures (the endpoint
//! down, slow, answering garbage or refusing the token, a `sub` that differs) are not
//! kept; what happens to the request is the [`FailurePolicy`]: a 503 with
//! `Retry-After` by default, or the request goes on without `UserinfoClaims`. A
//! [discovered](UserinfoLayer::discover) endpoint is looked up by one request at a time,
//! and kept until it fails at the transport level or answers a status no userinfo
//! endpoint answers (404, a redirect, …); after a failed lookup, not again until a
//! backoff has elapsed.
//!
//! Only JSON answers are supported; a signed or encrypted userinfo response
//! (`application/jwt`, Core 1.0 §5.3.2) counts as a failure.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use tower_oauth::userinfo::{UserinfoClaims, UserinfoLayer};
//! use tower_oauth::{BearerAuthLayer, Validator};
//!
//! async fn me(user: UserinfoClaims) -> String {
//!     format!("hello {}", user.name().unwrap_or("stranger"))
//! }
//!
//! let validator = Validator::builder().issuer("https://idp.example").audience("api").build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(UserinfoLayer::discover("https://idp.example").build()?)
//!     .layer(BearerAuthLayer::new(validator));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;
use url::Url;

use crate::bearer::extract::bearer_token;
use crate::bearer::scope::reject_parts;
use crate::bearer::{Rejection, ResponseBody, ResponseFuture};
use crate::error::BuildError;
use crate::idp::answers::{Answer, AnswerCache, ttl_until};
use crate::idp::endpoint::{IdpEndpoint, MetadataMember, transport_failed, unexpected_status};
use crate::idp::fetch::{self, Limits, Target, client_or_default};
use crate::{Claims, FetchError};

pub use crate::idp::answers::{DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_TTL};
pub use crate::idp::fetch::DEFAULT_MAX_BODY_SIZE;

/// The user's claims from the userinfo endpoint, checked to be about the token's `sub`.
///
/// Cheap to clone. `Debug` shows `sub` and the names of the other members, not their
/// values (they are personal data).
#[derive(Clone)]
pub struct UserinfoClaims(Arc<UserinfoClaimsInner>);

struct UserinfoClaimsInner {
    raw: Box<str>,
    members: Map<String, Value>,
}

impl UserinfoClaims {
    /// Parses a userinfo response: a JSON object with a string `sub`.
    fn parse(text: &str) -> Option<UserinfoClaims> {
        let members: Map<String, Value> = serde_json::from_str(text).ok()?;
        members.get("sub")?.as_str()?;
        Some(UserinfoClaims(Arc::new(UserinfoClaimsInner { raw: text.into(), members })))
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0.members.get(name).and_then(Value::as_str)
    }

    /// `sub`: always present, and equal to the token's.
    pub fn subject(&self) -> &str {
        self.str("sub").unwrap_or_default()
    }

    /// `name`: the full name.
    pub fn name(&self) -> Option<&str> {
        self.str("name")
    }

    /// `given_name`.
    pub fn given_name(&self) -> Option<&str> {
        self.str("given_name")
    }

    /// `family_name`.
    pub fn family_name(&self) -> Option<&str> {
        self.str("family_name")
    }

    /// `preferred_username`: not unique, not stable; never a key.
    pub fn preferred_username(&self) -> Option<&str> {
        self.str("preferred_username")
    }

    /// `email`.
    pub fn email(&self) -> Option<&str> {
        self.str("email")
    }

    /// `email_verified`.
    pub fn email_verified(&self) -> Option<bool> {
        self.0.members.get("email_verified").and_then(Value::as_bool)
    }

    /// `picture`: a URL.
    pub fn picture(&self) -> Option<&str> {
        self.str("picture")
    }

    /// `locale`, a BCP 47 language tag.
    pub fn locale(&self) -> Option<&str> {
        self.str("locale")
    }

    /// Any member, deserialized on demand; `None` when absent or of another type.
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        T::deserialize(self.0.members.get(name)?).ok()
    }

    /// The answer as the endpoint sent it, as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0.raw
    }
}

impl fmt::Debug for UserinfoClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<&str> = self.0.members.keys().map(String::as_str).filter(|k| *k != "sub").collect();
        f.debug_struct("UserinfoClaims").field("sub", &self.subject()).field("members", &members).finish()
    }
}

/// What a request gets when its userinfo cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// 503 with `Retry-After` (or gRPC `UNAVAILABLE`); the inner service is not called.
    /// The default: handlers can count on [`UserinfoClaims`].
    #[default]
    Unavailable,
    /// The request goes on without [`UserinfoClaims`]; handlers must cope with its absence
    /// (`Option<UserinfoClaims>` in axum).
    Continue,
}

/// Why a userinfo answer was not had. Kept private: requests see the policy's outcome,
/// and the log says why.
#[derive(Clone, Copy)]
enum Failure {
    Unavailable(&'static str),
    /// Discovery of the endpoint failed, and is not tried again for `retry_after`.
    Undiscovered {
        reason: &'static str,
        retry_after: Duration,
    },
    /// The answer is about another subject (Core 1.0 §5.3.2).
    SubjectMismatch,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::Unavailable(reason) | Failure::Undiscovered { reason, .. } => reason,
            Failure::SubjectMismatch => "the answer is about another subject than the token",
        }
    }

    /// The wait to announce in `Retry-After`, when this failure knows it.
    fn retry_after(self) -> Option<Duration> {
        match self {
            Failure::Undiscovered { retry_after, .. } => Some(retry_after),
            _ => None,
        }
    }
}

/// Adds [`UserinfoClaims`] to requests that [`BearerAuthLayer`](crate::BearerAuthLayer)
/// validated; see the [module documentation](self).
///
/// Cheap to clone: clones share the configuration, the cache and the counter.
#[derive(Clone)]
pub struct UserinfoLayer {
    shared: Arc<UserinfoState>,
}

struct UserinfoState {
    client: reqwest::Client,
    endpoint: IdpEndpoint,
    limits: Limits,
    max_ttl: Duration,
    policy: FailurePolicy,
    cache: AnswerCache<Result<UserinfoClaims, Failure>>,
    requests: AtomicU64,
}

impl UserinfoLayer {
    /// Configures the layer for the userinfo endpoint at `url`.
    pub fn builder(url: impl Into<String>) -> UserinfoLayerBuilder {
        UserinfoLayerBuilder::new(Target::Url(url.into()))
    }

    /// Like [`builder`](Self::builder), with the endpoint found as `userinfo_endpoint`
    /// in `issuer`'s metadata at the first request.
    ///
    /// One discovery runs at a time, and concurrent requests wait for it. After a
    /// failed discovery, requests fail at once (a 503 whose `Retry-After` is the time
    /// left, under [`FailurePolicy::Unavailable`]) until a backoff elapses: 1 s
    /// doubling up to 1 min with jitter, and never sooner than the metadata endpoint's
    /// `Retry-After`. An outage of the metadata endpoint thus costs the issuer a few
    /// requests, not one per incoming request.
    pub fn discover(issuer: impl Into<String>) -> UserinfoLayerBuilder {
        UserinfoLayerBuilder::new(Target::Issuer(issuer.into()))
    }

    /// How many userinfo requests were sent (discovery not included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// How many answers are cached.
    pub fn cached(&self) -> usize {
        self.shared.cache.len()
    }
}

impl fmt::Debug for UserinfoLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserinfoLayer")
            .field("target", &self.shared.endpoint.target())
            .field("max_ttl", &self.shared.max_ttl)
            .field("policy", &self.shared.policy)
            .field("cached", &self.shared.cache.len())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for UserinfoLayer {
    type Service = Userinfo<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Userinfo { inner, shared: self.shared.clone() }
    }
}

/// The service of [`UserinfoLayer`].
pub struct Userinfo<S> {
    inner: S,
    shared: Arc<UserinfoState>,
}

impl<S> Userinfo<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Userinfo<S> {
    fn clone(&self) -> Self {
        Userinfo { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug> fmt::Debug for Userinfo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Userinfo").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Userinfo<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let claims = request.extensions().get::<Claims>().cloned();
        // The bearer layer accepted this request, so the token is where it found it: the
        // header, or the query when the layer allows that and the header is absent. (A
        // query token beside a header is ignored there, so it must be here too.)
        let token = match bearer_token(request.headers(), request.uri(), false) {
            Err(Rejection::MissingCredentials) => bearer_token(request.headers(), request.uri(), true),
            found => found,
        };
        let token = token.ok().map(|found| found.as_str().to_owned());
        let (Some(claims), Some(token)) = (claims, token) else {
            tracing::error!("UserinfoLayer found no validated claims or token; is BearerAuthLayer in front of it?");
            let mut response = Response::new(ResponseBody::rejection(Bytes::new()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return ResponseFuture::rejected(response);
        };
        if let Some(Ok(userinfo)) = self.shared.cache.get(&token)
            && Some(userinfo.subject()) == claims.subject()
        {
            request.extensions_mut().insert(userinfo);
            return ResponseFuture::inner(self.inner.call(request), None);
        }
        // Take the service that `poll_ready` readied and leave a clone in its place
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::refreshing(Box::pin(async move {
            let outcome = shared.cache.get_or_fetch(&token, || shared.fetch(&token, &claims)).await;
            // The cache is keyed by the token alone: check the subject on every use.
            let outcome = match outcome {
                Ok(userinfo) if Some(userinfo.subject()) != claims.subject() => Err(Failure::SubjectMismatch),
                other => other,
            };
            match outcome {
                Ok(userinfo) => {
                    request.extensions_mut().insert(userinfo);
                }
                Err(failure) => {
                    tracing::warn!(reason = failure.reason(), "userinfo not used");
                    if shared.policy == FailurePolicy::Unavailable {
                        let rejection = Rejection::DependencyUnavailable {
                            what: "the userinfo endpoint",
                            retry_after: failure.retry_after(),
                        };
                        return Ok(reject_parts(request.extensions(), request.headers(), rejection));
                    }
                }
            }
            let response = inner.call(request).await?;
            Ok(response.map(ResponseBody::inner))
        }))
    }
}

impl UserinfoState {
    async fn fetch(&self, token: &str, claims: &Claims) -> Answer<Result<UserinfoClaims, Failure>> {
        let exchanged = self.exchange(token).await;
        crate::telemetry::userinfo(if exchanged.is_ok() { "ok" } else { "error" });
        let result = exchanged.and_then(|userinfo| {
            // Core 1.0 §5.3.2: the answer must be about the token's subject.
            if Some(userinfo.subject()) == claims.subject() { Ok(userinfo) } else { Err(Failure::SubjectMismatch) }
        });
        let ttl = match &result {
            Ok(_) => ttl_until(claims.expires_at(), self.max_ttl),
            Err(_) => Duration::ZERO,
        };
        let weight = result.as_ref().map_or(0, |userinfo| userinfo.as_json().len() as u64 * 2);
        Answer { value: result, ttl, weight }
    }

    async fn exchange(&self, token: &str) -> Result<UserinfoClaims, Failure> {
        let url = self.url().await?;
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| Failure::Unavailable("token unusable"))?;
        authorization.set_sensitive(true);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let reply = fetch::get_authorized(&self.client, &url, &authorization, self.limits).await.map_err(|error| {
            tracing::warn!(%error, "userinfo request failed");
            if transport_failed(&error) {
                self.endpoint.failed(&url);
            }
            Failure::Unavailable(match error {
                FetchError::Timeout => "timed out",
                FetchError::BodyTooLarge { .. } => "response body too large",
                _ => "request failed",
            })
        })?;
        if unexpected_status(reply.status) {
            self.endpoint.failed(&url);
        }
        if !reply.status.is_success() {
            tracing::warn!(status = reply.status.as_u16(), "userinfo endpoint refused");
            return Err(Failure::Unavailable("unexpected status"));
        }
        let json = reply.content_type.as_ref().is_none_or(|ct| {
            ct.to_str().is_ok_and(|ct| {
                ct.split(';').next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
            })
        });
        if !json {
            return Err(Failure::Unavailable("not a JSON response (signed userinfo is not supported)"));
        }
        let body = reply.body.map_err(|_| Failure::Unavailable("response body unreadable"))?;
        let text = std::str::from_utf8(&body).map_err(|_| Failure::Unavailable("not a userinfo response"))?;
        UserinfoClaims::parse(text.trim()).ok_or(Failure::Unavailable("not a userinfo response"))
    }

    async fn url(&self) -> Result<Arc<Url>, Failure> {
        self.endpoint
            .url(&self.client, self.limits.timeout)
            .await
            .map_err(|failed| Failure::Undiscovered { reason: failed.reason, retry_after: failed.retry_after })
    }
}

/// Configures a [`UserinfoLayer`]; from [`UserinfoLayer::builder`] or
/// [`UserinfoLayer::discover`].
#[must_use]
pub struct UserinfoLayerBuilder {
    target: Target,
    limits: Limits,
    max_ttl: Duration,
    cache_capacity: u64,
    policy: FailurePolicy,
    http_client: Option<reqwest::Client>,
}

impl UserinfoLayerBuilder {
    fn new(target: Target) -> Self {
        UserinfoLayerBuilder {
            target,
            limits: Limits { timeout: fetch::DEFAULT_TIMEOUT, max_body: DEFAULT_MAX_BODY_SIZE },
            max_ttl: DEFAULT_MAX_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            policy: FailurePolicy::default(),
            http_client: None,
        }
    }

    /// The longest an answer is reused, whatever the token's `exp`; default 5 min.
    /// `0` fetches on every request.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The bound of the answer cache in bytes; default 16 MiB.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// What a request gets when its userinfo cannot be had; default
    /// [`FailurePolicy::Unavailable`].
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The time limit of one userinfo request (and of discovery); default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The largest response body read; default 64 KiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// The HTTP client for custom roots, mTLS or a proxy. It should not follow
    /// redirects (the default client does not): a redirect would carry the token
    /// elsewhere.
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
    pub fn build(self) -> Result<UserinfoLayer, BuildError> {
        let endpoint = IdpEndpoint::new(self.target, MetadataMember::Userinfo)?;
        let client = client_or_default(self.http_client)?;
        Ok(UserinfoLayer {
            shared: Arc::new(UserinfoState {
                client,
                endpoint,
                limits: self.limits,
                max_ttl: self.max_ttl,
                policy: self.policy,
                cache: AnswerCache::with_capacity(self.cache_capacity),
                requests: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for UserinfoLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target.as_str();
        f.debug_struct("UserinfoLayerBuilder")
            .field("target", &target)
            .field("max_ttl", &self.max_ttl)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "axum")]
mod extract {
    use std::convert::Infallible;

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::UserinfoClaims;

    /// The rejection when no [`UserinfoClaims`] is in the request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct MissingUserinfoClaims;

    impl std::fmt::Display for MissingUserinfoClaims {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "userinfo not found in request extensions; perhaps you forgot to add UserinfoLayer \
                 (inside BearerAuthLayer), or it continues without userinfo on failure and the \
                 handler should take Option<UserinfoClaims>?",
            )
        }
    }

    impl std::error::Error for MissingUserinfoClaims {}

    impl IntoResponse for MissingUserinfoClaims {
        fn into_response(self) -> Response {
            tracing::error!("{self}");
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for UserinfoClaims {
        type Rejection = MissingUserinfoClaims;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<UserinfoClaims>().cloned().ok_or(MissingUserinfoClaims)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for UserinfoClaims {
        type Rejection = Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<UserinfoClaims>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::MissingUserinfoClaims;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_needs_a_string_sub_and_shows_no_personal_data() {
        let user =
            UserinfoClaims::parse(r#"{"sub":"alice","name":"Alice A.","email":"a@example.com","email_verified":true}"#)
                .expect("a userinfo answer");
        assert_eq!((user.subject(), user.name(), user.email_verified()), ("alice", Some("Alice A."), Some(true)));
        assert_eq!(user.get::<String>("email").as_deref(), Some("a@example.com"));
        let debug = format!("{user:?}");
        assert!(!debug.contains("Alice A.") && !debug.contains("a@example.com"), "{debug}");
        for bad in ["[]", "{}", r#"{"sub":7}"#, "<html>"] {
            assert!(UserinfoClaims::parse(bad).is_none(), "{bad}");
        }
    }
}
