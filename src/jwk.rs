//! JSON Web Keys (RFC 7517) parsed once into ready verifying keys.
//!
//! A [`Jwk`] holds the backend's own parsed key (aws-lc-rs `ParsedPublicKey`, or an
//! HMAC key), so verifying a signature never re-parses `n`/`e` or an EC point. A
//! [`KeySet`] is a JWK Set (RFC 7517 §5) indexed by `kid`.
//!
//! Supported: RSA (2048 bits and up), EC on P-256/P-384/P-521 (RFC 7518 §6.2), OKP
//! Ed25519 (RFC 8037), and `oct` (HMAC) keys only through the `trusted` entry points,
//! because a symmetric key fetched from a remote JWKS is a key anyone could have.
//!
//! ```
//! use tower_oauth::{Algorithm, KeySet};
//!
//! let jwks = br#"{"keys":[
//!   {"kty":"OKP","crv":"Ed25519","kid":"ed1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
//!   {"kty":"RSA","kid":"encryption-only","use":"enc","n":"AQAB","e":"AQAB"},
//!   {"kty":"foo","kid":"from-the-future"}
//! ]}"#;
//! let set = KeySet::from_jwks(jwks)?;
//! // Keys that cannot verify signatures are skipped (with a warning); the rest load.
//! assert_eq!(set.len(), 1);
//! assert!(set.get("ed1").unwrap().supports(Algorithm::EdDSA));
//! # Ok::<(), tower_oauth::JwkError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use serde::Deserialize;

use crate::Secret;
use crate::algorithm::{Algorithm, KeyFamily};

/// Strict base64url: no padding, no whitespace, no non-zero trailing bits (RFC 7515 §2).
pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The smallest RSA modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
pub const MIN_RSA_BITS: usize = 2048;

/// The most keys a [`KeySet`] takes from one document; the rest are skipped.
pub const MAX_KEYS: usize = 100;

/// Why a JWK could not be turned into a verifying key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// The document is not JSON of the expected shape (a JWK object, or `{"keys":[…]}`).
    InvalidJson,
    /// `kty` names a key type this crate does not verify with (e.g. a post-quantum type).
    UnsupportedKeyType,
    /// `crv` names a curve this crate does not verify with (e.g. `X25519`, `Ed448`, `secp256k1`).
    UnsupportedCurve,
    /// The key's `alg` is not a supported JWS algorithm; often an encryption key (`RSA-OAEP`).
    UnsupportedAlgorithm,
    /// The key's `alg` does not fit its `kty`/`crv` (say, `ES256` on an RSA key).
    AlgorithmMismatch,
    /// `use` or `key_ops` say the key is not for verifying signatures.
    NotForSignatures,
    /// `use` or `key_ops` say the key is not for decryption.
    NotForDecryption,
    /// A required member is absent.
    MissingParameter(&'static str),
    /// A member is not strict base64url, or has the wrong length for its curve.
    InvalidEncoding(&'static str),
    /// The RSA modulus is shorter than [`MIN_RSA_BITS`].
    RsaKeyTooSmall {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The crypto backend rejected the key material (a point not on the curve, a bad modulus).
    InvalidKey,
    /// An `oct` key arrived through an entry point that does not trust symmetric keys.
    SymmetricKeyNotTrusted,
    /// An HMAC key is shorter than its hash output (RFC 7518 §3.2).
    SymmetricKeyTooShort,
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwkError::InvalidJson => f.write_str("not a JWK or JWK Set document"),
            JwkError::UnsupportedKeyType => f.write_str("unsupported key type"),
            JwkError::UnsupportedCurve => f.write_str("unsupported curve"),
            JwkError::UnsupportedAlgorithm => f.write_str("unsupported key algorithm"),
            JwkError::AlgorithmMismatch => f.write_str("key algorithm does not match the key type"),
            JwkError::NotForSignatures => f.write_str("key is not for signature verification"),
            JwkError::NotForDecryption => f.write_str("key is not for decryption"),
            JwkError::MissingParameter(p) => write!(f, "missing key parameter `{p}`"),
            JwkError::InvalidEncoding(p) => write!(f, "invalid encoding of key parameter `{p}`"),
            JwkError::RsaKeyTooSmall { bits } => {
                write!(f, "rsa key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum")
            }
            JwkError::InvalidKey => f.write_str("invalid key material"),
            JwkError::SymmetricKeyNotTrusted => f.write_str("symmetric key from an untrusted source"),
            JwkError::SymmetricKeyTooShort => f.write_str("symmetric key is shorter than the hash output"),
        }
    }
}

