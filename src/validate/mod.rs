//! Access-token validation: JWS signatures with keys from the issuer, then the claims
//! policy (RFC 8725, RFC 9068, RFC 7519).
//!
//! # Rules
//! - The token is at most 16 KiB, has exactly three strict-base64url segments, and a
//!   header and payload that are JSON objects without duplicate members.
//! - `alg` is in the allow-list (asymmetric algorithms by default) and fits the key:
//!   its `kty`/`crv`, and its `alg` and `use` when present. `none` is never accepted;
//!   HMAC only with configured secrets. `jku`, `x5u`, `jwk` and `x5c` are never
//!   followed: keys come only from the issuer's configured key store.
//! - A `crit` header (other than `b64` with `b64: true`) and `b64: false` are rejected.
//! - `typ`: [`TypPolicy::Lenient`] by default, [`TypPolicy::Rfc9068`] on request.
//! - `iss` equals a trusted issuer exactly (or matches a trusted [`IssuerPattern`]),
//!   and the signature verifies with *that* issuer's keys; an untrusted `iss` is refused
//!   before any network request. `aud` contains an accepted audience; `exp` is
//!   required; `exp`, `nbf` and `iat` are checked with a leeway (60 s by default).
//! - Each [`Issuer`] may bring its own audiences, algorithms and `typ` policy, and may be
//!   introspected (RFC 7662) instead of verified locally; opaque tokens may go to an
//!   introspection fallback. Introspection answers pass the same claims policy.
//! - The trusted set ([`Issuers`]) is read with one lock-free load per token and can be
//!   changed while requests are served.
//! - An unknown `kid` waits for one shared, rate-limited key refresh
//!   ([`KeyStore`](crate::KeyStore)), so a key rotation never fails a request.
//!
//! # Example
//! ```no_run
//! use tower_oauth::{Claims, Validator};
//!
//! # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let validator = Validator::builder()
//!     .issuer("https://login.example.com/realms/main")
//!     .audience("https://api.example.com")
//!     .build()?;
//!
//! let claims: Claims = validator.validate(token).await?;
//! println!("{} may {}", claims.subject().unwrap_or("?"), claims.scopes().as_str());
//! # Ok(()) }
//! ```
//!
//! Many tenants, discovered on their first token:
//! ```no_run
//! use tower_oauth::Validator;
//! use tower_oauth::validate::{Issuer, IssuerPattern};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let validator = Validator::builder()
//!     .issuer_pattern(IssuerPattern::template("https://login.example.com/{tenant}/v2.0")?)
//!     .issuer(Issuer::new("https://partner.example").audience("partner-api"))
//!     .audience("https://api.example.com")
//!     .lazy_discovery()
//!     .build()?;
//! validator.issuers().remove("https://partner.example");
//! # Ok(()) }
//! ```

mod binding;
mod builder;
mod claims;
pub mod dpop;
mod error;
mod header;
mod header_cache;
mod issuer;
mod issuer_set;
mod json;
#[cfg(feature = "jwe")]
mod jwe;
mod jws;
mod patterns;
mod pipeline;
mod policy;
mod validator;

pub(crate) use binding::{Binding, Presentation};
pub use binding::{DpopMode, UnknownDpopMode};
pub use builder::{Dangerous, ValidatorBuilder};
pub use claims::{Claims, Scopes};
pub use error::ValidationError;
pub use header::TypPolicy;
pub use issuer::Issuer;
pub(crate) use issuer_set::TrustedIssuer;
pub use issuer_set::{DEFAULT_MAX_DISCOVERED_ISSUERS, Issuers};
#[cfg(feature = "jwe")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
pub use jwe::{DecryptedJwe, DecryptionKeys};
pub use jws::{VerifiedJws, verify_jws};
pub use patterns::IssuerPattern;
pub(crate) use pipeline::{Attempt, Verified};
#[cfg(test)]
pub(crate) use validator::tests as pipeline_tests;
pub use validator::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_SIZE, Validator};
