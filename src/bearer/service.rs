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
