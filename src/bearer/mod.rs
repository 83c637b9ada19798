//! `BearerAuthLayer`: the inbound middleware of a resource server.
//!
//! For each request it:
//! 1. finds the bearer token (RFC 6750 §2.1: one `Authorization: Bearer …` header, the
//!    scheme case-insensitive; the `access_token` query parameter only when enabled);
//! 2. validates it with a [`Validator`](crate::Validator) (a token whose `kid` is new
//!    waits for one shared key refresh instead of failing; a token to be introspected
//!    is served at once from a kept answer, or waits for the introspection endpoint);
//! 3. puts the claims into the request's extensions and calls the inner service.
//!
//! Otherwise it answers itself, and the inner service is not called:
//!
//! | case | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no credentials | 401 | `Bearer realm="…"` |
//! | bad token | 401 | `Bearer realm="…", error="invalid_token"` |
//! | empty token, several credentials or headers | 400 | `Bearer realm="…", error="invalid_request"` |
//! | missing scope ([`RequireScope`]) | 403 | `Bearer realm="…", error="insufficient_scope", scope="…"` |
//! | authentication too weak or too old ([`StepUp`], RFC 9470) | 401 | `Bearer realm="…", error="insufficient_user_authentication", acr_values="…", max_age="…"` |
//! | no keys ever loaded | 503 | none (`Retry-After: 5`) |
//! | introspection endpoint unavailable, too many discovered issuers | 503 | none (`Retry-After`: the endpoint's, else 5) |
//!
//! With a [resource identifier](crate::ValidatorBuilder::resource), every challenge
//! also carries `resource_metadata="…"` (RFC 9728 §5.1), the URL of the resource's
//! [metadata](crate::resource), and [`challenge_scope`](BearerAuthLayer::challenge_scope)
//! adds the `scope` a client should ask for.
//!
//! Bodies are empty unless [`verbose_errors`](BearerAuthLayer::verbose_errors) adds
//! `error_description` and a JSON body. A gRPC request (`content-type:
//! application/grpc…`) gets HTTP 200 with `grpc-status` 16 (UNAUTHENTICATED), 7
//! (PERMISSION_DENIED), 3 or 14, a `grpc-message`, and the same `www-authenticate`.
//!
//! # Example
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_oauth::bearer::{BearerAuthLayer, RequireScopeLayer};
//! use tower_oauth::{Claims, Validator};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let validator = Validator::builder()
//!     .issuer("https://login.example.com")
//!     .audience("https://api.example.com")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/admin", get(|| async { "secret" }))
//!     .route_layer(RequireScopeLayer::new(["admin"]))
//!     .route("/me", get(|claims: Claims| async move { claims.subject().unwrap_or("?").to_owned() }))
//!     .layer(BearerAuthLayer::new(validator).realm("api"));
//! # let _: Router = app;
//! # Ok(()) }
//! ```

mod body;
mod cache;
pub(crate) mod extract;
mod future;
mod layer;
mod rejection;
mod requirement;
pub(crate) mod scope;
pub(crate) mod service;
mod step_up;

pub use body::ResponseBody;
pub use cache::VerifiedTokenCache;
pub use future::ResponseFuture;
pub use layer::BearerAuthLayer;
pub use rejection::{Rejection, ResponseStyle};
pub use requirement::{HasAuthentication, Shortfall, StepUpRequirement};
pub use scope::{HasScopes, RequireScope, RequireScopeLayer};
pub use service::BearerAuth;
pub use step_up::{StepUp, StepUpLayer};
