use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response, header};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::body::ResponseBody;
use super::extract::{DPOP_NONCE, Scheme, credentials};
use super::future::ResponseFuture;
use super::layer::{BearerAuthLayer, Config};
use super::rejection::{Rejection, ResponseStyle};
use crate::mtls::ClientCertificate;
use crate::validate::dpop::{CheckedProof, DpopError, DpopVerifier, ReplayError, RequestFacts};
use crate::validate::{Attempt, Binding, Presentation, Verified};
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
    is_grpc_headers(request.headers())
}

pub(crate) fn is_grpc_headers(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
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
        let dpop = config.dpop.as_ref();
        let credentials = match credentials(request.headers(), request.uri(), config.allow_query, dpop.is_some()) {
            Ok(credentials) => credentials,
            Err(rejection) => {
                let style = if matches!(rejection, Rejection::InvalidDpopProof(_)) {
                    &config.dpop_style
                } else {
                    &config.style
                };
                return reject(rejection, style, is_grpc(&request), &span, None);
            }
        };
        let token = credentials.token.as_str();
        let now = SystemTime::now();
        let now_secs = unix_secs(now);

        // RFC 9449 §4.3: the proof is checked before the token, all but its replay,
        // which waits until the token has shown the key is the right one.
        let proof = match (credentials.scheme, dpop, credentials.proof) {
            (Scheme::Dpop, Some(dpop), Some(proof)) => {
                let facts = RequestFacts {
                    method: request.method().as_str(),
                    path: request.uri().path(),
                    access_token: Some(token),
                    now: now_secs,
                };
                match dpop.check(proof, &facts) {
                    Ok(checked) => Some(checked),
                    Err(error) => {
                        crate::telemetry::dpop_proof(if error == DpopError::UseNonce {
                            "use_nonce"
                        } else {
                            "invalid"
                        });
                        let nonce = nonce_header(dpop, now_secs);
                        let rejection = Rejection::InvalidDpopProof(error);
                        return reject(rejection, &config.dpop_style, is_grpc(&request), &span, nonce);
                    }
                }
            }
            _ => None,
        };
        let nonce = proof.as_ref().and_then(|_| nonce_header(dpop?, now_secs));
        let style = if proof.is_some() { &config.dpop_style } else { &config.style };
        let presented = Presentation {
            dpop: proof.as_ref().map(|proof| proof.thumbprint),
            certificate: request.extensions().get::<ClientCertificate>().map(|c| *c.thumbprint()),
        };

        let verified = if let Some(hit) = config.cache.as_ref().and_then(|cache| cache.get(token, now, &span)) {
            crate::telemetry::cache_hit();
            Ok(hit)
        } else {
            match config.validator.attempt_presented(token, now, &span, presented) {
                Attempt::Done(Ok(verified)) => Ok(remember(config, token, verified)),
                Attempt::Done(Err(error)) => {
                    return reject(Rejection::from_validation(error), style, is_grpc(&request), &span, nonce);
                }
                Attempt::Pending(pending) => Err(pending),
            }
        };
        match verified {
            Ok((claims, binding)) => {
                let proven = dpop.zip(proof.as_ref());
                match possession(&binding, proven, presented, now_secs) {
                    Ok(Replay::Done) => {
                        drop(credentials);
                        insert_extensions(&mut request, claims, style);
                        ResponseFuture::inner(self.inner.call(request), nonce)
                    }
                    Ok(Replay::Shared) => {
                        // RFC 9449 §11.1 across replicas: one round trip to the shared
                        // store, then the inner service.
                        let (dpop, proof) = (dpop.cloned(), proof);
                        drop(credentials);
                        let (mut inner, config) = self.take_inner();
                        ResponseFuture::refreshing(Box::pin(async move {
                            let replay = match (&dpop, &proof) {
                                (Some(dpop), Some(proof)) => shared_replay(dpop, proof, now_secs).await,
                                _ => Ok(()),
                            };
                            let style = &config.dpop_style;
                            if let Err(rejection) = replay {
                                tracing::debug!(parent: &span, reason = %rejection, "request rejected");
                                return Ok(respond(rejection, style, is_grpc(&request), nonce));
                            }
                            insert_extensions(&mut request, claims, style);
                            Ok(with_nonce(inner.call(request).await?.map(ResponseBody::inner), nonce))
                        }))
                    }
                    Err(rejection) => reject(rejection, style, is_grpc(&request), &span, nonce),
                }
            }
            Err(pending) => {
                // The slow paths: wait for one shared key refresh, or for the
                // introspection endpoint, then call the inner service.
                let token = token.to_owned();
                let dpop = dpop.cloned();
                drop(credentials);
                let (mut inner, config) = self.take_inner();
                ResponseFuture::refreshing(Box::pin(async move {
                    let result = config.validator.settle(&token, pending, None, &span, presented).await;
                    let style = if proof.is_some() { &config.dpop_style } else { &config.style };
                    let grpc = is_grpc(&request);
                    let (claims, binding) = match result {
                        Ok(verified) => remember(&config, &token, verified),
                        Err(error) => {
                            let rejection = Rejection::from_validation(error);
                            tracing::debug!(parent: &span, reason = %rejection, "request rejected");
                            return Ok(respond(rejection, style, grpc, nonce));
                        }
                    };
                    let proven = dpop.as_ref().zip(proof.as_ref());
                    let checked = match possession(&binding, proven, presented, now_secs) {
                        Ok(Replay::Shared) => match proven {
                            Some((dpop, proof)) => shared_replay(dpop, proof, now_secs).await,
                            None => Ok(()),
                        },
                        Ok(Replay::Done) => Ok(()),
                        Err(rejection) => Err(rejection),
                    };
                    if let Err(rejection) = checked {
                        tracing::debug!(parent: &span, reason = %rejection, "request rejected");
                        return Ok(respond(rejection, style, grpc, nonce));
                    }
                    insert_extensions(&mut request, claims, style);
                    Ok(with_nonce(inner.call(request).await?.map(ResponseBody::inner), nonce))
                }))
            }
        }
    }
}