impl std::error::Error for JwkError {}

/// A public (or trusted symmetric) key, parsed once and ready to verify JWS signatures.
///
/// Cheap to share: a [`KeySet`] hands out `Arc<Jwk>`.
pub struct Jwk {
    kid: Option<Box<str>>,
    thumbprint: [u8; 32],
    alg: Option<Algorithm>,
    family: KeyFamily,
    verifier: Verifier,
}

enum Verifier {
    /// One parsed key per RSA algorithm the key may be used with; aws-lc-rs binds the
    /// padding and digest to the parsed key.
    Rsa {
        bits: usize,
        parsed: Vec<(Algorithm, signature::ParsedPublicKey)>,
    },
    Ec(signature::ParsedPublicKey),
    Ed25519(signature::ParsedPublicKey),
    Hmac {
        keys: Vec<(Algorithm, hmac::Key)>,
    },
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys are not secret, but the HMAC variant is: print metadata only.
        let mut d = f.debug_struct("Jwk");
        d.field("kid", &self.kid).field("alg", &self.alg).field("family", &self.family);
        if let Verifier::Rsa { bits, .. } = &self.verifier {
            d.field("bits", bits);
        }
        d.finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<Secret>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::from)
    }
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

impl Jwk {
    /// Parses one public JWK. `oct` keys are refused: use [`Jwk::from_json_trusted`].
    pub fn from_json(json: &[u8]) -> Result<Jwk, JwkError> {
        let raw: RawJwk = serde_json::from_slice(json).map_err(|_| JwkError::InvalidJson)?;
        Jwk::from_raw(raw, false)
    }

    /// Parses one JWK from a source the caller controls, accepting `oct` (HMAC) keys.
    pub fn from_json_trusted(json: &[u8]) -> Result<Jwk, JwkError> {
        let raw: RawJwk = serde_json::from_slice(json).map_err(|_| JwkError::InvalidJson)?;
        Jwk::from_raw(raw, true)
    }

