use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{Request, Response, header};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::body::ResponseBody;
use super::extract::bearer_token;
use super::future::ResponseFuture;
use super::layer::{BearerAuthLayer, Config};
use super::rejection::{Rejection, ResponseStyle};
use crate::validate::{Attempt, Verified};
use crate::{Claims, Validator};

/// The service [`BearerAuthLayer`] produces: validates the bearer token, puts the
/// claims (`C`) into the request's extensions, and only then calls the inner service.
///
/// A rejected request never reaches the inner service; it resolves to `Ok` with an
/// RFC 6750 response (or a gRPC status for gRPC requests).
pub struct BearerAuth<S, C = Claims> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<C>>,
}

impl<S, C> BearerAuth<S, C> {
    /// Wraps `inner`, validating with `validator` and the default response style.
    pub fn new(inner: S, validator: Validator<C>) -> Self {
        BearerAuth { inner, config: BearerAuthLayer::new(validator).config }
    }

    /// A layer with this validator; see [`BearerAuthLayer`] for its options.
    pub fn layer(validator: Validator<C>) -> BearerAuthLayer<C> {
        BearerAuthLayer::new(validator)
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

impl<S: Clone, C> Clone for BearerAuth<S, C> {
    fn clone(&self) -> Self {
        BearerAuth { inner: self.inner.clone(), config: self.config.clone() }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for BearerAuth<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// A request is gRPC when its content type says so (gRPC over HTTP/2, "Requests").
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let span = tracing::debug_span!(
            "bearer_auth",
            sub = tracing::field::Empty,
            client_id = tracing::field::Empty,
            iss = tracing::field::Empty,
            kid = tracing::field::Empty,
        );
        let found = match bearer_token(request.headers(), request.uri(), config.allow_query) {
            Ok(found) => found,
            Err(rejection) => return reject(rejection, &config.style, is_grpc(&request), &span),
        };
        let token = found.as_str();
        let now = SystemTime::now();

        if let Some(claims) = config.cache.as_ref().and_then(|cache| cache.get(token, now, &span)) {
            crate::telemetry::cache_hit();
            drop(found);
            return self.call_inner(request, claims);
        }
        match config.validator.attempt(token, now, &span) {
            Attempt::Done(Ok(verified)) => {
                let claims = remember(&self.config, token, verified);
                drop(found);
                self.call_inner(request, claims)
            }
            Attempt::Done(Err(error)) => {
                reject(Rejection::from_validation(error), &config.style, is_grpc(&request), &span)
            }
            Attempt::Pending(pending) => {
                // The slow paths: wait for one shared key refresh, or for the
                // introspection endpoint, then call the inner service. Take the service
                // that `poll_ready` readied and leave a clone in its place
                // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
                let token = token.to_owned();
                drop(found);
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let config = self.config.clone();
                ResponseFuture::refreshing(Box::pin(async move {
                    let result = config.validator.settle(&token, pending, None, &span).await;
                    match result {
                        Ok(verified) => {
                            let claims = remember(&config, &token, verified);
                            insert_extensions(&mut request, claims, &config.style);
                            let response = inner.call(request).await?;
                            Ok(response.map(ResponseBody::inner))
                        }
                        Err(error) => {
                            let rejection = Rejection::from_validation(error);
                            tracing::debug!(parent: &span, reason = %rejection, "request rejected");
                            Ok(rejection.into_response(&config.style, is_grpc(&request)))
                        }
                    }
                }))
            }
        }
    }
}

impl<S, C> BearerAuth<S, C>
where
    C: Clone + Send + Sync + 'static,
{
    fn call_inner<ReqBody, ResBody>(
        &mut self,
        mut request: Request<ReqBody>,
        claims: C,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        insert_extensions(&mut request, claims, &self.config.style);
        ResponseFuture::inner(self.inner.call(request))
    }
}

fn remember<C: Clone>(config: &Config<C>, token: &str, verified: Verified<C>) -> C {
    match &config.cache {
        Some(cache) => cache.insert(token, verified),
        None => verified.claims,
    }
}

/// The claims for handlers, and the response style for [`RequireScope`](super::RequireScope).
fn insert_extensions<B, C: Clone + Send + Sync + 'static>(
    request: &mut Request<B>,
    claims: C,
    style: &Arc<ResponseStyle>,
) {
    let extensions = request.extensions_mut();
    extensions.insert(claims);
    // RequireScope words its 403 like this layer; the default style needs no copy.
    if style.realm.is_some() || style.verbose {
        extensions.insert(style.clone());
    }
}

fn reject<F, B, E>(
    rejection: Rejection,
    style: &ResponseStyle,
    grpc: bool,
    span: &tracing::Span,
) -> ResponseFuture<F, B, E> {
    tracing::debug!(parent: span, reason = %rejection, "request rejected");
    ResponseFuture::rejected(rejection.into_response(style, grpc))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use http::{HeaderValue, StatusCode};

    use super::*;
    use crate::validate::pipeline_tests::{ISSUER, sign, token, validator};

    /// An inner service that counts its calls, keeps the subject it saw in the
    /// request's claims, and is ready only when told.
    #[derive(Clone, Default)]
    struct Inner {
        ready: Arc<Mutex<bool>>,
        polls: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        subject: Arc<Mutex<Option<String>>>,
    }

    impl Service<Request<()>> for Inner {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if *self.ready.lock().unwrap() { Poll::Ready(Ok(())) } else { Poll::Pending }
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            *self.subject.lock().unwrap() =
                request.extensions().get::<Claims>().and_then(|c| c.subject().map(Into::into));
            std::future::ready(Ok(Response::new(())))
        }
    }