impl<S, C> BearerAuth<S, C>
where
    C: Clone + Send + Sync + 'static,
{
    /// For an async check: takes the service that `poll_ready` readied and leaves a
    /// clone in its place
    /// (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
    fn take_inner(&mut self) -> (S, Arc<Config<C>>)
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        (std::mem::replace(&mut self.inner, clone), self.config.clone())
    }
}

fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The current DPoP nonce as a header value, when nonces are required.
fn nonce_header(dpop: &DpopVerifier, now: i64) -> Option<HeaderValue> {
    dpop.nonce(now).and_then(|nonce| HeaderValue::from_str(&nonce).ok())
}

/// Whether the replay check is over, or the shared store is still to be asked.
enum Replay {
    Done,
    Shared,
}

/// Proof of possession: the token's binding against the proof's key and the client
/// certificate, and the issuer's DPoP policy (checked again for a cached token: the
/// validator checked a fresh one); then the proof's replay check in this process.
fn possession(
    binding: &Binding,
    proven: Option<(&DpopVerifier, &CheckedProof)>,
    presented: Presentation,
    now: i64,
) -> Result<Replay, Rejection> {
    if proven.is_none() && binding.is_plain() {
        return Ok(Replay::Done);
    }
    binding.check(presented).map_err(Rejection::InvalidToken)?;
    let Some((dpop, proof)) = proven else { return Ok(Replay::Done) };
    let replay = dpop.replay_cache();
    match replay.check_local(&proof.replay_key, proof.expires_at, now) {
        Ok(()) if replay.is_shared() => Ok(Replay::Shared),
        Ok(()) => {
            crate::telemetry::dpop_proof("accepted");
            Ok(Replay::Done)
        }
        Err(error) => Err(replay_rejection(error)),
    }
}

async fn shared_replay(dpop: &DpopVerifier, proof: &CheckedProof, now: i64) -> Result<(), Rejection> {
    dpop.replay_cache().check_shared(&proof.replay_key, proof.expires_at, now).await.map_err(replay_rejection)?;
    crate::telemetry::dpop_proof("accepted");
    Ok(())
}

fn replay_rejection(error: ReplayError) -> Rejection {
    match error {
        ReplayError::Replayed => {
            crate::telemetry::dpop_proof("replayed");
            Rejection::InvalidDpopProof(DpopError::Replayed)
        }
        ReplayError::Unavailable => {
            crate::telemetry::dpop_proof("unavailable");
            Rejection::DependencyUnavailable { what: "the DPoP replay cache", retry_after: None }
        }
    }
}

fn remember<C: Clone>(config: &Config<C>, token: &str, verified: Verified<C>) -> (C, Binding) {
    match &config.cache {
        Some(cache) => cache.insert(token, verified),
        None => (verified.claims, verified.binding),
    }
}

/// The claims for handlers, and the response style for the per-route checks
/// ([`RequireScope`](super::RequireScope), [`StepUp`](super::StepUp), the extractors).
fn insert_extensions<B, C: Clone + Send + Sync + 'static>(
    request: &mut Request<B>,
    claims: C,
    style: &Arc<ResponseStyle>,
) {
    let extensions = request.extensions_mut();
    extensions.insert(claims);
    // For the token exchange layer: this request's token was validated.
    extensions.insert(crate::client::exchange::Authenticated);
    // RequireScope and StepUp word their answers like this layer; the default style needs
    // no copy.
    if !style.is_default() {
        extensions.insert(style.clone());
    }
}

fn with_nonce<B>(mut response: Response<B>, nonce: Option<HeaderValue>) -> Response<B> {
    if let Some(nonce) = nonce {
        response.headers_mut().insert(DPOP_NONCE, nonce);
    }
    response
}

fn respond<B>(
    rejection: Rejection,
    style: &ResponseStyle,
    grpc: bool,
    nonce: Option<HeaderValue>,
) -> Response<ResponseBody<B>> {
    with_nonce(rejection.into_response(style, grpc), nonce)
}

fn reject<F, B, E>(
    rejection: Rejection,
    style: &ResponseStyle,
    grpc: bool,
    span: &tracing::Span,
    nonce: Option<HeaderValue>,
) -> ResponseFuture<F, B, E> {
    tracing::debug!(parent: span, reason = %rejection, "request rejected");
    ResponseFuture::rejected(respond(rejection, style, grpc, nonce))
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
