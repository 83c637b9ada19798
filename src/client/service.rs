use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{ClientCredentialsFuture, HeadCopy, Resend, resend};
use super::layer::{Attach, ClientCredentialsLayer};
use super::retry::{Attempt, DpopTarget, dpop_proof, is_empty_body, set_token};
use super::target::RequestTarget;
use super::{DpopKey, TokenCache, TokenError};

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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = &*self.config;
        if !config.predicate.allows(&RequestTarget::from_http(&request)) {
            return ClientCredentialsFuture::sent(self.inner.call(request), None);
        }
        // A request on a caller's behalf carries the token exchanged for the caller's
        // (`TokenExchangeLayer`): it goes instead of the service's own, once.
        if let Some(exchanged) = request.extensions().get::<super::ExchangedToken>() {
            let header = exchanged.header_value().clone();
            request.headers_mut().entry(http::header::AUTHORIZATION).or_insert(header);
            return ClientCredentialsFuture::sent(self.inner.call(request), None);
        }
        let cached = {
            let guard = config.cache.load();
            guard
                .as_ref()
                .filter(|token| token.is_valid_at(Instant::now()))
                .map(|token| (token.header_value().clone(), token.generation(), token.dpop_key().cloned()))
        };
        match cached {
            Some((header, generation, dpop)) => {
                let (request, head, dpop) = match attach(request, header, dpop.as_ref(), config.retry) {
                    Ok(attached) => attached,
                    Err(error) => return ClientCredentialsFuture::boxed(Box::pin(async move { Err(error.into()) })),
                };
                let replay = head.map(|head| Resend::new(self.inner.clone(), head));
                let attempt = Attempt::new(config.cache.clone(), generation, replay).with_dpop(dpop);
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
                    let (request, head, dpop) =
                        attach(request, token.header_value().clone(), token.dpop_key(), config.retry)?;
                    let response = inner.call(request).await.map_err(Into::into)?;
                    let replay = head.map(|head| Resend::new(inner, head));
                    let attempt = Attempt::new(config.cache.clone(), token.generation(), replay).with_dpop(dpop);
                    match attempt.judge(response.status(), response.headers()) {
                        Some(retry) => resend(retry, response).await,
                        None => Ok(response),
                    }
                }))
            }
        }
    }
}

/// A request with its token, the copy of its head kept for a replay, and where its DPoP
/// proof went.
type Attached<B> = (Request<B>, Option<HeadCopy>, Option<DpopTarget>);

