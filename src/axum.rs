//! axum 0.8 extractors for the claims [`BearerAuthLayer`](crate::BearerAuthLayer) validated.
//!
//! - [`Claims`] is an extractor itself; `Option<Claims>` for routes where a token is
//!   optional (put such routes behind no bearer layer, or behind one of their own).
//! - [`Authenticated<C>`] does the same for your own claims type.
//! - [`SteppedUp<P>`] also holds them to a route's step-up requirement (RFC 9470).
//!
//! Extracting claims from a request the layer never saw is a wiring bug, so the
//! rejection is a 500 that says so, never a 401.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use serde::Deserialize;
//! use tower_oauth::axum::Authenticated;
//! use tower_oauth::{BearerAuthLayer, Claims, Validator};
//!
//! #[derive(Clone, Deserialize)]
//! struct MyClaims {
//!     sub: String,
//!     tenant: String,
//! }
//!
//! async fn me(claims: Claims) -> String {
//!     format!("hello {}", claims.subject().unwrap_or("?"))
//! }
//!
//! async fn tenant(Authenticated(claims): Authenticated<MyClaims>) -> String {
//!     format!("{} of {}", claims.sub, claims.tenant)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let validator = Validator::builder().issuer("https://idp.example").audience("api").build()?;
//! let tenant_validator = Validator::builder()
//!     .issuer("https://idp.example")
//!     .audience("api")
//!     .claims::<MyClaims>()
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(BearerAuthLayer::new(validator))
//!     .merge(Router::new().route("/tenant", get(tenant)).layer(BearerAuthLayer::new(tenant_validator)));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::marker::PhantomData;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Claims;
use crate::bearer::scope::reject_parts;
use crate::bearer::{HasAuthentication, StepUpRequirement};

/// Extracts validated claims of type `C` (any type the validator was built with).
#[derive(Debug, Clone)]
pub struct Authenticated<C>(pub C);

/// The rejection when no validated claims are in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingClaims;

impl std::fmt::Display for MissingClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "validated claims not found in request extensions; \
             perhaps you forgot to add BearerAuthLayer, or it was built for another claims type?",
        )
    }
}

impl std::error::Error for MissingClaims {}

impl IntoResponse for MissingClaims {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Claims>().cloned().ok_or(MissingClaims)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Claims>().cloned())
    }
}

impl<S, C> FromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<C>().cloned().map(Authenticated).ok_or(MissingClaims)
    }
}

impl<S, C> OptionalFromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<C>().cloned().map(Authenticated))
    }
}

/// A route's step-up requirement (RFC 9470), for the [`SteppedUp`] extractor.
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use tower_oauth::axum::{StepUpPolicy, SteppedUp};
/// use tower_oauth::bearer::StepUpRequirement;
///
/// struct RecentMfa;
///
/// impl StepUpPolicy for RecentMfa {
///     fn requirement() -> &'static StepUpRequirement {
///         static REQUIREMENT: LazyLock<StepUpRequirement> = LazyLock::new(|| {
///             StepUpRequirement::new().acr_values(["urn:example:mfa"]).max_age(Duration::from_secs(300))
///         });
///         &REQUIREMENT
///     }
/// }
///
/// async fn transfer(SteppedUp(claims, _): SteppedUp<RecentMfa>) -> String {
///     format!("transfer by {}", claims.subject().unwrap_or("?"))
/// }
/// ```
pub trait StepUpPolicy: Send + Sync + 'static {
    /// What the route requires; a `static` (a `LazyLock` for one read at run time).
    fn requirement() -> &'static StepUpRequirement;
}

/// Extracts validated claims that meet `P`'s [`StepUpRequirement`]; the handler's own
/// [`StepUpLayer`](crate::bearer::StepUpLayer).
///
/// A token that falls short gets the same 401 `insufficient_user_authentication` the
/// layer answers, worded by the bearer layer in front (its realm, `resource_metadata`,
/// and gRPC form). Without validated claims it is the [`MissingClaims`] 500.
pub struct SteppedUp<P, C = Claims>(pub C, pub PhantomData<fn() -> P>);

impl<P, C: std::fmt::Debug> std::fmt::Debug for SteppedUp<P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SteppedUp").field(&self.0).finish()
    }
}

/// The rejection of [`SteppedUp`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StepUpRejection {
    /// No validated claims: the bearer layer is missing (500).
    MissingClaims(MissingClaims),
    /// The token falls short (401), answered as the bearer layer answers.
    Insufficient(Response),
}

impl IntoResponse for StepUpRejection {
    fn into_response(self) -> Response {
        match self {
            StepUpRejection::MissingClaims(missing) => missing.into_response(),
            StepUpRejection::Insufficient(response) => response,
        }
    }
}

impl<S, P, C> FromRequestParts<S> for SteppedUp<P, C>
where
    S: Send + Sync,
    P: StepUpPolicy,
    C: HasAuthentication + Clone + Send + Sync + 'static,
{
    type Rejection = StepUpRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let claims = parts.extensions.get::<C>().ok_or(StepUpRejection::MissingClaims(MissingClaims))?;
        match P::requirement().check(claims) {
            Ok(()) => Ok(SteppedUp(claims.clone(), PhantomData)),
            Err(rejection) => {
                let response = reject_parts::<axum_core::body::Body>(&parts.extensions, &parts.headers, rejection);
                Err(StepUpRejection::Insufficient(response.map(axum_core::body::Body::new)))
            }
        }
    }
}
