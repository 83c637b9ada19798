//! DPoP on the resource server (RFC 9449): tokens bound to a key, presented with a
//! proof of possession on each request.
//!
//! A [`DpopVerifier`] given to [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop)
//! makes the layer accept `Authorization: DPoP <token>` with one `DPoP` proof header.
//! The proof is checked as RFC 9449 §4.3 says:
//!
//! | check | refused with |
//! |---|---|
//! | one `DPoP` header, a compact JWS of at most 8 KiB | `invalid_dpop_proof` |
//! | `typ` is `dpop+jwt`; no `crit` | `invalid_dpop_proof` |
//! | `alg` asymmetric and on the allow-list (asymmetric algorithms by default) | `invalid_dpop_proof` |
//! | `jwk` a public key (no private members) that fits `alg`; the signature verifies | `invalid_dpop_proof` |
//! | `htm` is the request's method; `htu` its URL (the public base URL and the path), without query or fragment, after RFC 3986 §6 normalisation | `invalid_dpop_proof` |
//! | `iat` within [`max_age`](DpopVerifierBuilder::max_age) (60 s) before now, give or take the [`leeway`](DpopVerifierBuilder::leeway) (5 s) | `invalid_dpop_proof` |
//! | `ath` is the base64url SHA-256 of the access token | `invalid_dpop_proof` |
//! | `nonce`, when [required](DpopVerifierBuilder::require_nonce), is one this server (or a replica sharing its secret) handed out in this period or the last | `use_dpop_nonce`, with a fresh `DPoP-Nonce` |
//! | the token is valid and its `cnf.jkt` is the RFC 7638 thumbprint of the proof's key | `invalid_token` |
//! | the proof (its key and `jti`) was not seen before ([`DpopReplayCache`]) | `invalid_dpop_proof`; 503 when the shared cache is down |
//!
//! Which issuers' tokens may or must come with proofs is their [`DpopMode`](super::DpopMode)
//! (`Allowed` by default); see [`ValidatorBuilder::dpop`](crate::ValidatorBuilder::dpop).
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_oauth::validate::DpopMode;
//! use tower_oauth::validate::dpop::DpopVerifier;
//! use tower_oauth::{BearerAuthLayer, Validator};
//!
//! # fn run() -> Result<(), tower_oauth::BuildError> {
//! let validator = Validator::builder()
//!     .issuer("https://login.example.com")
//!     .audience("https://api.example.com")
//!     .dpop(DpopMode::Required)
//!     .build()?;
//! let dpop = DpopVerifier::builder("https://api.example.com")
//!     .max_age(Duration::from_secs(30))
//!     .require_nonce()
//!     .build()?;
//! let layer = BearerAuthLayer::new(validator).dpop(dpop);
//! # let _ = layer; Ok(()) }
//! ```

mod htu;
mod nonce;
mod proof;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use proof::{CheckedProof, RequestFacts};
pub(crate) use replay::ReplayError;
pub use replay::{DEFAULT_REPLAY_CAPACITY, DEFAULT_REPLAY_STORE_TIMEOUT, DpopReplayCache};

use self::nonce::Nonces;
use super::policy::AlgorithmSet;
use crate::Algorithm;
use crate::error::BuildError;

/// The default age a proof may have: 60 s.
pub const DEFAULT_PROOF_MAX_AGE: Duration = Duration::from_secs(60);
/// The default clock skew allowed for a proof's `iat`: 5 s.
pub const DEFAULT_PROOF_LEEWAY: Duration = Duration::from_secs(5);
/// The default period of server nonces: each lives for one to two periods.
pub const DEFAULT_NONCE_PERIOD: Duration = Duration::from_secs(60);
/// The largest proof accepted: 8 KiB holds an RSA-4096 key and signature with room.
pub const MAX_PROOF_SIZE: usize = 8 * 1024;

/// Checks DPoP proofs for a [`BearerAuthLayer`](crate::BearerAuthLayer); see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct DpopVerifier {
    pub(crate) config: Arc<VerifierConfig>,
}

