//! An embedded OAuth 2.0 authorization server for tests, benchmarks and demos.
//!
//! [`TestIssuer`] is a real HTTP server on 127.0.0.1 (HTTPS with
//! [`TestIssuerBuilder::tls`], feature `mtls-rustls`) that speaks enough OAuth 2.0 and
//! OpenID Connect to exercise this crate end to end, with no network and no set-up:
//!
//! | path (under the issuer) | what |
//! |---|---|
//! | `/.well-known/openid-configuration` | OpenID Connect Discovery 1.0 metadata, listing the client authentication methods and grants below |
//! | `/.well-known/oauth-authorization-server` (RFC 8414 §3, before the path) | authorization server metadata |
//! | `/jwks` | the JWK Set: one key per asymmetric algorithm, with `Cache-Control: max-age` |
//! | `/token` (configurable) | `client_credentials`, `refresh_token` (rotating, with reuse detection), `authorization_code`, the JWT bearer grant (RFC 7523 §2.1) and token exchange (RFC 8693); DPoP-bound access tokens for requests with a proof (RFC 9449 §5), certificate-bound ones for requests over mutual TLS (RFC 8705 §3) |
//! | `/introspect` | RFC 7662 token introspection, for registered clients (any method below) |
//! | `/userinfo` | OpenID Connect userinfo: `sub` and the claims set per subject |
//!
//! How clients authenticate, at the token and introspection endpoints (one method per
//! request, RFC 6749 §2.3):
//!
//! | method | registered with | the request carries |
//! |---|---|---|
//! | `client_secret_basic` | [`client`](TestIssuerBuilder::client), [`register_client`](TestIssuer::register_client) | `Authorization: Basic`, form-encoded first (RFC 6749 §2.3.1), or as sent with [`basic_without_form_decoding`](TestIssuerBuilder::basic_without_form_decoding) |
//! | `client_secret_post` | the same | `client_id` and `client_secret` |
//! | `private_key_jwt` (RFC 7523 §2.2) | [`client_jwks`](TestIssuerBuilder::client_jwks) | `client_assertion_type` and a `client_assertion` signed with RS256, PS256, ES256 or EdDSA |
//! | `client_secret_jwt` | a secret as long as the hash | the same, HS256, HS384 or HS512 with the secret |
//! | `tls_client_auth` (RFC 8705 §2.1) | [`tls`](TestIssuerBuilder::tls) and [`tls_client`](TestIssuerBuilder::tls_client) | `client_id`, over a connection whose certificate chains to the client CA and has the subject DN |
//! | `self_signed_tls_client_auth` (§2.2) | [`tls`](TestIssuerBuilder::tls) and [`self_signed_tls_client`](TestIssuerBuilder::self_signed_tls_client) | `client_id`, over a connection with that certificate |
//!
//! What a refused request gets:
//!
//! | what is wrong | answer |
//! |---|---|
//! | credentials that do not authenticate: a wrong secret, a bad or replayed assertion, no or the wrong certificate; none where they are required | `401 invalid_client` with `WWW-Authenticate`, and a short `error_description` that never quotes the credentials |
//! | Basic credentials, with [`basic_without_form_decoding`](TestIssuerBuilder::basic_without_form_decoding) | a bare `403`, no body |
//! | several methods, a parameter repeated or missing, an unsupported token type | `400 invalid_request` |
//! | a JWT bearer assertion that is not from a trusted issuer, not signed by it, not for this server, expired, without `sub` or replayed | `400 invalid_grant` |
//! | a token exchange by a client without an [`exchange_policy`](TestIssuerBuilder::exchange_policy) | `400 unauthorized_client` |
//! | an exchange to an audience or resource its policy does not allow | `400 invalid_target` |
//! | an exchange of a subject or actor token that is not an active token of this issuer | `400 invalid_grant` |
//! | an exchange for a scope the subject token does not have | `400 invalid_scope` |
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
//! - request counters per endpoint show how often a client fetched, and per
//!   [`GrantType`] how often it asked for which grant.
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
//!
//! A client that authenticates with its key, and may exchange tokens for `orders-api`:
//!
//! ```no_run
//! use serde_json::json;
//! use tower_oauth::Algorithm;
//! use tower_oauth::testing::{GrantType, TestIssuer, TestKey};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let key = TestKey::generate(Algorithm::ES256);
//! let issuer = TestIssuer::builder()
//!     .client_jwks("gateway", &key.public_jwk().to_string())
//!     .exchange_policy("gateway", ["orders-api"])
//!     .start()
//!     .await?;
//!
//! // A client assertion (RFC 7523 §3), to send as `client_assertion` with
//! // `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let claims = json!({
//!     "iss": "gateway", "sub": "gateway", "aud": issuer.token_endpoint(),
//!     "exp": now + 60, "jti": "a-unique-id",
//! });
//! let header = json!({ "alg": "ES256", "kid": key.kid() });
//! let assertion = key.sign_compact(&header.to_string(), &claims.to_string());
//!
//! // … exchange a token with it, then count the exchanges.
//! assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 0);
//! # let _ = assertion;
//! # Ok(()) }
//! ```

mod assertion;
mod client_auth;
mod clients;
mod dpop;
#[cfg(feature = "jwe")]
mod encryption;
mod fault;
mod grant_type;
mod grants;
mod introspection;
mod issuer;
mod key;
mod keyring;
mod request;
mod response;
mod server;
mod state;
#[cfg(feature = "mtls-rustls")]
mod subject_dn;
#[cfg(feature = "mtls-rustls")]
mod tls;
mod token;
mod token_endpoint;
mod token_exchange;
mod token_response;

#[cfg(feature = "jwe")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
pub use encryption::TestEncryptionKey;
pub use fault::{Endpoint, Fault};
pub use grant_type::GrantType;
pub use issuer::{TestIssuer, TestIssuerBuilder};
pub use key::TestKey;
pub use token::{TokenBuilder, TokenParts};