/// Sets the token (with a DPoP proof for a DPoP token), and copies the request head for
/// a replay when retries are on and the body is known to be empty (so `B::default()`
/// rebuilds it exactly).
#[inline]
fn attach<B: Body>(
    mut request: Request<B>,
    header: HeaderValue,
    dpop: Option<&DpopKey>,
    retry: bool,
) -> Result<Attached<B>, TokenError> {
    let copy = (retry && is_empty_body(request.body())).then(|| HeadCopy::of(&request));
    let target = match dpop {
        Some(key) => {
            let proof = dpop_proof(key, request.method(), request.uri(), &header)?;
            request.headers_mut().insert(http::header::HeaderName::from_static("dpop"), proof);
            DpopTarget::new(key, request.uri())
        }
        None => None,
    };
    set_token(request.headers_mut(), header);
    Ok((request, copy, target))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::{Empty, Full};
    use tower_layer::Layer as _;

    use super::*;
    use crate::client::retry::tests::{Numbered, proof_claims, until_generation, warm_cache, warm_dpop_cache};

    /// Answers with the queued answers, then 200; records each request's
    /// `Authorization` and `accept` headers.
    #[derive(Clone, Default)]
    struct Scripted {
        answers: Arc<Mutex<VecDeque<Response<()>>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// A request's `Authorization`, `accept` and `DPoP` headers.
    type Seen = [Option<String>; 3];

    impl Scripted {
        fn answering(answers: impl IntoIterator<Item = Response<()>>) -> Scripted {
            let scripted = Scripted::default();
            scripted.answers.lock().unwrap().extend(answers);
            scripted
        }

        fn authorizations(&self) -> Vec<String> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .map(|[authorization, _, _]| authorization.clone().unwrap_or_default())
                .collect()
        }
    }

    impl<B> Service<Request<B>> for Scripted {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<B>) -> Self::Future {
            let header =
                |name| request.headers().get(name).map(|value: &HeaderValue| value.to_str().unwrap().to_owned());
            self.seen.lock().unwrap().push([header("authorization"), header("accept"), header("dpop")]);
            ready(Ok(self.answers.lock().unwrap().pop_front().unwrap_or_else(|| answer(200))))
        }
    }

    fn answer(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    fn grpc_unauthenticated() -> Response<()> {
        Response::builder().header("content-type", "application/grpc").header("grpc-status", "16").body(()).unwrap()
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::get("https://api.example/v1/orders").header("accept", "application/json").body(Empty::new()).unwrap()
    }

    async fn send<B>(service: &mut ClientCredentials<Scripted>, request: Request<B>) -> StatusCode
    where
        B: Body + Default + Send + 'static,
    {
        std::future::poll_fn(|cx| Service::<Request<B>>::poll_ready(service, cx)).await.unwrap();
        service.call(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_dpop_token_gets_a_proof_per_request_and_a_nonce_retry_keeps_the_head() {
        let (cache, _) = warm_dpop_cache().await;
        let nonce = Response::builder()
            .status(401)
            .header("www-authenticate", r#"DPoP error="use_dpop_nonce""#)
            .header("dpop-nonce", "n-7")
            .body(())
            .unwrap();
        let api = Scripted::answering([nonce]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::OK);
        assert_eq!(api.authorizations(), ["DPoP dpop-1", "DPoP dpop-1"]);
        let seen = api.seen.lock().unwrap().clone();
        assert_eq!(seen[1][1].as_deref(), Some("application/json"));
        let (first, retried) =
            (proof_claims(seen[0][2].as_deref().unwrap()), proof_claims(seen[1][2].as_deref().unwrap()));
        assert_eq!(
            (first["htm"].as_str(), first["htu"].as_str()),
            (Some("GET"), Some("https://api.example/v1/orders"))
        );
        assert_eq!(retried["nonce"], "n-7");
        assert_ne!(first["jti"], retried["jti"]);
        assert_eq!(cache.fetch_attempts(), 1, "the same token");
    }

    #[tokio::test]
    async fn a_401_is_retried_once_and_the_retry_carries_the_new_token_and_the_same_head() {
        let cache = warm_cache().await;
        let api = Scripted::answering([answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::OK);
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"]);
        assert_eq!(api.seen.lock().unwrap()[1][1].as_deref(), Some("application/json"));
        assert_eq!(cache.fetch_attempts(), 2);
    }

    #[tokio::test]
    async fn a_second_401_is_the_answer() {
        let cache = warm_cache().await;
        let api = Scripted::answering([answer(401), answer(401), answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"], "replayed once, not twice");
        assert_eq!(cache.fetch_attempts(), 2);
    }

    #[tokio::test]
    async fn a_cold_cache_retries_the_same_way() {
        let cache = TokenCache::new(Numbered::new()).unwrap();
        let api = Scripted::answering([answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::OK);
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"]);
    }

    #[tokio::test]
    async fn a_request_with_a_body_is_not_replayed_but_the_cache_refreshes() {
        let cache = warm_cache().await;
        let api = Scripted::answering([answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        let post = Request::post("https://api.example/v1/orders").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(send(&mut service, post).await, StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Bearer token-1"]);
        until_generation(&cache, 2).await;
    }

    #[tokio::test]
    async fn with_retries_off_a_401_is_the_answer_and_the_cache_refreshes() {
        let cache = warm_cache().await;
        let api = Scripted::answering([answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).retry_on_unauthorized(false).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Bearer token-1"]);
        until_generation(&cache, 2).await;
    }

    #[tokio::test]
    async fn a_grpc_unauthenticated_is_not_replayed_but_the_cache_refreshes() {
        let cache = warm_cache().await;
        let api = Scripted::answering([grpc_unauthenticated()]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).layer(api.clone());
        assert_eq!(send(&mut service, get()).await, StatusCode::OK);
        assert_eq!(api.authorizations(), ["Bearer token-1"]);
        until_generation(&cache, 2).await;
        assert_eq!(send(&mut service, get()).await, StatusCode::OK);
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"], "the next request has the new token");
    }

    #[tokio::test]
    async fn an_existing_authorization_header_is_never_overwritten_nor_retried() {
        let cache = warm_cache().await;
        let api = Scripted::answering([answer(401)]);
        let mut service = ClientCredentialsLayer::new(cache.clone()).attach_if(|_| true).layer(api.clone());
        let mut request = get();
        request.headers_mut().insert("authorization", HeaderValue::from_static("Basic bWU6cHc="));
        assert_eq!(send(&mut service, request).await, StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Basic bWU6cHc="]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.fetch_attempts(), 1, "not the cache's token: nothing to refresh");
    }
}