pub(crate) struct VerifierConfig {
    /// Normalised, without a trailing `/`.
    pub(crate) public_url: String,
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) max_age: i64,
    pub(crate) leeway: i64,
    pub(crate) nonces: Option<Nonces>,
    pub(crate) replay: DpopReplayCache,
    pub(crate) max_proof_size: usize,
    /// The `algs` of the `DPoP` challenge, space-separated (RFC 9449 §7.1).
    pub(crate) algs: String,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &*self.config;
        f.debug_struct("DpopVerifier")
            .field("public_url", &config.public_url)
            .field("algorithms", &config.algs)
            .field("max_age_secs", &config.max_age)
            .field("leeway_secs", &config.leeway)
            .field("nonces", &config.nonces)
            .field("replay", &config.replay)
            .finish()
    }
}

impl DpopVerifier {
    /// Proofs for requests to `public_url`: the scheme, host, port (and any path
    /// prefix) that clients use to reach this service, which `htu` is checked against.
    /// Behind a proxy or load balancer, that is the proxy's URL, not the listen address.
    ///
    /// `htu` is this URL followed by the path of the request as the layer sees it. A
    /// layer inside a nested router (axum's `nest`), or behind a proxy that strips a
    /// prefix, sees the path without that prefix: put the prefix in `public_url`.
    pub fn builder(public_url: &str) -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            public_url: public_url.to_owned(),
            algorithms: Algorithm::ASYMMETRIC.to_vec(),
            max_age: DEFAULT_PROOF_MAX_AGE,
            leeway: DEFAULT_PROOF_LEEWAY,
            nonce_secret: None,
            nonce_period: DEFAULT_NONCE_PERIOD,
            replay: None,
            max_proof_size: MAX_PROOF_SIZE,
        }
    }

    /// The public URL `htu` is checked against, normalised.
    pub fn public_url(&self) -> &str {
        &self.config.public_url
    }

    /// The replay cache in use.
    pub fn replay_cache(&self) -> &DpopReplayCache {
        &self.config.replay
    }

    /// Checks a proof against the request, all but the replay check.
    pub(crate) fn check(&self, proof: &[u8], request: &RequestFacts<'_>) -> Result<CheckedProof, DpopError> {
        proof::check(&self.config, proof, request)
    }

    /// The nonce to send at `now`, when nonces are required.
    pub(crate) fn nonce(&self, now: i64) -> Option<String> {
        self.config.nonces.as_ref().map(|nonces| nonces.current(now))
    }

    /// The `algs` parameter of the `DPoP` challenge.
    pub(crate) fn algs(&self) -> &str {
        &self.config.algs
    }
}

/// Configures a [`DpopVerifier`].
#[derive(Debug)]
#[must_use]
pub struct DpopVerifierBuilder {
    public_url: String,
    algorithms: Vec<Algorithm>,
    max_age: Duration,
    leeway: Duration,
    nonce_secret: Option<crate::Secret>,
    nonce_period: Duration,
    replay: Option<DpopReplayCache>,
    max_proof_size: usize,
}

impl DpopVerifierBuilder {
    /// The algorithms a proof may be signed with. Default: [`Algorithm::ASYMMETRIC`].
    /// HMAC algorithms are never accepted: a proof must be made with a private key.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof's `iat` may be; default [`DEFAULT_PROOF_MAX_AGE`]. Proofs are
    /// remembered for the replay check this long.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The clock skew allowed on either side of `iat`; default [`DEFAULT_PROOF_LEEWAY`].
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires server nonces (RFC 9449 §8): a proof without a current nonce is
    /// answered `401 use_dpop_nonce` with one in `DPoP-Nonce`, and every answer to a
    /// DPoP request carries the current nonce. Nonces are stateless, keyed by a random
    /// secret made now; replicas that must accept each other's nonces share one with
    /// [`nonce_secret`](Self::nonce_secret).
    pub fn require_nonce(mut self) -> Self {
        if self.nonce_secret.is_none() {
            let mut secret = [0u8; 32];
            // The system RNG does not fail on supported platforms; if it did, the
            // zero key would still only make nonces guessable, never proofs valid.
            let _ = aws_lc_rs::rand::fill(&mut secret);
            self.nonce_secret = Some(crate::Secret::new(secret.to_vec()));
        }
        self
    }

    /// Requires server nonces made with `secret` (at least 32 bytes of randomness
    /// advised), which replicas share.
    pub fn nonce_secret(mut self, secret: crate::Secret) -> Self {
        self.nonce_secret = Some(secret);
        self
    }

