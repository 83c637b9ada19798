use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::TokenCache;
use super::future::{ClientCredentialsFuture, Resend, resend};
use super::layer::{Attach, ClientCredentialsLayer};
use super::retry::{Attempt, is_empty_body, set_token};
use super::target::RequestTarget;

/// The service [`ClientCredentialsLayer`] produces: attaches the cached access token and
/// calls the inner service.
///
/// Errors are boxed: the inner service's error as it is, or a
/// [`TokenError`](super::TokenError) when no token could be had (downcast to tell).
pub struct ClientCredentials<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Attach>,
}

impl<S> ClientCredentials<S> {
    /// Wraps `inner`, with tokens from `cache` and the layer's defaults.
    pub fn new(inner: S, cache: TokenCache) -> Self {
        ClientCredentials { inner, config: ClientCredentialsLayer::new(cache).config }
    }

    /// A layer with tokens from `cache`; see [`ClientCredentialsLayer`] for its options.
    pub fn layer(cache: TokenCache) -> ClientCredentialsLayer {
        ClientCredentialsLayer::new(cache)
    }

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

impl<S: Clone> Clone for ClientCredentials<S> {
    fn clone(&self) -> Self {
        ClientCredentials { inner: self.inner.clone(), config: self.config.clone() }
    }
}

impl<S: fmt::Debug> fmt::Debug for ClientCredentials<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials").field("inner", &self.inner).field("config", &self.config).finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for ClientCredentials<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = ClientCredentialsFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let config = &*self.config;
        if !config.predicate.allows(&RequestTarget::from_http(&request)) {
            return ClientCredentialsFuture::sent(self.inner.call(request), None);
        }
        let cached = {
            let guard = config.cache.load();
            guard
                .as_ref()
                .filter(|token| token.is_valid_at(Instant::now()))
                .map(|token| (token.header_value().clone(), token.generation()))
        };
        match cached {
            Some((header, generation)) => {
                let (request, head) = attach(request, header, config.retry);
                let replay = head.map(|head| Resend::new(self.inner.clone(), head));
                let attempt = Attempt::new(config.cache.clone(), generation, replay);
                ClientCredentialsFuture::sent(self.inner.call(request), Some(attempt))
            }
            None => {
                // The cold path: wait for the cache's one fetch, then call. Take the
                // service that `poll_ready` readied and leave a clone in its place
                // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let config = self.config.clone();
                ClientCredentialsFuture::boxed(Box::pin(async move {
                    let token = config.cache.token().await?;
                    let (request, head) = attach(request, token.header_value().clone(), config.retry);
                    let response = inner.call(request).await.map_err(Into::into)?;
                    let replay = head.map(|head| Resend::new(inner, head));
                    let attempt = Attempt::new(config.cache.clone(), token.generation(), replay);
                    match attempt.judge(response.status(), response.headers()) {
                        Some(retry) => resend(retry, response).await,
                        None => Ok(response),
                    }
                }))
            }
        }
    }
}

/// Sets the token, and copies the request head for a replay when retries are on and
/// the body is known to be empty (so `B::default()` rebuilds it exactly).
#[inline]
fn attach<B: Body>(
    mut request: Request<B>,
    header: HeaderValue,
    retry: bool,
) -> (Request<B>, Option<http::request::Parts>) {
    if !(retry && is_empty_body(request.body())) {
        set_token(request.headers_mut(), header);
        return (request, None);
    }
    let (mut parts, body) = request.into_parts();
    let copy = parts.clone();
    set_token(&mut parts.headers, header);
    (Request::from_parts(parts, body), Some(copy))
}
