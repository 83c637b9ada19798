//! OAuth 2.0 token introspection (RFC 7662): ask the authorization server whether an
//! opaque (or otherwise unverifiable) access token is active, and what it carries.
//!
//! An [`Introspector`] posts the token to the introspection endpoint, authenticated as
//! a client (`client_secret_basic` with the RFC 6749 §2.3.1 encoding, or
//! `client_secret_post`), and keeps the answers in a bounded cache:
//!
//! - keyed by the SHA-256 of the token, never the token itself;
//! - an active answer lives until the token's `exp`, and never longer than
//!   [`max_ttl`](IntrospectorBuilder::max_ttl) (default 5 min): a revoked token is
//!   noticed within that bound;
//! - an inactive answer lives for [`negative_ttl`](IntrospectorBuilder::negative_ttl)
//!   (default 10 s, `0` to disable), so a flood of junk tokens costs one request per
//!   token, not one per request;
//! - failures (the endpoint down, slow, rate limiting, answering garbage or refusing
//!   our credentials) are never cached, but are shared by the requests waiting on the
//!   same exchange: concurrent introspections of one token make one request.
//!
//! A [discovered](Introspector::discover) endpoint is looked up by one request at a
//! time, and kept until it fails at the transport level or answers a status no
//! introspection endpoint answers (404, a redirect, …); then the next introspection
//! looks it up again. After a failed lookup, introspections are refused at once with
//! [`IntrospectionError::Unavailable`] (and its `retry_after`, the time left) until a
//! jittered backoff of 1 s doubling up to 1 min elapses, so an outage of the issuer's
//! metadata costs it a few requests rather than one per incoming request.
//!
//! The answer's claims are handed over as JSON text; the
//! [`Validator`](crate::Validator) checks them with the same policy as a JWT's claims
//! (`iss`, `aud`, `exp`, `nbf`, scopes). An inactive token is a 401 `invalid_token`;
//! an endpoint that cannot answer is a 503, never a 401. An answer the cache keeps is
//! settled without waiting (no future), and the claims parsed from it are kept with it
//! for as long as the answer lives; the policy is still applied on every use.
//!
//! Only JSON introspection responses are supported, not the signed ones of RFC 9701.
//! A response whose `token_type` is present and is neither `Bearer` nor `DPoP` (a
//! refresh token, say) is treated as inactive, and so is a `DPoP` token whose `cnf`
//! names no `jkt`. A token bound to a key (`cnf`) passes only with its proof of
//! possession, as a JWT does.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_oauth::introspect::{AuthMethod, Introspector};
//!
//! # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let introspector = Introspector::discover("https://idp.example", "my-api", "s3cret")
//!     .auth_method(AuthMethod::ClientSecretPost)
//!     .max_ttl(Duration::from_secs(60))
//!     .build()?;
//! let introspected = introspector.introspect(token).await?;
//! println!("active until {:?}: {}", introspected.expires_at(), introspected.claims_json());
//! # Ok(()) }
//! ```

mod error;
mod introspector;

pub use crate::idp::answers::{DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_TTL};
pub use crate::idp::assertion::ClientKey;
pub use crate::idp::client_auth::{AssertionAudience, AuthMethod, ClientCredential};
pub use crate::idp::fetch::DEFAULT_MAX_BODY_SIZE;
pub use error::IntrospectionError;
pub use introspector::{DEFAULT_NEGATIVE_TTL, Introspected, Introspector, IntrospectorBuilder};
