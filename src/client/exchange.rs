//! Token exchange for each caller (RFC 8693): a service behind [`BearerAuthLayer`]
//! calls downstream APIs on the caller's behalf with a token of its own, never with the
//! caller's.
//!
//! [`TokenExchangeLayer`] goes after [`BearerAuthLayer`](crate::bearer::BearerAuthLayer).
//! For each request that layer let through, it exchanges the caller's access token at
//! a [`TokenEndpoint`] for a token aimed at the endpoint's target (its `audience`,
//! `resource` and `scope`), and puts it in the request's extensions as an
//! [`ExchangedToken`] for the handler's outbound calls:
//!
//! - exchanged tokens are cached per subject token (by its SHA-256, never the token)
//!   until 30 s before they expire (or half their lifetime, if shorter), in a cache
//!   bounded in bytes;
//! - one exchange per subject token at a time: concurrent requests with the same token
//!   wait for the one exchange and share its outcome;
//! - a refusal (`invalid_grant`, `invalid_target`, …) is remembered for a few seconds,
//!   so a client that retries cannot turn into a storm of exchanges; the request is
//!   answered `403`. A failure that may pass (a timeout, a 5xx, a rate limit) is not
//!   remembered, and the request is answered `503` with `Retry-After` when known;
//! - the caller's token is never forwarded: the layer does not change the request's
//!   headers, and the handler attaches the [`ExchangedToken`] to what it sends, by its
//!   [`header_value`](ExchangedToken::header_value), or as an extension of the outbound
//!   request that [`ClientCredentialsLayer`](super::ClientCredentialsLayer) and the
//!   reqwest middleware send instead of their own token
//!   (`reqwest_middleware::RequestBuilder::with_extension(token)`);
//! - a request that did not pass [`BearerAuthLayer`] is not exchanged: it goes on
//!   without an [`ExchangedToken`], which the axum extractor reports as a `500`.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_oauth::bearer::BearerAuthLayer;
//! use tower_oauth::client::{ExchangedToken, TokenEndpoint, TokenExchangeLayer};
//! # use tower_oauth::Validator;
//!
//! # fn app(validator: Validator) -> Result<Router, tower_oauth::BuildError> {
//! let exchange = TokenEndpoint::discover("https://idp.example", "gateway", "s3cret")
//!     .audience("https://orders.example")
//!     .build()?;
//! let app = Router::new()
//!     .route("/orders", get(|token: ExchangedToken| async move {
//!         let client = reqwest::Client::new();
//!         // The exchanged token, never the caller's:
//!         let sent = client.get("https://orders.example/v1").header(http::header::AUTHORIZATION, token.header_value());
//!         # let _ = sent;
//!     }))
//!     .layer(TokenExchangeLayer::new(exchange))
//!     .layer(BearerAuthLayer::new(validator));
//! # Ok(app) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use super::grant::TokenExchange;
use super::{AccessToken, TokenEndpoint, TokenError};
use crate::idp::answers::{Answer, AnswerCache};

/// The default bound of the cache of exchanged tokens, in bytes.
pub const DEFAULT_EXCHANGE_CACHE_CAPACITY: u64 = 4 * 1024 * 1024;
/// How long before its expiry an exchanged token stops being handed out (at most half
/// its lifetime).
const EARLY: Duration = Duration::from_secs(30);
/// How long a refused exchange is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// The lifetime assumed for an exchanged token whose response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// A token obtained by exchanging the caller's (RFC 8693), in the request's extensions
/// for the handler's outbound calls. Cheap to clone; `Debug` does not show the token.
#[derive(Clone)]
pub struct ExchangedToken(AccessToken);

impl ExchangedToken {
    pub(crate) fn new(token: AccessToken) -> ExchangedToken {
        ExchangedToken(token)
    }

    /// The `Authorization` value to send (`Bearer …`), marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        self.0.header_value()
    }

    /// The token itself. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The token, with its lifetime and scope.
    pub fn access_token(&self) -> &AccessToken {
        &self.0
    }
}

impl fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExchangedToken").field(&self.0).finish()
    }
}

/// Marks a request that [`BearerAuthLayer`](crate::bearer::BearerAuthLayer) let through.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated;

/// Exchanges each authenticated caller's token (RFC 8693) for one aimed at the
/// [`TokenEndpoint`]'s target, and hands it to the handler as an [`ExchangedToken`].
///
/// Place it after [`BearerAuthLayer`](crate::bearer::BearerAuthLayer): only requests that
/// layer let through are exchanged. One exchange runs per subject token at a time; the
/// result is cached by the token's SHA-256 (bounded) until 30 s before it expires (at
/// most half its lifetime less). A refusal is remembered for 5 s and answered `403`; a
/// failure that may pass is answered `503`, with `Retry-After` when known. The caller's
/// token is never forwarded.
#[derive(Clone)]
pub struct TokenExchangeLayer {
    exchanger: Arc<Exchanger>,
}

struct Exchanger {
    endpoint: TokenEndpoint,
    cache: AnswerCache<Result<ExchangedToken, TokenError>>,
}