    /// An HMAC key for `alg` (one of `HS256`, `HS384`, `HS512`) from a configured secret.
    ///
    /// The secret must be at least as long as the hash output (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: &Secret, kid: Option<&str>) -> Result<Jwk, JwkError> {
        if !alg.is_symmetric() {
            return Err(JwkError::AlgorithmMismatch);
        }
        let k = B64.encode(secret.expose());
        Ok(Jwk {
            kid: kid.map(Into::into),
            thumbprint: thumbprint(&[("k", &k), ("kty", "oct")]),
            alg: Some(alg),
            family: KeyFamily::Symmetric,
            verifier: hmac_verifier(secret.expose(), Some(alg))?,
        })
    }

    fn from_raw(raw: RawJwk, trust_symmetric: bool) -> Result<Jwk, JwkError> {
        // RFC 7517 §4.2/§4.3: a key marked for something else must not verify signatures.
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::NotForSignatures);
        }
        if raw.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify")) {
            return Err(JwkError::NotForSignatures);
        }
        let alg = match raw.alg.as_deref() {
            None => None,
            Some(name) => Some(Algorithm::from_name(name).ok_or(JwkError::UnsupportedAlgorithm)?),
        };
        let kty = raw.kty.as_deref().ok_or(JwkError::MissingParameter("kty"))?;
        let member = |v: &Option<String>| v.clone().unwrap_or_default();
        let (family, verifier, thumb) = match kty {
            "RSA" => {
                let n = decode(raw.n.as_deref(), "n")?;
                let e = decode(raw.e.as_deref(), "e")?;
                let thumb = thumbprint(&[("e", &member(&raw.e)), ("kty", "RSA"), ("n", &member(&raw.n))]);
                (KeyFamily::Rsa, rsa_verifier(&n, &e, alg)?, thumb)
            }
            "EC" => {
                let (family, verification, size): (_, &'static signature::EcdsaVerificationAlgorithm, _) =
                    match raw.crv.as_deref().ok_or(JwkError::MissingParameter("crv"))? {
                        "P-256" => (KeyFamily::EcP256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                        "P-384" => (KeyFamily::EcP384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                        "P-521" => (KeyFamily::EcP521, &signature::ECDSA_P521_SHA512_FIXED, 66),
                        _ => return Err(JwkError::UnsupportedCurve),
                    };
                let x = decode(raw.x.as_deref(), "x")?;
                let y = decode(raw.y.as_deref(), "y")?;
                // RFC 7518 §6.2.1.2: coordinates are full-length, so the length is exact.
                if x.len() != size {
                    return Err(JwkError::InvalidEncoding("x"));
                }
                if y.len() != size {
                    return Err(JwkError::InvalidEncoding("y"));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let parsed = signature::ParsedPublicKey::new(verification, &point).map_err(|_| JwkError::InvalidKey)?;
                let crv = member(&raw.crv);
                let thumb = thumbprint(&[("crv", &crv), ("kty", "EC"), ("x", &member(&raw.x)), ("y", &member(&raw.y))]);
                (family, Verifier::Ec(parsed), thumb)
            }
            "OKP" => {
                if raw.crv.as_deref().ok_or(JwkError::MissingParameter("crv"))? != "Ed25519" {
                    return Err(JwkError::UnsupportedCurve);
                }
                let x = decode(raw.x.as_deref(), "x")?;
                if x.len() != 32 {
                    return Err(JwkError::InvalidEncoding("x"));
                }
                let parsed =
                    signature::ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| JwkError::InvalidKey)?;
                let thumb = thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", &member(&raw.x))]);
                (KeyFamily::Ed25519, Verifier::Ed25519(parsed), thumb)
            }
            "oct" => {
                if !trust_symmetric {
                    return Err(JwkError::SymmetricKeyNotTrusted);
                }
                let k_b64 = raw.k.ok_or(JwkError::MissingParameter("k"))?;
                let k = B64.decode(k_b64.expose()).map_err(|_| JwkError::InvalidEncoding("k"))?;
                let thumb = thumbprint(&[("k", std::str::from_utf8(k_b64.expose()).unwrap_or("")), ("kty", "oct")]);
                (KeyFamily::Symmetric, hmac_verifier(&k, alg)?, thumb)
            }
            _ => return Err(JwkError::UnsupportedKeyType),
        };
        if alg.is_some_and(|alg| alg.key_family() != family) {
            return Err(JwkError::AlgorithmMismatch);
        }
        Ok(Jwk { kid: raw.kid.map(Into::into), thumbprint: thumb, alg, family, verifier })
    }

    /// The key id (`kid`), if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The RFC 7638 JWK thumbprint (SHA-256): the key's identity, whatever its `kid`.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// The algorithm the key is restricted to (`alg`), if it declares one.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The key's family (`kty` and curve).
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// Whether a token signed with `alg` may be verified with this key: the family must
    /// match, and so must the key's own `alg` when it declares one (RFC 8725 §3.1).
    pub fn supports(&self, alg: Algorithm) -> bool {
        alg.key_family() == self.family && self.alg.is_none_or(|own| own == alg)
    }

    /// Verifies a JWS `signature` over `signing_input` made with `alg`.
    ///
    /// Returns `false` for a bad signature and for an algorithm this key does not
    /// [`support`](Self::supports).
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match &self.verifier {
            Verifier::Rsa { parsed, .. } => parsed
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, key)| key.verify_sig(signing_input, signature).is_ok()),
            Verifier::Ec(key) | Verifier::Ed25519(key) => key.verify_sig(signing_input, signature).is_ok(),
            Verifier::Hmac { keys } => keys
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, key)| hmac::verify(key, signing_input, signature).is_ok()),
        }
    }
}

