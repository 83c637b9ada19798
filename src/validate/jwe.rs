//! Encrypted access tokens (JWE, RFC 7516) through josekit.
//!
//! A resource server in front of an issuer that encrypts its access tokens (a bank
//! under FAPI, say) holds private keys; [`DecryptionKeys`] parses them once into
//! josekit decrypters and keeps them in an `ArcSwap`, so they can be reloaded at run
//! time while requests read them without a lock.
//!
//! Before any private-key operation, the protected header is checked on our side:
//! - five segments of strict base64url, and a JSON-object header without duplicates;
//! - `alg` among RSA-OAEP, RSA-OAEP-256, ECDH-ES(+A128KW/A192KW/A256KW),
//!   A128KW/A192KW/A256KW, A128GCMKW/A192GCMKW/A256GCMKW and `dir`; RSA1_5 only through
//!   [`Dangerous::allow_rsa1_5`](super::Dangerous::allow_rsa1_5) (Bleichenbacher);
//!   PBES2 never (a password-derived key has no place here, and `p2c` is a CPU lever);
//! - `enc` among A128CBC-HS256, A192CBC-HS384, A256CBC-HS512, A128GCM, A192GCM, A256GCM;
//! - no `zip`: compressed payloads are refused outright, so no decompression bomb;
//! - no unknown `crit`;
//! - a configured key whose `kid` (when the token names one) and algorithm match.
//!
//! A token that fails any of these costs a base64 decode and a small JSON parse, never
//! a private-key operation.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use josekit::jwe::{self, JweDecrypter};
use josekit::jwk::Jwk as JoseJwk;

use super::ValidationError;
use super::header::Header;
use super::jws::dots;
use crate::JwkError;
use crate::jwk::{B64, MAX_KEYS, truncate};

/// A key-management algorithm this crate decrypts with (RFC 7518 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlg {
    Rsa1_5,
    RsaOaep,
    RsaOaep256,
    EcdhEs,
    EcdhEsA128Kw,
    EcdhEsA192Kw,
    EcdhEsA256Kw,
    A128Kw,
    A192Kw,
    A256Kw,
    A128GcmKw,
    A192GcmKw,
    A256GcmKw,
    Dir,
}

impl KeyAlg {
    const RSA: [KeyAlg; 3] = [KeyAlg::RsaOaep, KeyAlg::RsaOaep256, KeyAlg::Rsa1_5];
    const EC: [KeyAlg; 4] = [KeyAlg::EcdhEs, KeyAlg::EcdhEsA128Kw, KeyAlg::EcdhEsA192Kw, KeyAlg::EcdhEsA256Kw];

    fn from_name(name: &str) -> Option<KeyAlg> {
        Some(match name {
            "RSA1_5" => KeyAlg::Rsa1_5,
            "RSA-OAEP" => KeyAlg::RsaOaep,
            "RSA-OAEP-256" => KeyAlg::RsaOaep256,
            "ECDH-ES" => KeyAlg::EcdhEs,
            "ECDH-ES+A128KW" => KeyAlg::EcdhEsA128Kw,
            "ECDH-ES+A192KW" => KeyAlg::EcdhEsA192Kw,
            "ECDH-ES+A256KW" => KeyAlg::EcdhEsA256Kw,
            "A128KW" => KeyAlg::A128Kw,
            "A192KW" => KeyAlg::A192Kw,
            "A256KW" => KeyAlg::A256Kw,
            "A128GCMKW" => KeyAlg::A128GcmKw,
            "A192GCMKW" => KeyAlg::A192GcmKw,
            "A256GCMKW" => KeyAlg::A256GcmKw,
            "dir" => KeyAlg::Dir,
            _ => return None,
        })
    }

    /// Symmetric key management: the sender holds the same key as we do.
    fn is_symmetric(self) -> bool {
        matches!(
            self,
            KeyAlg::A128Kw
                | KeyAlg::A192Kw
                | KeyAlg::A256Kw
                | KeyAlg::A128GcmKw
                | KeyAlg::A192GcmKw
                | KeyAlg::A256GcmKw
                | KeyAlg::Dir
        )
    }