    fn service() -> (BearerAuth<Inner>, Inner) {
        let inner = Inner::default();
        *inner.ready.lock().unwrap() = true;
        (BearerAuth::new(inner.clone(), validator()), inner)
    }

    fn request(authorization: Option<&str>, grpc: bool) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        if grpc {
            request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        }
        request
    }

    /// Calls the service and polls the response future once: the paths under test
    /// never wait.
    fn respond(svc: &mut BearerAuth<Inner>, request: Request<()>) -> Response<ResponseBody<()>> {
        let mut cx = Context::from_waker(Waker::noop());
        let future = pin!(svc.call(request));
        match future.poll(&mut cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => panic!("the response future is pending"),
        }
    }

    #[test]
    fn poll_ready_is_the_inner_services() {
        let inner = Inner::default();
        let mut svc = BearerAuth::new(inner.clone(), validator());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_pending());
        *inner.ready.lock().unwrap() = true;
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(inner.polls.load(Ordering::SeqCst), 2);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_valid_token_puts_the_claims_into_the_extensions() {
        let (mut svc, inner) = service();
        let response = respond(&mut svc, request(Some(&format!("Bearer {}", token())), false));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(inner.subject.lock().unwrap().as_deref(), Some("alice"));
    }

    #[test]
    fn a_rejected_request_never_reaches_the_inner_service() {
        let (mut svc, inner) = service();
        let missing = respond(&mut svc, request(None, false));
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");

        let forged = token().replace(".", ".A");
        let invalid = respond(&mut svc, request(Some(&format!("Bearer {forged}")), false));
        assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(invalid.headers()[header::WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);

        let other_secret = sign(
            b"fedcba9876543210fedcba9876543210",
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"iss":"{ISSUER}","aud":"api","exp":4102444800}}"#),
        );
        let bad_signature = respond(&mut svc, request(Some(&format!("Bearer {other_secret}")), false));
        assert_eq!(bad_signature.status(), StatusCode::UNAUTHORIZED);

        let two = respond(&mut svc, request(Some("Bearer a b"), false));
        assert_eq!(two.status(), StatusCode::BAD_REQUEST);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn grpc_requests_get_a_grpc_status() {
        let (mut svc, inner) = service();
        let missing = respond(&mut svc, request(None, true));
        assert_eq!(missing.status(), StatusCode::OK);
        assert_eq!(missing.headers()["grpc-status"], "16");
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let invalid = respond(&mut svc, request(Some("Bearer a.b.c"), true));
        assert_eq!((invalid.status(), &invalid.headers()["grpc-status"]), (StatusCode::OK, &HeaderValue::from(16)));
        let malformed = respond(&mut svc, request(Some("Bearer a b"), true));
        assert_eq!(malformed.headers()["grpc-status"], "3");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
        let ok = respond(&mut svc, request(Some(&format!("Bearer {}", token())), true));
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get("grpc-status").is_none());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_that_must_wait_for_keys_takes_the_slow_path_and_may_still_be_refused() {
        let (mut svc, inner) = service();
        let unknown_kid = sign(
            b"0123456789abcdef0123456789abcdef",
            r#"{"alg":"HS256","kid":"rotated"}"#,
            &format!(r#"{{"iss":"{ISSUER}","aud":"api","exp":4102444800}}"#),
        );
        let future = svc.call(request(Some(&format!("Bearer {unknown_kid}")), false));
        assert!(format!("{future:?}").contains("refreshing"));
        let response = future.await.unwrap();
        // A fixed key set has nothing to refresh: the kid stays unknown.
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    }
}