/// RFC 7638 §3: SHA-256 over the required members, in lexicographic order, with no
/// whitespace. Members are base64url or registered names, so they need no escaping.
/// RFC 7638 §3.2: a key's required members in lexicographic order (the caller's), no
/// whitespace. Values are base64url or registered names, which need no JSON escaping.
/// Also a complete public JWK, as a DPoP proof's header carries it.
pub(crate) fn canonical(members: &[(&str, &str)]) -> String {
    let mut json = String::with_capacity(members.iter().map(|(name, value)| name.len() + value.len() + 6).sum());
    json.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        json.push_str(name);
        json.push_str("\":\"");
        json.push_str(value);
        json.push('"');
    }
    json.push('}');
    json
}

/// The RFC 7638 SHA-256 thumbprint of a key given by its required members, already in
/// lexicographic order.
pub(crate) fn thumbprint(members: &[(&str, &str)]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical(members).as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn decode(value: Option<&str>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let value = value.ok_or(JwkError::MissingParameter(name))?;
    B64.decode(value).map_err(|_| JwkError::InvalidEncoding(name))
}

fn rsa_verifier(n: &[u8], e: &[u8], alg: Option<Algorithm>) -> Result<Verifier, JwkError> {
    // RFC 7518 §6.3.1.1 forbids leading zeros, but some encoders add one; the value is
    // the same, and aws-lc-rs wants the minimal form.
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    if n.is_empty() {
        return Err(JwkError::InvalidEncoding("n"));
    }
    if e.is_empty() {
        return Err(JwkError::InvalidEncoding("e"));
    }
    // An RSA modulus is odd, and so is a usable public exponent, which is at least 3:
    // e = 1 would make every "signature" the plain encoded digest.
    if n[n.len() - 1] & 1 == 0 {
        return Err(JwkError::InvalidKey);
    }
    if e[e.len() - 1] & 1 == 0 || e == [1] {
        return Err(JwkError::InvalidKey);
    }
    let bits = (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(JwkError::RsaKeyTooSmall { bits });
    }
    let components = signature::RsaPublicKeyComponents { n, e };
    let algs: &[Algorithm] = match alg {
        Some(alg) => &[alg][..],
        None => &Algorithm::ALL[..6],
    };
    let mut parsed = Vec::with_capacity(algs.len());
    for &alg in algs {
        let params = match alg {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return Err(JwkError::AlgorithmMismatch),
        };
        let key = components.to_parsed_public_key(params).map_err(|_| JwkError::InvalidKey)?;
        parsed.push((alg, key));
    }
    Ok(Verifier::Rsa { bits, parsed })
}

fn hmac_verifier(secret: &[u8], alg: Option<Algorithm>) -> Result<Verifier, JwkError> {
    let algs: &[Algorithm] = match alg {
        Some(alg) => &[alg][..],
        None => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][..],
    };
    let mut keys = Vec::with_capacity(algs.len());
    for &alg in algs {
        let (hmac_alg, min_len) = match alg {
            Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
            Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
            Algorithm::HS512 => (hmac::HMAC_SHA512, 64),
            _ => return Err(JwkError::AlgorithmMismatch),
        };
        // RFC 7518 §3.2: a key of the same size as the hash output or larger.
        if secret.len() < min_len {
            if alg_is_explicit(alg, algs) {
                return Err(JwkError::SymmetricKeyTooShort);
            }
            continue;
        }
        keys.push((alg, hmac::Key::new(hmac_alg, secret)));
    }
    if keys.is_empty() {
        return Err(JwkError::SymmetricKeyTooShort);
    }
    Ok(Verifier::Hmac { keys })
}

