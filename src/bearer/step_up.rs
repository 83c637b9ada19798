//! Per-route step-up (RFC 9470): the layer that holds requests to a
//! [`StepUpRequirement`], answering 401 `insufficient_user_authentication`.

use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::rejection::Rejection;
use super::requirement::{HasAuthentication, Shortfall, StepUpRequirement};
use super::scope::{reject, wiring_error};
use crate::Claims;

impl StepUpRequirement {
    /// Checks `claims` now; the [`Rejection`] is the 401 to answer with.
    ///
    /// Counted in `tower_oauth_step_up_checks_total` (feature `metrics`).
    pub fn check<C: HasAuthentication>(&self, claims: &C) -> Result<(), Rejection> {
        let shortfall = self.shortfall_at(claims, crate::signing::now_secs());
        crate::telemetry::step_up(match shortfall {
            None => "met",
            Some(Shortfall::Acr) => "acr",
            Some(Shortfall::MaxAge) => "max_age",
        });
        self.answer(shortfall)
    }

    /// Checks `claims` as of `now` (seconds since the epoch).
    ///
    /// An `auth_time` in the future (clock skew) counts as now.
    pub fn check_at<C: HasAuthentication>(&self, claims: &C, now: i64) -> Result<(), Rejection> {
        self.answer(self.shortfall_at(claims, now))
    }

    fn answer(&self, shortfall: Option<Shortfall>) -> Result<(), Rejection> {
        match shortfall {
            None => Ok(()),
            Some(shortfall) => Err(Rejection::InsufficientUserAuthentication { requirement: self.clone(), shortfall }),
        }
    }
}

/// Requires a step-up ([`StepUpRequirement`]) on the routes it wraps; goes *inside*
/// [`BearerAuthLayer`](super::BearerAuthLayer), next to
/// [`RequireScopeLayer`](super::RequireScopeLayer).
///
/// A token that falls short gets 401 with
/// `WWW-Authenticate: Bearer error="insufficient_user_authentication"` and the
/// `acr_values` and `max_age` to authenticate with (a gRPC request: `grpc-status` 16
/// and the same header). Introspected tokens are held to the same rule, on the `acr`
/// and `auth_time` of the introspection answer. A request that reaches it without
/// validated claims means the bearer layer is missing: that is a 500, never a pass.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use tower_oauth::bearer::{BearerAuthLayer, StepUpLayer, StepUpRequirement};
/// # fn app(validator: tower_oauth::Validator) -> Router {
/// Router::new()
///     .route("/admin", get(|| async { "admin" }))
///     .route_layer(StepUpLayer::new(
///         StepUpRequirement::new().acr_values(["urn:example:mfa"]).max_age(Duration::from_secs(300)),
///     ))
///     .layer(BearerAuthLayer::new(validator))
/// # }
/// ```
#[must_use]
pub struct StepUpLayer<C = Claims> {
    requirement: StepUpRequirement,
    _claims: PhantomData<fn() -> C>,
}

impl StepUpLayer<Claims> {
    /// Requires `requirement`, read from [`Claims`].
    pub fn new(requirement: StepUpRequirement) -> Self {
        StepUpLayer::for_claims(requirement)
    }
}

impl<C> StepUpLayer<C> {
    /// Requires `requirement`, read from the application's claims type `C`.
    pub fn for_claims(requirement: StepUpRequirement) -> Self {
        StepUpLayer { requirement, _claims: PhantomData }
    }
}

impl<C> Clone for StepUpLayer<C> {
    fn clone(&self) -> Self {
        StepUpLayer { requirement: self.requirement.clone(), _claims: PhantomData }
    }
}

impl<C> std::fmt::Debug for StepUpLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpLayer").field("requirement", &self.requirement).finish()
    }
}

impl<S, C> Layer<S> for StepUpLayer<C> {
    type Service = StepUp<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        StepUp { inner, requirement: self.requirement.clone(), _claims: PhantomData }
    }
}

/// The service of [`StepUpLayer`].
pub struct StepUp<S, C = Claims> {
    inner: S,
    requirement: StepUpRequirement,
    _claims: PhantomData<fn() -> C>,
}