impl TokenExchangeLayer {
    /// Exchanges at `endpoint` (its credentials, target and scope; its own grant is not
    /// used), with a cache of [`DEFAULT_EXCHANGE_CACHE_CAPACITY`].
    pub fn new(endpoint: TokenEndpoint) -> TokenExchangeLayer {
        TokenExchangeLayer::with_capacity(endpoint, DEFAULT_EXCHANGE_CACHE_CAPACITY)
    }

    /// Like [`new`](Self::new), with the cache bounded to `bytes`.
    pub fn with_capacity(endpoint: TokenEndpoint, bytes: u64) -> TokenExchangeLayer {
        TokenExchangeLayer { exchanger: Arc::new(Exchanger { endpoint, cache: AnswerCache::with_capacity(bytes) }) }
    }

    /// Exchanges `subject_token` now, or returns the cached token (or refusal) for it:
    /// what the layer does for each request, for callers outside a Tower stack.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] of the exchange.
    pub async fn exchange(&self, subject_token: &str) -> Result<ExchangedToken, TokenError> {
        self.exchanger.exchange(subject_token).await
    }
}

impl fmt::Debug for TokenExchangeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeLayer").field("endpoint", &self.exchanger.endpoint).finish_non_exhaustive()
    }
}

impl Exchanger {
    async fn exchange(&self, subject_token: &str) -> Result<ExchangedToken, TokenError> {
        self.cache
            .get_or_fetch(subject_token, || async {
                let started = Instant::now();
                let result = self.endpoint.exchange(&TokenExchange::access_token(subject_token)).await;
                let value = result.and_then(|response| {
                    let (token, expires_in, _, scope) = response.into_parts();
                    let lifetime = expires_in.unwrap_or(DEFAULT_LIFETIME);
                    AccessToken::new(&token, started, lifetime, scope, 1, None)
                        .map(ExchangedToken::new)
                        .ok_or(TokenError::InvalidResponse(super::InvalidResponse::MalformedAccessToken))
                });
                let ttl = match &value {
                    // A short-lived token is kept for half its life rather than not at all.
                    Ok(token) => token.0.lifetime().saturating_sub(EARLY.min(token.0.lifetime() / 2)),
                    Err(error) if error.is_transient() => Duration::ZERO,
                    Err(_) => REFUSAL_TTL,
                };
                let weight = value.as_ref().map_or(64, |token| token.expose().len() as u64 + 64);
                Answer { value, ttl, weight }
            })
            .await
    }
}

impl<S> Layer<S> for TokenExchangeLayer {
    type Service = TokenExchangeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenExchangeService { inner, exchanger: Arc::clone(&self.exchanger) }
    }
}

/// The service of [`TokenExchangeLayer`].
#[derive(Clone)]
pub struct TokenExchangeService<S> {
    inner: S,
    exchanger: Arc<Exchanger>,
}

impl<S> TokenExchangeService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for TokenExchangeService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for TokenExchangeService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResBody: Default + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The inner service was made ready; a clone may not be
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let subject = request
            .extensions()
            .get::<Authenticated>()
            .and_then(|_| subject_token(request.headers().get(header::AUTHORIZATION)?));
        let Some(subject) = subject else {
            return Box::pin(inner.call(request));
        };
        let exchanger = Arc::clone(&self.exchanger);
        Box::pin(async move {
            match exchanger.exchange(&subject).await {
                Ok(token) => {
                    request.extensions_mut().insert(token);
                    inner.call(request).await
                }
                Err(error) => Ok(refusal(&error)),
            }
        })
    }
}

/// The token of an `Authorization: Bearer …` or `DPoP …` header.
fn subject_token(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
        .then(|| token.trim_start_matches(' ').to_owned())
        .filter(|token| !token.is_empty())
}

/// The answer to a request whose token could not be exchanged: `503` (with
/// `Retry-After` when known) for a failure that may pass, `403` for a refusal. Neither
/// says why; the reason is logged.
fn refusal<B: Default>(error: &TokenError) -> Response<B> {
    let mut response = Response::new(B::default());
    if error.is_transient() {
        tracing::warn!(%error, "token exchange unavailable");
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        if let Some(wait) = error.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
    } else {
        tracing::warn!(%error, "token exchange refused");
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

/// The rejection when no exchanged token is in the request.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingExchangedToken;

#[cfg(feature = "axum")]
impl fmt::Display for MissingExchangedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no exchanged token in request extensions; perhaps you forgot TokenExchangeLayer, \
             or BearerAuthLayer before it?",
        )
    }
}

#[cfg(feature = "axum")]
impl std::error::Error for MissingExchangedToken {}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for MissingExchangedToken {
    fn into_response(self) -> axum_core::response::Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for ExchangedToken {
    type Rejection = MissingExchangedToken;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ExchangedToken>().cloned().ok_or(MissingExchangedToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_the_token_of_a_bearer_or_dpop_header() {
        let token = |v: &str| subject_token(&HeaderValue::from_str(v).unwrap());
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer  abc").as_deref(), Some("abc"));
        assert_eq!(token("DPoP abc").as_deref(), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
    }

    #[test]
    fn a_refusal_is_403_and_an_outage_503_with_retry_after() {
        let refused: Response<()> = refusal(&TokenError::Forbidden);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let down: Response<()> = refusal(&TokenError::RateLimited { retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.headers()[header::RETRY_AFTER], "7");
    }
}