    /// The algorithms an `oct` key of `len` bytes can serve.
    fn for_symmetric_len(len: usize) -> &'static [KeyAlg] {
        match len {
            16 => &[KeyAlg::A128Kw, KeyAlg::A128GcmKw, KeyAlg::Dir],
            24 => &[KeyAlg::A192Kw, KeyAlg::A192GcmKw, KeyAlg::Dir],
            32 => &[KeyAlg::A256Kw, KeyAlg::A256GcmKw, KeyAlg::Dir],
            48 | 64 => &[KeyAlg::Dir],
            _ => &[],
        }
    }

    fn decrypter(self, jwk: &JoseJwk) -> Result<Box<dyn JweDecrypter>, josekit::JoseError> {
        Ok(match self {
            // Reachable only through `Dangerous::allow_rsa1_5`.
            #[allow(deprecated)]
            KeyAlg::Rsa1_5 => Box::new(jwe::RSA1_5.decrypter_from_jwk(jwk)?),
            KeyAlg::RsaOaep => Box::new(jwe::RSA_OAEP.decrypter_from_jwk(jwk)?),
            KeyAlg::RsaOaep256 => Box::new(jwe::RSA_OAEP_256.decrypter_from_jwk(jwk)?),
            KeyAlg::EcdhEs => Box::new(jwe::ECDH_ES.decrypter_from_jwk(jwk)?),
            KeyAlg::EcdhEsA128Kw => Box::new(jwe::ECDH_ES_A128KW.decrypter_from_jwk(jwk)?),
            KeyAlg::EcdhEsA192Kw => Box::new(jwe::ECDH_ES_A192KW.decrypter_from_jwk(jwk)?),
            KeyAlg::EcdhEsA256Kw => Box::new(jwe::ECDH_ES_A256KW.decrypter_from_jwk(jwk)?),
            KeyAlg::A128Kw => Box::new(jwe::A128KW.decrypter_from_jwk(jwk)?),
            KeyAlg::A192Kw => Box::new(jwe::A192KW.decrypter_from_jwk(jwk)?),
            KeyAlg::A256Kw => Box::new(jwe::A256KW.decrypter_from_jwk(jwk)?),
            KeyAlg::A128GcmKw => Box::new(jwe::A128GCMKW.decrypter_from_jwk(jwk)?),
            KeyAlg::A192GcmKw => Box::new(jwe::A192GCMKW.decrypter_from_jwk(jwk)?),
            KeyAlg::A256GcmKw => Box::new(jwe::A256GCMKW.decrypter_from_jwk(jwk)?),
            KeyAlg::Dir => Box::new(jwe::Dir.decrypter_from_jwk(jwk)?),
        })
    }
}

/// The content encryptions accepted (RFC 7518 §5.1).
const ENCRYPTIONS: [&str; 6] = ["A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512", "A128GCM", "A192GCM", "A256GCM"];

/// The content-encryption key length of `enc`, in bytes (RFC 7518 §5.2.3–5.2.5, §5.3).
fn enc_key_len(enc: &str) -> Option<usize> {
    Some(match enc {
        "A128GCM" => 16,
        "A192GCM" => 24,
        "A256GCM" | "A128CBC-HS256" => 32,
        "A192CBC-HS384" => 48,
        "A256CBC-HS512" => 64,
        _ => return None,
    })
}

/// The exact initialization vector and tag lengths of a content encryption, in bytes.
///
/// Checked before decryption: an empty IV makes the backend panic, and a GCM tag cut
/// short would be accepted by it (RFC 7518 §5.2.2.1: the tag is half the MAC key;
/// §5.3: a 96-bit IV and a 128-bit tag).
fn iv_and_tag_len(enc: &str) -> Option<(usize, usize)> {
    Some(match enc {
        "A128CBC-HS256" => (16, 16),
        "A192CBC-HS384" => (16, 24),
        "A256CBC-HS512" => (16, 32),
        "A128GCM" | "A192GCM" | "A256GCM" => (12, 16),
        _ => return None,
    })
}

/// What the caller allows beyond the safe defaults.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JwePolicy {
    pub(crate) allow_rsa1_5: bool,
}

struct DecryptionKey {
    kid: Option<Box<str>>,
    alg: KeyAlg,
    /// A `dir` key named by its content encryption serves only that one.
    enc: Option<&'static str>,
    decrypter: Box<dyn JweDecrypter>,
}

#[derive(Default)]
struct KeyRing {
    keys: Vec<DecryptionKey>,
}

/// Private keys for decrypting JWE access tokens, selected by `kid` and algorithm.
///
/// Cheap to clone; clones share the keys, so [`reload`](Self::reload) on one is seen
/// by all, without a lock on the request path. `Debug` shows only key ids and
/// algorithms.
///
/// ```
/// use tower_oauth::validate::DecryptionKeys;
///
/// let keys = DecryptionKeys::from_jwks(br#"{"keys":[
///   {"kty":"oct","kid":"k1","alg":"A256KW","k":"GawgguFyGrWKav7AX4VKUg-q5G2NXNl4d6VA4hmgDD4"}
/// ]}"#)?;
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), tower_oauth::JwkError>(())
/// ```
#[derive(Clone)]
pub struct DecryptionKeys {
    ring: Arc<ArcSwap<KeyRing>>,
}

