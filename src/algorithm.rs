//! JWS signature algorithms (RFC 7518 §3, RFC 8037 §3.1).

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm that this crate can verify.
///
/// `none` is deliberately not representable: a token that names it is always
/// rejected (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// EdDSA (RFC 8037); only Ed25519 keys are supported.
    EdDSA,
    /// HMAC with SHA-256. Only accepted with explicitly configured secrets.
    HS256,
    /// HMAC with SHA-384. Only accepted with explicitly configured secrets.
    HS384,
    /// HMAC with SHA-512. Only accepted with explicitly configured secrets.
    HS512,
}

/// The key type an algorithm needs (RFC 7517 §4.1 `kty`, plus the curve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFamily {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC` with `crv: P-256`.
    EcP256,
    /// `kty: EC` with `crv: P-384`.
    EcP384,
    /// `kty: EC` with `crv: P-521`.
    EcP521,
    /// `kty: OKP` with `crv: Ed25519`.
    Ed25519,
    /// `kty: oct`.
    Symmetric,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The asymmetric algorithms: the default allow-list when keys come from a JWKS.
    pub const ASYMMETRIC: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The registered name, as it appears in a JOSE header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// The key family this algorithm must be used with (RFC 8725 §3.1: bind the
    /// algorithm to the key).
    pub const fn key_family(self) -> KeyFamily {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::EcP256,
            Algorithm::ES384 => KeyFamily::EcP384,
            Algorithm::ES512 => KeyFamily::EcP521,
            Algorithm::EdDSA => KeyFamily::Ed25519,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Symmetric,
        }
    }

    /// Whether this is an HMAC algorithm.
    pub const fn is_symmetric(self) -> bool {
        matches!(self.key_family(), KeyFamily::Symmetric)
    }

    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        Some(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "ES512" => Algorithm::ES512,
            "EdDSA" => Algorithm::EdDSA,
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when parsing an unknown or unsupported algorithm name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownAlgorithm;

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown or unsupported JWS algorithm")
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses a registered name exactly (`"RS256"`, `"EdDSA"`); `"none"` is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or(UnknownAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_its_name() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
    }

    #[test]
    fn all_lists_the_algorithms_in_declaration_order_and_fits_a_u16_set() {
        // The validator's allow-list is a bit set indexed by `alg as usize`.
        for (index, alg) in Algorithm::ALL.into_iter().enumerate() {
            assert_eq!(alg as usize, index, "{alg}");
        }
        assert!(Algorithm::ALL.len() <= 16);
    }

    #[test]
    fn none_and_lowercase_names_are_not_algorithms() {
        for name in ["none", "None", "rs256", "HS256 ", "ES256K", ""] {
            assert!(name.parse::<Algorithm>().is_err(), "{name}");
        }
    }
}
