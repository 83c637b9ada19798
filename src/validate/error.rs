use std::fmt;
use std::time::Duration;

use crate::Algorithm;
use crate::introspect::IntrospectionError;

/// Why a token was not accepted.
///
/// Most variants mean the token is bad (RFC 6750 `invalid_token`); those for which
/// [`is_server_error`](Self::is_server_error) holds mean the server cannot judge it now
/// (503). `Display` never includes the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// The token is longer than the configured limit (default 16 KiB).
    TokenTooLarge,
    /// The token is not a compact JWS: wrong number of segments, bad base64url, or a
    /// header or payload that is not a JSON object of the right shape.
    Malformed(&'static str),
    /// The token is a JWE (five segments) and no decryption is configured.
    EncryptedToken,
    /// The header says `alg: none`; unsigned tokens are never accepted (RFC 8725 §3.1).
    AlgorithmNone,
    /// The header names an algorithm this crate does not implement.
    UnsupportedAlgorithm,
    /// The algorithm is real but not in this validator's allow-list.
    AlgorithmNotAllowed(Algorithm),
    /// The header has a `crit` member naming an extension this crate does not process
    /// (RFC 7515 §4.1.11), or `crit` is malformed.
    UnsupportedCriticalHeader,
    /// The header asks for an unencoded payload (`b64: false`, RFC 7797).
    UnencodedPayload,
    /// The `typ` header does not fit the configured [`TypPolicy`](crate::TypPolicy).
    InvalidType,
    /// No key in the issuer's set has the token's `kid`, even after one refresh.
    /// A rotated-away key, a token from another issuer, or a forged `kid`.
    UnknownKey,
    /// A key with the token's `kid` exists but cannot be used with the token's `alg`
    /// (an algorithm-confusion attempt, or a key restricted to another `alg`).
    KeyAlgorithmMismatch,
    /// The signature does not verify with the selected key.
    InvalidSignature,
    /// `iss` is not one of the trusted issuers (exact match) and matches no trusted
    /// pattern; or an introspection answer names another issuer than the one asked.
    UntrustedIssuer,
    /// `aud` is missing or contains none of the accepted audiences.
    InvalidAudience,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type (say, a string `exp`).
    InvalidClaim(&'static str),
    /// `exp` is in the past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    IssuedInFuture,
    /// The claims did not deserialize into the application's claims type.
    ClaimsType,
    /// The JWE's `alg`, `enc`, `zip` or `crit` is not accepted (RSA1_5, PBES2,
    /// compression, an unknown algorithm). Rejected before any private-key operation.
    UnsupportedEncryption(&'static str),
    /// No configured decryption key matches the JWE's `kid` and `alg`. Rejected before
    /// any private-key operation.
    NoDecryptionKey,
    /// Decryption failed: the token was encrypted to another key, or was tampered with.
    DecryptionFailed,
    /// The JWE carries claims directly, without an inner signature, and that was not
    /// allowed (it never is for asymmetric key management).
    UnsignedEncryptedToken,
    /// A plain JWS arrived where encryption is required (RFC 9068 §4).
    EncryptionRequired,
    /// No key set has ever been loaded for the issuer (the key source is down since
    /// start-up). Answer 503, not 401: the token may well be valid.
    KeysUnavailable,
    /// `iss` matches a trusted pattern, but as many issuers as allowed were discovered
    /// already ([`max_discovered_issuers`](crate::ValidatorBuilder::max_discovered_issuers)).
    /// A server-side limit: answer 503.
    IssuerLimit,
    /// The token was introspected (RFC 7662): inactive (the token's fault, 401), or the
    /// endpoint could not answer (the server's side, 503; see
    /// [`IntrospectionError::is_server_error`]).
    Introspection(IntrospectionError),
    /// [`Validator::validate_with_current_keys`](crate::Validator::validate_with_current_keys)
    /// met a token that only introspection can judge.
    IntrospectionRequired,
    /// The token is bound to a key its client holds (a `cnf` claim, RFC 7800: DPoP's
    /// `jkt`, mTLS's `x5t#S256`, …) and was presented without proof of possession. A
    /// sender-constrained token is never accepted as a bearer token (RFC 9449 §7.2,
    /// RFC 8705 §3): whoever stole it could use it.
    SenderConstrained,
    /// The token came with a DPoP proof whose key is not the one the token is bound to
    /// (`cnf.jkt`, RFC 9449 §7.1), or the token is bound to no DPoP key at all.
    ProofKeyMismatch,
    /// The token is bound to a TLS client certificate (`cnf.x5t#S256`, RFC 8705 §3)
    /// that the request's connection did not present.
    CertificateMismatch,
    /// The issuer's policy is [`DpopMode::Required`](crate::validate::DpopMode::Required)
    /// and the token came without a DPoP proof.
    DpopRequired,
    /// The issuer's policy is [`DpopMode::Off`](crate::validate::DpopMode::Off) and the
    /// token came with a DPoP proof.
    DpopNotAllowed,
}

impl ValidationError {
    /// Whether the fault is on the server's side (no keys yet, the introspection
    /// endpoint down, too many issuers) rather than the token's.
    pub fn is_server_error(&self) -> bool {
        match self {
            ValidationError::KeysUnavailable
            | ValidationError::IssuerLimit
            | ValidationError::IntrospectionRequired => true,
            ValidationError::Introspection(error) => error.is_server_error(),
            _ => false,
        }
    }

    /// How long a server error is expected to last, when the server that failed said
    /// so (`Retry-After` from the introspection endpoint).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ValidationError::Introspection(error) => error.retry_after(),
            _ => None,
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::TokenTooLarge => f.write_str("token is too large"),
            ValidationError::Malformed(what) => write!(f, "malformed token: {what}"),
            ValidationError::EncryptedToken => f.write_str("encrypted tokens are not accepted"),
            ValidationError::AlgorithmNone => f.write_str("unsigned token"),
            ValidationError::UnsupportedAlgorithm => f.write_str("unsupported algorithm"),
            ValidationError::AlgorithmNotAllowed(alg) => write!(f, "algorithm {alg} is not allowed"),
            ValidationError::UnsupportedCriticalHeader => f.write_str("unsupported critical header"),
            ValidationError::UnencodedPayload => f.write_str("unencoded payload is not accepted"),
            ValidationError::InvalidType => f.write_str("invalid token type"),
            ValidationError::UnknownKey => f.write_str("unknown signing key"),
            ValidationError::KeyAlgorithmMismatch => f.write_str("key cannot be used with this algorithm"),
            ValidationError::InvalidSignature => f.write_str("invalid signature"),
            ValidationError::UntrustedIssuer => f.write_str("untrusted issuer"),
            ValidationError::InvalidAudience => f.write_str("invalid audience"),
            ValidationError::MissingClaim(claim) => write!(f, "missing claim `{claim}`"),
            ValidationError::InvalidClaim(claim) => write!(f, "invalid claim `{claim}`"),
            ValidationError::Expired => f.write_str("token has expired"),
            ValidationError::NotYetValid => f.write_str("token is not yet valid"),
            ValidationError::IssuedInFuture => f.write_str("token is issued in the future"),
            ValidationError::ClaimsType => f.write_str("claims do not match the expected type"),
            ValidationError::UnsupportedEncryption(what) => write!(f, "unsupported encryption: {what}"),
            ValidationError::NoDecryptionKey => f.write_str("no decryption key for this token"),
            ValidationError::DecryptionFailed => f.write_str("decryption failed"),
            ValidationError::UnsignedEncryptedToken => f.write_str("encrypted token is not signed"),
            ValidationError::EncryptionRequired => f.write_str("token must be encrypted"),
            ValidationError::KeysUnavailable => f.write_str("signing keys are unavailable"),
            ValidationError::IssuerLimit => f.write_str("too many discovered issuers"),
            ValidationError::Introspection(error) => error.fmt(f),
            ValidationError::IntrospectionRequired => f.write_str("token must be introspected"),
            ValidationError::SenderConstrained => {
                f.write_str("token is bound to a key (cnf) and was presented as a bearer token")
            }
            ValidationError::ProofKeyMismatch => f.write_str("token is not bound to the DPoP proof's key"),
            ValidationError::CertificateMismatch => {
                f.write_str("token is bound to a client certificate the request did not present")
            }
            ValidationError::DpopRequired => f.write_str("token must be presented with a DPoP proof"),
            ValidationError::DpopNotAllowed => f.write_str("DPoP is not accepted for this issuer"),
        }
    }
}

impl std::error::Error for ValidationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ValidationError::Introspection(error) => Some(error),
            _ => None,
        }
    }
}

impl From<IntrospectionError> for ValidationError {
    fn from(error: IntrospectionError) -> Self {
        ValidationError::Introspection(error)
    }
}