fn alg_is_explicit(alg: Algorithm, algs: &[Algorithm]) -> bool {
    algs.len() == 1 && algs[0] == alg
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A JWK Set (RFC 7517 §5): verifying keys indexed by `kid`.
///
/// Build it with [`KeySet::from_jwks`] from a document, or with [`KeySet::from_keys`].
/// A key that cannot be used (unknown type, encryption key, bad material) is skipped
/// with a `tracing` warning, so one odd key never takes the whole set down.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<Jwk>>,
    by_kid: HashMap<Box<str>, Vec<usize>>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Parses a JWK Set of public keys; `oct` keys are skipped.
    ///
    /// Fails only when the document itself is not a JWK Set.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, JwkError> {
        KeySet::parse(json, false)
    }

    /// Parses a JWK Set from a source the caller controls (a local file, configuration),
    /// accepting `oct` keys for HMAC algorithms.
    pub fn from_jwks_trusted(json: &[u8]) -> Result<KeySet, JwkError> {
        KeySet::parse(json, true)
    }

    fn parse(json: &[u8], trust_symmetric: bool) -> Result<KeySet, JwkError> {
        let raw: RawJwkSet = serde_json::from_slice(json).map_err(|_| JwkError::InvalidJson)?;
        let mut set = KeySet::new();
        let total = raw.keys.len();
        for (index, value) in raw.keys.into_iter().enumerate() {
            if set.keys.len() == MAX_KEYS {
                tracing::warn!(skipped = total - index, max = MAX_KEYS, "jwks has too many keys; the rest are skipped");
                break;
            }
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let parsed = RawJwk::deserialize(value)
                .map_err(|_| JwkError::InvalidJson)
                .and_then(|raw| Jwk::from_raw(raw, trust_symmetric));
            match parsed {
                Ok(key) => set.insert(key),
                Err(error) => {
                    tracing::warn!(index, kid = kid.as_deref().map(truncate), %error, "skipping unusable jwk");
                }
            }
        }
        Ok(set)
    }

    /// A set of already-parsed keys.
    pub fn from_keys(keys: impl IntoIterator<Item = Jwk>) -> KeySet {
        let mut set = KeySet::new();
        for key in keys {
            set.insert(key);
        }
        set
    }

    /// Adds a key.
    pub fn insert(&mut self, key: Jwk) {
        let index = self.keys.len();
        if let Some(kid) = &key.kid {
            self.by_kid.entry(kid.clone()).or_default().push(index);
        }
        self.keys.push(Arc::new(key));
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Jwk>> {
        self.by_kid.get(kid).and_then(|ix| ix.first()).map(|&i| &self.keys[i])
    }

    /// Whether any key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Every key, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Jwk>> {
        self.keys.iter()
    }

    /// The keys a token with this `kid` (or none) and `alg` may be verified with.
    ///
    /// With a `kid`, only keys with that `kid`; without one, every key that supports `alg`.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Arc<Jwk>> + 'a {
        let by_kid = kid.map(|kid| self.by_kid.get(kid).map(Vec::as_slice).unwrap_or_default());
        let (indexed, all) = match by_kid {
            Some(ix) => (Some(ix.iter().map(|&i| &self.keys[i])), None),
            None => (None, Some(self.keys.iter())),
        };
        indexed.into_iter().flatten().chain(all.into_iter().flatten()).filter(move |key| key.supports(alg))
    }
}