impl<S, C> StepUp<S, C> {
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

impl<S: Clone, C> Clone for StepUp<S, C> {
    fn clone(&self) -> Self {
        StepUp { inner: self.inner.clone(), requirement: self.requirement.clone(), _claims: PhantomData }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for StepUp<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUp").field("inner", &self.inner).field("requirement", &self.requirement).finish()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for StepUp<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: HasAuthentication + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(claims) = request.extensions().get::<C>() else {
            return ResponseFuture::rejected(wiring_error("StepUp"));
        };
        match self.requirement.check(claims) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request), None),
            Err(rejection) => {
                tracing::debug!(requirement = ?self.requirement, "request rejected: insufficient user authentication");
                ResponseFuture::rejected(reject(&request, rejection))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Auth(Option<&'static str>, Option<i64>);

    impl HasAuthentication for Auth {
        fn acr(&self) -> Option<&str> {
            self.0
        }
        fn auth_time(&self) -> Option<i64> {
            self.1
        }
    }

    fn shortfall(requirement: &StepUpRequirement, claims: Auth) -> Option<Shortfall> {
        match requirement.check_at(&claims, 10_000) {
            Ok(()) => None,
            Err(Rejection::InsufficientUserAuthentication { shortfall, .. }) => Some(shortfall),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn acr_must_be_one_of_the_values_and_present() {
        let gold = StepUpRequirement::new().acr_values(["gold", "platinum"]);
        assert_eq!(shortfall(&gold, Auth(Some("gold"), None)), None);
        assert_eq!(shortfall(&gold, Auth(Some("platinum"), None)), None);
        assert_eq!(shortfall(&gold, Auth(Some("Gold"), None)), Some(Shortfall::Acr));
        assert_eq!(shortfall(&gold, Auth(Some("silver"), None)), Some(Shortfall::Acr));
        assert_eq!(shortfall(&gold, Auth(None, Some(10_000))), Some(Shortfall::Acr));
    }

    #[test]
    fn max_age_needs_a_recent_enough_auth_time() {
        let recent = StepUpRequirement::new().max_age(Duration::from_secs(300));
        assert_eq!(shortfall(&recent, Auth(None, Some(9_700))), None);
        assert_eq!(shortfall(&recent, Auth(None, Some(9_699))), Some(Shortfall::MaxAge));
        assert_eq!(shortfall(&recent, Auth(None, Some(20_000))), None, "a future auth_time counts as now");
        assert_eq!(shortfall(&recent, Auth(Some("gold"), None)), Some(Shortfall::MaxAge));
        assert_eq!(shortfall(&recent, Auth(None, Some(i64::MIN))), Some(Shortfall::MaxAge));
        let zero = StepUpRequirement::new().max_age(Duration::ZERO);
        assert_eq!(shortfall(&zero, Auth(None, Some(10_000))), None);
        assert_eq!(shortfall(&zero, Auth(None, Some(9_999))), Some(Shortfall::MaxAge));
    }

    #[test]
    fn the_acr_shortfall_is_named_first_and_nothing_required_passes_all() {
        let both = StepUpRequirement::new().acr_values(["gold"]).max_age(Duration::from_secs(60));
        assert_eq!(shortfall(&both, Auth(Some("silver"), Some(0))), Some(Shortfall::Acr));
        assert_eq!(shortfall(&both, Auth(Some("gold"), Some(0))), Some(Shortfall::MaxAge));
        assert_eq!(shortfall(&both, Auth(Some("gold"), Some(9_950))), None);
        assert!(StepUpRequirement::new().is_empty());
        assert_eq!(shortfall(&StepUpRequirement::new(), Auth(None, None)), None);
    }

    #[test]
    fn odd_values_still_require_an_exact_match() {
        let odd = StepUpRequirement::new().acr_values(["two words"]);
        assert_eq!(shortfall(&odd, Auth(Some("two"), None)), Some(Shortfall::Acr));
        assert_eq!(shortfall(&odd, Auth(Some("two words"), None)), None);
        assert_eq!(StepUpRequirement::new().acr_values(Vec::<String>::new()).acr_values_param(), None);
    }
}