impl std::fmt::Debug for DecryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring.load();
        let keys: Vec<_> = ring.keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        f.debug_struct("DecryptionKeys").field("keys", &keys).finish()
    }
}

/// A decrypted JWE: the plaintext and what the header said about it.
///
/// `Debug` shows the plaintext's length only: it is usually a signed access token.
pub struct DecryptedJwe {
    payload: Vec<u8>,
    nested: bool,
    symmetric: bool,
}

impl std::fmt::Debug for DecryptedJwe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedJwe")
            .field("payload_len", &self.payload.len())
            .field("nested", &self.nested)
            .field("symmetric", &self.symmetric)
            .finish()
    }
}

impl DecryptedJwe {
    /// The plaintext.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Whether the header's `cty` says the plaintext is a JWT (`JWT` or `at+jwt`,
    /// RFC 7519 §5.2): a nested, signed token.
    pub fn is_nested(&self) -> bool {
        self.nested
    }

    pub(crate) fn was_symmetric(&self) -> bool {
        self.symmetric
    }

    pub(crate) fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

impl DecryptionKeys {
    /// Parses a JWK Set of private keys (RSA, EC P-256/384/521 and `oct`).
    ///
    /// A key's `alg`, when present, restricts it to that algorithm; without one an RSA
    /// key serves RSA-OAEP and RSA-OAEP-256, an EC key the ECDH-ES family, and an `oct`
    /// key the key-wrap algorithms its length fits and `dir`. Keys marked for another
    /// `use` are skipped with a warning; a document that is not a JWK Set fails.
    pub fn from_jwks(json: &[u8]) -> Result<DecryptionKeys, JwkError> {
        Ok(DecryptionKeys { ring: Arc::new(ArcSwap::from_pointee(parse_ring(json)?)) })
    }

    /// Replaces the keys from a new JWK Set; requests in flight finish with the old ones.
    /// On error the current keys stay.
    pub fn reload(&self, json: &[u8]) -> Result<(), JwkError> {
        self.ring.store(Arc::new(parse_ring(json)?));
        Ok(())
    }