/// Shortens attacker-controlled strings before they reach a log line.
pub(crate) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    #[test]
    fn ed25519_key_is_parsed_and_bound_to_eddsa() {
        let key = Jwk::from_json(ED25519.as_bytes()).unwrap();
        assert!(key.supports(Algorithm::EdDSA));
        assert!(!key.supports(Algorithm::ES256));
    }

    #[test]
    fn symmetric_keys_need_the_trusted_entry_point() {
        let k = B64.encode([7u8; 32]);
        let json = format!(r#"{{"kty":"oct","k":"{k}"}}"#);
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::SymmetricKeyNotTrusted);
        let key = Jwk::from_json_trusted(json.as_bytes()).unwrap();
        assert!(key.supports(Algorithm::HS256));
        // 32 bytes are too short for HS384/HS512 (RFC 7518 §3.2), so only HS256 verifies.
        let set = KeySet::from_jwks_trusted(format!(r#"{{"keys":[{json}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 1);
        assert!(!set.keys[0].verify(Algorithm::HS384, b"x", &[0; 48]));
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        let err = Jwk::hmac(Algorithm::HS256, &Secret::from("short"), None).unwrap_err();
        assert_eq!(err, JwkError::SymmetricKeyTooShort);
    }

    #[test]
    fn small_rsa_key_is_refused() {
        let n = B64.encode([0xc3; 128]); // 1024 bits
        let json = format!(r#"{{"kty":"RSA","n":"{n}","e":"AQAB"}}"#);
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::RsaKeyTooSmall { bits: 1024 });
    }

    #[test]
    fn rsa_exponent_one_and_even_values_are_invalid() {
        let n = B64.encode([0xc3; 256]);
        for e in ["AQ", "Ag", "AAE"] {
            let json = format!(r#"{{"kty":"RSA","n":"{n}","e":"{e}"}}"#);
            assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::InvalidKey, "e={e}");
        }
        let even_n = B64.encode([0xc2; 256]);
        let json = format!(r#"{{"kty":"RSA","n":"{even_n}","e":"AQAB"}}"#);
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::InvalidKey);
    }

    #[test]
    fn encryption_keys_and_wrong_ops_are_not_for_signatures() {
        for extra in [r#""use":"enc""#, r#""key_ops":["encrypt"]"#] {
            let json =
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",{extra}}}"#);
            assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::NotForSignatures);
        }
    }

    #[test]
    fn key_alg_must_fit_the_key_type() {
        let json = r#"{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::AlgorithmMismatch);
    }

    #[test]
    fn ec_coordinates_must_be_full_length() {
        let x = B64.encode([1u8; 31]);
        let json = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}"#);
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::InvalidEncoding("x"));
    }

    #[test]
    fn off_curve_point_is_invalid() {
        let x = B64.encode([1u8; 32]);
        let json = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}"#);
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::InvalidKey);
    }

    #[test]
    fn padded_base64_is_not_strict_base64url() {
        let json = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="}"#;
        assert_eq!(Jwk::from_json(json.as_bytes()).unwrap_err(), JwkError::InvalidEncoding("x"));
    }

    #[test]
    fn a_document_that_is_not_a_jwk_set_fails_but_bad_keys_are_skipped() {
        assert_eq!(KeySet::from_jwks(b"[]").unwrap_err(), JwkError::InvalidJson);
        assert_eq!(KeySet::from_jwks(b"{\"keys\":{}}").unwrap_err(), JwkError::InvalidJson);
        let set = KeySet::from_jwks(format!(r#"{{"keys":[1,"x",{{}},{ED25519}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let json = br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
        let key = Jwk::from_json(json).unwrap();
        assert_eq!(B64.encode(key.thumbprint()), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn debug_of_an_hmac_key_shows_no_material() {
        let secret = Secret::from("0123456789abcdef0123456789abcdef");
        let key = Jwk::hmac(Algorithm::HS256, &secret, Some("h")).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }
}