    /// How often nonces rotate; default [`DEFAULT_NONCE_PERIOD`]. A nonce is accepted
    /// in the period it was made in and the next.
    pub fn nonce_period(mut self, period: Duration) -> Self {
        self.nonce_period = period;
        self
    }

    /// Where proofs already seen are remembered; default an in-memory cache of
    /// [`DEFAULT_REPLAY_CAPACITY`] proofs.
    pub fn replay_cache(mut self, cache: DpopReplayCache) -> Self {
        self.replay = Some(cache);
        self
    }

    /// The largest proof accepted, in bytes; default [`MAX_PROOF_SIZE`].
    pub fn max_proof_size(mut self, bytes: usize) -> Self {
        self.max_proof_size = bytes;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidUrl`] when the public URL is not an absolute `http(s)` URL
    /// without query or fragment; [`BuildError::NoAlgorithms`] when no asymmetric
    /// algorithm is allowed.
    pub fn build(self) -> Result<DpopVerifier, BuildError> {
        let url = url::Url::parse(&self.public_url).map_err(|_| BuildError::InvalidUrl)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(BuildError::InvalidUrl);
        }
        let mut public_url = htu::normalise(&self.public_url).ok_or(BuildError::InvalidUrl)?;
        while public_url.ends_with('/') {
            public_url.pop();
        }
        let asymmetric: Vec<Algorithm> = self.algorithms.into_iter().filter(|alg| !alg.is_symmetric()).collect();
        let algorithms = AlgorithmSet::from_list(&asymmetric).ok_or(BuildError::NoAlgorithms)?;
        let algs = algorithms.iter().map(Algorithm::as_str).collect::<Vec<_>>().join(" ");
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(DpopVerifier {
            config: Arc::new(VerifierConfig {
                public_url,
                algorithms,
                max_age: secs(self.max_age),
                leeway: secs(self.leeway),
                nonces: self.nonce_secret.map(|secret| Nonces::new(secret.expose(), self.nonce_period.as_secs())),
                replay: self.replay.unwrap_or_default(),
                max_proof_size: self.max_proof_size,
                algs,
            }),
        })
    }
}

/// Why a DPoP proof was refused (`invalid_dpop_proof`, RFC 9449 §7.1).
///
/// Each names the check that failed; none carries the proof or the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The `DPoP` scheme without a `DPoP` header.
    #[error("no DPoP proof")]
    Missing,
    /// More than one `DPoP` header (RFC 9449 §4.3 step 1).
    #[error("several DPoP proofs")]
    SeveralProofs,
    /// The proof is longer than the configured maximum.
    #[error("DPoP proof is too large")]
    TooLarge,
    /// Not a well-formed JWT, or a required header member is missing or wrong.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof has the wrong typ")]
    InvalidType,
    /// `alg` is symmetric, `none`, unknown or not allowed.
    #[error("DPoP proof algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The `jwk` header holds private key members: the client has leaked its key.
    #[error("DPoP proof carries a private key")]
    PrivateKey,
    /// The `jwk` header is not a usable public key.
    #[error("DPoP proof key is invalid: {0}")]
    InvalidKey(&'static str),
    /// The signature does not verify with the `jwk`.
    #[error("DPoP proof signature is invalid")]
    InvalidSignature,
    /// A required claim (`jti`, `htm`, `htu`, `iat`, `ath`) is missing or of the wrong
    /// type.
    #[error("DPoP proof lacks a valid `{0}`")]
    MissingClaim(&'static str),
    /// `htm` is not the request's method.
    #[error("DPoP proof is for another method")]
    MethodMismatch,
    /// `htu` is not the request's URL (check the verifier's public URL).
    #[error("DPoP proof is for another URL")]
    UrlMismatch,
    /// `iat` is too far in the past.
    #[error("DPoP proof is too old")]
    Stale,
    /// `iat` is in the future beyond the leeway.
    #[error("DPoP proof is issued in the future")]
    IssuedInFuture,
    /// `ath` is not the hash of the access token it came with.
    #[error("DPoP proof is for another access token")]
    AccessTokenHashMismatch,
    /// The proof was used before.
    #[error("DPoP proof was used before")]
    Replayed,
    /// A server nonce is required and the proof has none, or an expired one
    /// (`use_dpop_nonce`, RFC 9449 §8).
    #[error("DPoP proof needs a current server nonce")]
    UseNonce,
}

#[cfg(test)]
mod tests;