    /// The number of usable (key, algorithm) pairs.
    pub fn len(&self) -> usize {
        self.ring.load().keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decrypts a compact JWE with the safe defaults (no RSA1_5, no PBES2, no `zip`).
    pub fn decrypt(&self, token: &str) -> Result<DecryptedJwe, ValidationError> {
        self.decrypt_with(token, JwePolicy::default())
    }

    pub(crate) fn decrypt_with(&self, token: &str, policy: JwePolicy) -> Result<DecryptedJwe, ValidationError> {
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 5 {
            return Err(ValidationError::Malformed("not five segments"));
        }
        // Strict base64url everywhere (josekit decodes again; this is about strictness).
        for (i, segment) in segments.iter().enumerate() {
            let optional = matches!(i, 1 | 2 | 4);
            if !(optional && segment.is_empty()) && B64.decode(segment).is_err() {
                return Err(ValidationError::Malformed("jwe segment is not base64url"));
            }
        }
        let header_json = B64.decode(segments[0]).map_err(|_| ValidationError::Malformed("jwe header"))?;
        let header = Header::parse(&header_json)?;
        let alg_name = header.alg_name().ok_or(ValidationError::Malformed("jwe header has no alg"))?;
        let alg = match KeyAlg::from_name(alg_name) {
            Some(KeyAlg::Rsa1_5) if !policy.allow_rsa1_5 => {
                return Err(ValidationError::UnsupportedEncryption("RSA1_5 is refused (Bleichenbacher)"));
            }
            Some(alg) => alg,
            None if alg_name.starts_with("PBES2") => {
                return Err(ValidationError::UnsupportedEncryption("PBES2 is refused"));
            }
            None => return Err(ValidationError::UnsupportedEncryption("unsupported key management algorithm")),
        };
        let enc = header.enc.as_deref().ok_or(ValidationError::Malformed("jwe header has no enc"))?;
        let (iv_len, tag_len) =
            iv_and_tag_len(enc).ok_or(ValidationError::UnsupportedEncryption("unsupported content encryption"))?;
        // RFC 7516 §7.1 segments: key, IV, ciphertext, tag. Decoded lengths follow from
        // the base64url lengths (no padding), so no second decode is needed here.
        let decoded_len = |segment: &str| segment.len() / 4 * 3 + (segment.len() % 4).saturating_sub(1);
        if decoded_len(segments[2]) != iv_len {
            return Err(ValidationError::Malformed("jwe initialization vector has the wrong length"));
        }
        if decoded_len(segments[4]) != tag_len {
            return Err(ValidationError::Malformed("jwe authentication tag has the wrong length"));
        }
        // Direct key agreement and `dir` carry no encrypted key; every other mode does.
        let direct = matches!(alg, KeyAlg::Dir | KeyAlg::EcdhEs);
        if direct != segments[1].is_empty() {
            return Err(ValidationError::Malformed("jwe encrypted key is missing or unexpected"));
        }
        // RFC 3394 §2.2.1, RFC 7518 §4.4: an AES-wrapped key is the content-encryption key
        // (its length set by `enc`) plus an 8-byte integrity block. josekit computes
        // `len - 8` and panics on a shorter segment, so the length is checked here.
        let wrapped = matches!(
            alg,
            KeyAlg::A128Kw
                | KeyAlg::A192Kw
                | KeyAlg::A256Kw
                | KeyAlg::EcdhEsA128Kw
                | KeyAlg::EcdhEsA192Kw
                | KeyAlg::EcdhEsA256Kw
        );
        if wrapped && enc_key_len(enc).is_some_and(|len| decoded_len(segments[1]) != len + 8) {
            return Err(ValidationError::Malformed("jwe encrypted key has the wrong length"));
        }
        if header.zip.is_some() {
            return Err(ValidationError::UnsupportedEncryption("compressed payloads are refused"));
        }
        header.check_extensions()?;
        let cty = header.cty.as_deref();

        let ring = self.ring.load();
        let kid = header.kid.as_deref();
        let candidates = ring.keys.iter().filter(|key| {
            key.alg == alg && (kid.is_none() || key.kid.as_deref() == kid) && key.enc.is_none_or(|e| e == enc)
        });
        // One private-key operation at most per candidate; a `kid` narrows it to one,
        // and without one only keys of the token's algorithm are tried.
        let mut tried = false;
        for key in candidates {
            tried = true;
            if let Ok((payload, _)) = jwe::deserialize_compact(token, key.decrypter.as_ref()) {
                // RFC 7519 §5.2 asks for `cty: JWT` on nested tokens; some issuers omit
                // it, so a plaintext shaped like a compact JWS counts too. It still has
                // to verify as one.
                let nested = match cty {
                    Some(cty) => is_jwt_media_type(cty),
                    None => looks_like_jws(&payload),
                };
                return Ok(DecryptedJwe { payload, nested, symmetric: alg.is_symmetric() });
            }
        }
        Err(if tried { ValidationError::DecryptionFailed } else { ValidationError::NoDecryptionKey })
    }
}

fn looks_like_jws(payload: &[u8]) -> bool {
    payload.starts_with(b"eyJ") && dots(payload) == 2
}

/// `JWT` or `at+jwt`, case-insensitive, `application/` optional (RFC 7515 §4.1.10).
fn is_jwt_media_type(cty: &str) -> bool {
    let cty = super::header::media_subtype(cty);
    cty.eq_ignore_ascii_case("jwt") || cty.eq_ignore_ascii_case("at+jwt")
}

fn parse_ring(json: &[u8]) -> Result<KeyRing, JwkError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let set: Set = serde_json::from_slice(json).map_err(|_| JwkError::InvalidJson)?;
    let mut ring = KeyRing::default();
    for (index, mut map) in set.keys.into_iter().take(MAX_KEYS).enumerate() {
        let kid = map.get("kid").and_then(|v| v.as_str()).map(|s| s.into());
        let enc = map.get("alg").and_then(|v| v.as_str()).and_then(|a| ENCRYPTIONS.iter().copied().find(|e| *e == a));
        match key_algs(&map) {
            Ok(algs) => {
                // josekit insists that a JWK's `kid` and `alg` match the token's; both
                // checks are ours (above and in `decrypt_with`), so hand it the bare key.
                map.remove("kid");
                map.remove("alg");
                let jwk = match JoseJwk::from_map(map) {
                    Ok(jwk) => jwk,
                    Err(_) => {
                        tracing::warn!(index, "skipping unusable decryption key: invalid JWK");
                        continue;
                    }
                };
                for alg in algs {
                    match alg.decrypter(&jwk) {
                        Ok(decrypter) => ring.keys.push(DecryptionKey { kid: kid.clone(), alg, enc, decrypter }),
                        Err(_) => tracing::warn!(index, ?alg, "decryption key does not fit this algorithm"),
                    }
                }
            }
            Err(error) => {
                let kid: Option<&str> = kid.as_deref();
                tracing::warn!(index, kid = kid.map(truncate), %error, "skipping unusable decryption key");
            }
        }
    }
    Ok(ring)
}

/// The algorithms a private JWK may serve, from its `kty`, `alg`, `use` and `key_ops`.
fn key_algs(map: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<KeyAlg>, JwkError> {
    let str_of = |name: &str| map.get(name).and_then(|v| v.as_str());
    if str_of("use").is_some_and(|u| u != "enc") {
        return Err(JwkError::NotForDecryption);
    }
    let ops = map.get("key_ops").and_then(|v| v.as_array());
    if ops.is_some_and(|ops| !ops.iter().any(|op| matches!(op.as_str(), Some("decrypt" | "unwrapKey")))) {
        return Err(JwkError::NotForDecryption);
    }
    let kty = str_of("kty").ok_or(JwkError::MissingParameter("kty"))?;
    let fitting: Vec<KeyAlg> = match kty {
        "RSA" => {
            if str_of("d").is_none() {
                return Err(JwkError::MissingParameter("d"));
            }
            KeyAlg::RSA.to_vec()
        }
        "EC" => {
            if str_of("d").is_none() {
                return Err(JwkError::MissingParameter("d"));
            }
            KeyAlg::EC.to_vec()
        }
        "oct" => {
            let k = str_of("k").ok_or(JwkError::MissingParameter("k"))?;
            let len = B64.decode(k).map_err(|_| JwkError::InvalidEncoding("k"))?.len();
            KeyAlg::for_symmetric_len(len).to_vec()
        }
        _ => return Err(JwkError::UnsupportedKeyType),
    };
    match str_of("alg") {
        // Some issuers name a `dir` key by the content encryption it serves (RFC 7520
        // §5.6 does): the key is then a direct key of that size.
        Some(name) if ENCRYPTIONS.contains(&name) && kty == "oct" => {
            let key_len = B64.decode(str_of("k").unwrap_or_default()).map_or(0, |k| k.len());
            if Some(key_len) == enc_key_len(name) { Ok(vec![KeyAlg::Dir]) } else { Err(JwkError::AlgorithmMismatch) }
        }
        Some(name) => {
            let alg = KeyAlg::from_name(name).ok_or(JwkError::UnsupportedAlgorithm)?;
            if fitting.contains(&alg) { Ok(vec![alg]) } else { Err(JwkError::AlgorithmMismatch) }
        }
        // Without `alg`, RSA1_5 is never inferred; it must be named on the key.
        None => Ok(fitting.into_iter().filter(|a| *a != KeyAlg::Rsa1_5).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_media_types() {
        for ok in ["JWT", "jwt", "at+jwt", "application/at+JWT", "APPLICATION/jwt"] {
            assert!(is_jwt_media_type(ok), "{ok}");
        }
        for no in ["json", "application/json", "", "jwt+x"] {
            assert!(!is_jwt_media_type(no), "{no}");
        }
    }

    #[test]
    fn key_algorithms_follow_the_key() {
        let oct = |k: &[u8], alg: Option<&str>| {
            let mut m = serde_json::Map::new();
            m.insert("kty".into(), "oct".into());
            m.insert("k".into(), B64.encode(k).into());
            if let Some(alg) = alg {
                m.insert("alg".into(), alg.into());
            }
            key_algs(&m)
        };
        assert_eq!(oct(&[1; 32], None).unwrap(), [KeyAlg::A256Kw, KeyAlg::A256GcmKw, KeyAlg::Dir]);
        assert_eq!(oct(&[1; 16], Some("A128KW")).unwrap(), [KeyAlg::A128Kw]);
        assert_eq!(oct(&[1; 16], Some("A256KW")).unwrap_err(), JwkError::AlgorithmMismatch);
        assert_eq!(oct(&[1; 32], Some("PBES2-HS256+A128KW")).unwrap_err(), JwkError::UnsupportedAlgorithm);
        // A `dir` key named by its content encryption must have that key's length.
        assert_eq!(oct(&[1; 16], Some("A128GCM")).unwrap(), [KeyAlg::Dir]);
        assert_eq!(oct(&[1; 16], Some("A256GCM")).unwrap_err(), JwkError::AlgorithmMismatch);
        assert_eq!(oct(&[1; 32], Some("A128CBC-HS256")).unwrap(), [KeyAlg::Dir]);
    }
}
