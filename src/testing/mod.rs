//! An embedded OAuth 2.0 authorization server for tests, benchmarks and demos.
//!
//! [`TestIssuer`] is a real HTTP server on 127.0.0.1 that speaks enough OAuth 2.0
//! and OpenID Connect to exercise this crate end to end, with no network and no
//! set-up:
//!
//! | path (under the issuer) | what |
//! |---|---|
//! | `/.well-known/openid-configuration` | OpenID Connect Discovery 1.0 metadata |
//! | `/.well-known/oauth-authorization-server` (RFC 8414 §3, before the path) | authorization server metadata |
//! | `/jwks` | the JWK Set: one key per asymmetric algorithm, with `Cache-Control: max-age` |
//! | `/token` (configurable) | `client_credentials`, `refresh_token` (rotating, with reuse detection) and `authorization_code`; DPoP-bound access tokens for requests with a proof (RFC 9449 §5) |
//! | `/introspect` | RFC 7662 token introspection, for registered clients (Basic or form) |
//! | `/userinfo` | OpenID Connect userinfo: `sub` and the claims set per subject |
//!
//! Around it:
//!
//! - [`TokenBuilder`] mints tokens directly, valid by default and broken on request
//!   (expired, wrong audience, `alg: none`, tampered, signed by a stranger), as JWTs
//!   or as opaque tokens that only introspection can read;
//! - [`TestKey`] holds keys for every [`Algorithm`](crate::Algorithm), exports them
//!   as JWKs and signs arbitrary bytes;
//! - keys rotate with [`TestIssuer::rotate_keys`], and [`Fault`]s make any
//!   [`Endpoint`] go down, slow, stall, fail or answer garbage;
//! - request counters per endpoint show how often a client fetched.
//!
//! ```no_run
//! use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let issuer = TestIssuer::start().await?;
//! println!("discovery at {}/.well-known/openid-configuration", issuer.issuer());
//!
//! let token = issuer.mint().scope("read write").sign();
//! issuer.set_fault(Endpoint::Jwks, Fault::Status(503));
//! # let _ = token;
//! # Ok(()) }
//! ```

mod client_auth;
mod dpop;
#[cfg(feature = "jwe")]
mod encryption;
mod fault;
mod grants;
mod introspection;
mod issuer;
mod key;
mod keyring;
mod request;
mod response;
mod server;
mod state;
mod token;
mod token_endpoint;

#[cfg(feature = "jwe")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
pub use encryption::TestEncryptionKey;
pub use fault::{Endpoint, Fault};
pub use issuer::{TestIssuer, TestIssuerBuilder};
pub use key::TestKey;
pub use token::{TokenBuilder, TokenParts};
