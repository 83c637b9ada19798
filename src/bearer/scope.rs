//! Per-route scope requirements, answering 403 `insufficient_scope` (RFC 6750 §3.1).

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::rejection::{Rejection, ResponseStyle};
use super::service::is_grpc_headers;
use crate::Claims;

/// Claims that grant scopes. Implement it for your own claims type to use
/// [`RequireScopeLayer`] with it.
pub trait HasScopes {
    /// Whether `scope` is granted.
    fn has_scope(&self, scope: &str) -> bool;
}

impl HasScopes for Claims {
    fn has_scope(&self, scope: &str) -> bool {
        Claims::has_scope(self, scope)
    }
}

/// Requires scopes on the routes it wraps; goes *inside* [`BearerAuthLayer`](super::BearerAuthLayer)
/// (in axum, `route_layer` under a router-wide `layer`).
///
/// A token without every listed scope gets 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`, worded like the
/// bearer layer's own answers. A request that reaches it without validated claims
/// means the bearer layer is missing: that is a 500, never a pass.
#[must_use]
pub struct RequireScopeLayer<C = Claims> {
    required: Arc<str>,
    _claims: PhantomData<fn() -> C>,
}

impl RequireScopeLayer<Claims> {
    /// Requires every scope in `scopes`, read from [`Claims`].
    pub fn new<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        RequireScopeLayer::for_claims(scopes)
    }
}

impl<C> RequireScopeLayer<C> {
    /// Requires every scope in `scopes`, read from the application's claims type `C`
    /// (the one its [`Validator`](crate::Validator) was built with):
    /// `RequireScopeLayer::<MyClaims>::for_claims(["admin"])`.
    pub fn for_claims<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required: Vec<String> = scopes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        RequireScopeLayer { required: required.join(" ").into(), _claims: PhantomData }
    }
}

impl<C> Clone for RequireScopeLayer<C> {
    fn clone(&self) -> Self {
        RequireScopeLayer { required: self.required.clone(), _claims: PhantomData }
    }
}

impl<C> std::fmt::Debug for RequireScopeLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireScopeLayer").field("required", &self.required).finish()
    }
}

impl<S, C> Layer<S> for RequireScopeLayer<C> {
    type Service = RequireScope<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope { inner, required: self.required.clone(), _claims: PhantomData }
    }
}

/// The service of [`RequireScopeLayer`].
pub struct RequireScope<S, C = Claims> {
    inner: S,
    required: Arc<str>,
    _claims: PhantomData<fn() -> C>,
}

impl<S> RequireScope<S, Claims> {
    /// Wraps `inner`, requiring every scope in `scopes`.
    pub fn new<I, T>(inner: S, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        RequireScopeLayer::new(scopes).layer(inner)
    }
}

impl<S, C> RequireScope<S, C> {
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

impl<S: Clone, C> Clone for RequireScope<S, C> {
    fn clone(&self) -> Self {
        RequireScope { inner: self.inner.clone(), required: self.required.clone(), _claims: PhantomData }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for RequireScope<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireScope").field("inner", &self.inner).field("required", &self.required).finish()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: HasScopes + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(claims) = request.extensions().get::<C>() else {
            return ResponseFuture::rejected(wiring_error("RequireScope"));
        };
        if self.required.split(' ').filter(|s| !s.is_empty()).all(|scope| claims.has_scope(scope)) {
            return ResponseFuture::inner(self.inner.call(request), None);
        }
        let rejection = Rejection::InsufficientScope { required: self.required.to_string() };
        tracing::debug!(required = %self.required, "request rejected: insufficient scope");
        ResponseFuture::rejected(reject(&request, rejection))
    }
}

/// The 500 that a per-route check answers when it finds no validated claims: the
/// bearer layer is missing, and the check must not guess, let alone pass.
pub(super) fn wiring_error<ResBody>(who: &str) -> Response<ResponseBody<ResBody>> {
    tracing::error!("{who} found no validated claims; is BearerAuthLayer in front of it?");
    let mut response = Response::new(ResponseBody::rejection(Bytes::new()));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// The answer to a request a per-route check turned away, worded as the bearer layer
/// in front of it words its own (the style it left in the extensions).
pub(super) fn reject<ReqBody, ResBody>(
    request: &Request<ReqBody>,
    rejection: Rejection,
) -> Response<ResponseBody<ResBody>> {
    reject_parts(request.extensions(), request.headers(), rejection)
}

/// [`reject`] from a request's parts, for the extractors.
pub(crate) fn reject_parts<ResBody>(
    extensions: &http::Extensions,
    headers: &http::HeaderMap,
    rejection: Rejection,
) -> Response<ResponseBody<ResBody>> {
    let style = extensions.get::<Arc<ResponseStyle>>().cloned().unwrap_or_default();
    rejection.into_response(&style, is_grpc_headers(headers))
}
