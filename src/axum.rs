//! axum 0.8 extractors for the claims [`BearerAuthLayer`](crate::BearerAuthLayer) validated.
//!
//! - [`Claims`] is an extractor itself; `Option<Claims>` for routes where a token is
//!   optional (put such routes behind no bearer layer, or behind one of their own).
//! - [`Authenticated<C>`] does the same for your own claims type.
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

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Claims;

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
