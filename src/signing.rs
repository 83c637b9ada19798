//! Private signing keys, for the JWTs the client signs: DPoP proofs (RFC 9449) and
//! `private_key_jwt` client assertions (RFC 7523 §2.2).
//!
//! A [`SigningKey`] is loaded once (from a private JWK or a PKCS#8 PEM, or generated),
//! keeps its public JWK in the RFC 7638 canonical form with its thumbprint, and signs
//! compact JWS signing inputs. The public types that hold one,
//! [`DpopKey`](crate::client::DpopKey) and [`ClientKey`](crate::client::ClientKey), add
//! what their JWTs need.

use std::fmt;

use aws_lc_rs::encoding::{AsBigEndian as _, AsDer as _};
use aws_lc_rs::rand;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use serde::Deserialize;

use crate::Secret;
use crate::algorithm::{Algorithm, KeyFamily};
use crate::jwk::B64;

/// The longest signature any supported key makes: RSA with an 8192-bit modulus.
pub(crate) const MAX_SIGNATURE_LEN: usize = 8192 / 8;

/// Why a signing key (a [`DpopKey`](crate::client::DpopKey) or a
/// [`ClientKey`](crate::client::ClientKey)) could not be made or loaded, or a JWT could
/// not be signed.
///
/// Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The algorithm cannot sign with a private key: HMAC (DPoP proofs and `private_key_jwt`
    /// assertions need an asymmetric algorithm), or a name this crate does not know (`none` among them).
    #[error("unsupported signing algorithm")]
    UnsupportedAlgorithm,
    /// The JWK is not a private signing key of a supported type; the reason says what is
    /// wrong (a missing member, a wrong length), never what a member holds.
    #[error("invalid private jwk: {0}")]
    InvalidJwk(&'static str),
    /// The PEM text is not an unencrypted PKCS#8 `PRIVATE KEY`.
    #[error("invalid pkcs#8 pem: {0}")]
    InvalidPem(&'static str),
    /// The crypto backend refused the key (the public part does not match the private
    /// part, an RSA modulus outside 2048–8192 bits, a curve other than the algorithm's)
    /// or could not make or export one.
    #[error("key rejected by the crypto backend: {0}")]
    KeyRejected(&'static str),
    /// The request URL is not an absolute `http` or `https` URL, so it cannot be `htu`.
    #[error("htu is not an absolute http or https url")]
    InvalidHtu,
    /// The crypto backend failed to sign the proof or to draw its `jti`.
    #[error("could not sign the jwt")]
    Signing,
}

/// A fresh `jti` for a JWT the client signs: 128 bits from the OS RNG, base64url
/// (22 characters). RFC 9449 §4.2 asks at least 96 pseudorandom bits of a DPoP proof's
/// `jti`; the same serves client assertions (RFC 7523 §3).
pub(crate) struct Jti([u8; 22]);

impl Jti {
    pub(crate) fn new() -> Result<Jti, KeyError> {
        let mut random = [0u8; 16];
        rand::fill(&mut random).map_err(|_| KeyError::Signing)?;
        let mut jti = [0u8; 22];
        match B64.encode_slice(random, &mut jti) {
            Ok(22) => Ok(Jti(jti)),
            _ => Err(KeyError::Signing),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // base64url output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Seconds since the Unix epoch: a JWT's `iat`.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
}

/// An asymmetric private key that signs JWS (RFC 7515), with its public JWK.
pub(crate) struct SigningKey {
    alg: Algorithm,
    signer: Signer,
    /// The signature's length in bytes, to size each JWT's string exactly.
    signature_len: usize,
    /// The public key in the RFC 7638 canonical form (required members only, sorted).
    public_jwk: Box<str>,
    thumbprint: Box<str>,
    /// The `kid` of the JWK it was loaded from, if any.
    kid: Option<Box<str>>,
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static signature::RsaSignatureEncoding),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key for `alg`. RSA keys are 2048 bits.
    pub(crate) fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        const FAILED: KeyError = KeyError::KeyRejected("key generation failed");
        let signer = match alg.key_family() {
            KeyFamily::EcP256 | KeyFamily::EcP384 | KeyFamily::EcP521 => {
                Signer::Ecdsa(EcdsaKeyPair::generate(ecdsa_signing(alg)?).map_err(|_| FAILED)?)
            }
            KeyFamily::Ed25519 => Signer::Ed25519(Ed25519KeyPair::generate().map_err(|_| FAILED)?),
            KeyFamily::Rsa => {
                let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| FAILED)?;
                Signer::Rsa(key, rsa_padding(alg)?)
            }
            _ => return Err(KeyError::UnsupportedAlgorithm),
        };
        SigningKey::new(alg, signer, None)
    }

    /// Loads a private JWK (RFC 7517, RFC 7518 §6, RFC 8037); see
    /// [`DpopKey::from_jwk`](crate::client::DpopKey::from_jwk) for the rules.
    pub(crate) fn from_jwk(json: &[u8]) -> Result<SigningKey, KeyError> {
        let raw: RawPrivateJwk = serde_json::from_slice(json).map_err(|_| KeyError::InvalidJwk("not a jwk"))?;
        // RFC 7517 §4.2/§4.3: a key meant for something else must not sign.
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::InvalidJwk("`use` is not `sig`"));
        }
        if raw.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "sign")) {
            return Err(KeyError::InvalidJwk("`key_ops` does not include `sign`"));
        }
        let declared = match raw.alg.as_deref() {
            None => None,
            Some(name) => Some(Algorithm::from_name(name).ok_or(KeyError::UnsupportedAlgorithm)?),
        };
        if declared.is_some_and(Algorithm::is_symmetric) {
            return Err(KeyError::UnsupportedAlgorithm);
        }
        let fits = |family: KeyFamily, default: Algorithm| match declared {
            None => Ok(default),
            Some(alg) if alg.key_family() == family => Ok(alg),
            Some(_) => Err(KeyError::InvalidJwk("`alg` does not fit the key type")),
        };
        let (alg, signer) = match raw.kty.as_deref().ok_or(KeyError::InvalidJwk("missing `kty`"))? {
            "EC" => {
                let (family, default) = match raw.crv.as_deref().ok_or(KeyError::InvalidJwk("missing `crv`"))? {
                    "P-256" => (KeyFamily::EcP256, Algorithm::ES256),
                    "P-384" => (KeyFamily::EcP384, Algorithm::ES384),
                    "P-521" => (KeyFamily::EcP521, Algorithm::ES512),
                    _ => return Err(KeyError::InvalidJwk("unsupported `crv`")),
                };
                let alg = fits(family, default)?;
                let size = ec_coordinate_len(family);
                // RFC 7518 §6.2.1.2 and §6.2.2.1: coordinates and `d` are full-length.
                let x = decode_public(raw.x.as_deref(), "missing `x`", "`x` is not base64url")?;
                let y = decode_public(raw.y.as_deref(), "missing `y`", "`y` is not base64url")?;
                let d =
                    decode_private(raw.d.as_ref(), "missing `d`: a public key cannot sign", "`d` is not base64url")?;
                if x.len() != size || y.len() != size {
                    return Err(KeyError::InvalidJwk("wrong coordinate length for the curve"));
                }
                if d.0.len() != size {
                    return Err(KeyError::InvalidJwk("wrong `d` length for the curve"));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                // The backend checks that `d` yields this very point.
                let key = EcdsaKeyPair::from_private_key_and_public_key(ecdsa_signing(alg)?, &d.0, &point)
                    .map_err(rejected)?;
                (alg, Signer::Ecdsa(key))
            }
            "OKP" => {
                if raw.crv.as_deref().ok_or(KeyError::InvalidJwk("missing `crv`"))? != "Ed25519" {
                    return Err(KeyError::InvalidJwk("unsupported `crv`"));
                }
                let alg = fits(KeyFamily::Ed25519, Algorithm::EdDSA)?;
                let x = decode_public(raw.x.as_deref(), "missing `x`", "`x` is not base64url")?;
                let d =
                    decode_private(raw.d.as_ref(), "missing `d`: a public key cannot sign", "`d` is not base64url")?;
                // RFC 8037 §2: both are 32 octets for Ed25519.
                if x.len() != 32 || d.0.len() != 32 {
                    return Err(KeyError::InvalidJwk("wrong key length for Ed25519"));
                }
                let key = Ed25519KeyPair::from_seed_and_public_key(&d.0, &x).map_err(rejected)?;
                (alg, Signer::Ed25519(key))
            }
            "RSA" => {
                let alg = fits(KeyFamily::Rsa, Algorithm::RS256)?;
                // RFC 7518 §6.3.2.7: other primes; aws-lc-rs signs with two-prime keys only.
                if raw.oth.is_some() {
                    return Err(KeyError::InvalidJwk("multi-prime rsa keys are not supported"));
                }
                let n = decode_public(raw.n.as_deref(), "missing `n`", "`n` is not base64url")?;
                let e = decode_public(raw.e.as_deref(), "missing `e`", "`e` is not base64url")?;
                let d =
                    decode_private(raw.d.as_ref(), "missing `d`: a public key cannot sign", "`d` is not base64url")?;
                let p = decode_private(raw.p.as_ref(), "missing `p`", "`p` is not base64url")?;
                let q = decode_private(raw.q.as_ref(), "missing `q`", "`q` is not base64url")?;
                let dp = decode_private(raw.dp.as_ref(), "missing `dp`", "`dp` is not base64url")?;
                let dq = decode_private(raw.dq.as_ref(), "missing `dq`", "`dq` is not base64url")?;
                let qi = decode_private(raw.qi.as_ref(), "missing `qi`", "`qi` is not base64url")?;
                let components = aws_lc_rs::rsa::KeyPairComponents {
                    // The backend wants the public values without leading zeros, which
                    // RFC 7518 §6.3.1 already requires but some encoders add.
                    public_key: signature::RsaPublicKeyComponents {
                        n: strip_leading_zeros(&n),
                        e: strip_leading_zeros(&e),
                    },
                    d: &d.0[..],
                    p: &p.0[..],
                    q: &q.0[..],
                    dP: &dp.0[..],
                    dQ: &dq.0[..],
                    qInv: &qi.0[..],
                };
                // The backend checks that every member belongs to one key, and the size.
                let key = RsaKeyPair::from_components(&components).map_err(rejected)?;
                (alg, Signer::Rsa(key, rsa_padding(alg)?))
            }
            "oct" => return Err(KeyError::InvalidJwk("`oct` keys are symmetric and cannot sign")),
            _ => return Err(KeyError::InvalidJwk("unsupported `kty`")),
        };
        SigningKey::new(alg, signer, raw.kid)
    }

    /// Loads an unencrypted PKCS#8 `PRIVATE KEY` PEM for `alg`.
    pub(crate) fn from_pkcs8_pem(pem: &str, alg: Algorithm) -> Result<SigningKey, KeyError> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        if alg.is_symmetric() {
            return Err(KeyError::UnsupportedAlgorithm);
        }
        let start = pem.find(BEGIN).ok_or(KeyError::InvalidPem("no `PRIVATE KEY` block"))? + BEGIN.len();
        let len = pem[start..].find(END).ok_or(KeyError::InvalidPem("no end of the `PRIVATE KEY` block"))?;
        let body: String = pem[start..start + len].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let body = Scrub(body.into_bytes());
        let der = Scrub(
            base64::engine::general_purpose::STANDARD
                .decode(&body.0)
                .map_err(|_| KeyError::InvalidPem("the block is not base64"))?,
        );
        let signer = match alg.key_family() {
            KeyFamily::EcP256 | KeyFamily::EcP384 | KeyFamily::EcP521 => {
                // The backend checks that the key is on the algorithm's curve.
                Signer::Ecdsa(EcdsaKeyPair::from_pkcs8(ecdsa_signing(alg)?, &der.0).map_err(rejected)?)
            }
            KeyFamily::Ed25519 => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(&der.0).map_err(rejected)?),
            KeyFamily::Rsa => Signer::Rsa(RsaKeyPair::from_pkcs8(&der.0).map_err(rejected)?, rsa_padding(alg)?),
            _ => return Err(KeyError::UnsupportedAlgorithm),
        };
        SigningKey::new(alg, signer, None)
    }

    fn new(alg: Algorithm, signer: Signer, kid: Option<String>) -> Result<SigningKey, KeyError> {
        let (members, signature_len): (Vec<(&str, String)>, usize) = match &signer {
            Signer::Ecdsa(key) => {
                // An uncompressed SEC 1 point: 0x04, then x and y at full length.
                let size = ec_coordinate_len(alg.key_family());
                let point = key.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .filter(|xy| xy.len() == 2 * size)
                    .ok_or(KeyError::KeyRejected("unexpected public key form"))?
                    .split_at(size);
                let crv = match alg.key_family() {
                    KeyFamily::EcP256 => "P-256",
                    KeyFamily::EcP384 => "P-384",
                    _ => "P-521",
                };
                (vec![("crv", crv.into()), ("kty", "EC".into()), ("x", B64.encode(x)), ("y", B64.encode(y))], 2 * size)
            }
            Signer::Ed25519(key) => (
                vec![("crv", "Ed25519".into()), ("kty", "OKP".into()), ("x", B64.encode(key.public_key().as_ref()))],
                64,
            ),
            Signer::Rsa(key, _) => {
                let public = key.public_key();
                let n = B64.encode(public.modulus().big_endian_without_leading_zero());
                let e = B64.encode(public.exponent().big_endian_without_leading_zero());
                (vec![("e", e), ("kty", "RSA".into()), ("n", n)], key.public_modulus_len())
            }
        };
        if signature_len > MAX_SIGNATURE_LEN {
            return Err(KeyError::KeyRejected("key too large"));
        }
        let members: Vec<(&str, &str)> = members.iter().map(|(name, value)| (*name, value.as_str())).collect();
        // RFC 7638 §3.2: the required public members, in lexicographic order. The public
        // JWK is written in that canonical form, so it is both what a JWT header embeds
        // and the thumbprint's input.
        let public_jwk = crate::jwk::canonical(&members);
        let thumbprint = B64.encode(crate::jwk::thumbprint(&members));
        Ok(SigningKey {
            alg,
            signer,
            signature_len,
            public_jwk: public_jwk.into(),
            thumbprint: thumbprint.into(),
            kid: kid.map(Into::into),
        })
    }

    /// The algorithm it signs with.
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK, canonical (RFC 7638 §3.2).
    pub(crate) fn public_jwk(&self) -> &str {
        &self.public_jwk
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The `kid` of the JWK it was loaded from.
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The length of its signatures, in bytes.
    pub(crate) fn signature_len(&self) -> usize {
        self.signature_len
    }

    /// Signs `signing_input` (the JWS `header.claims`, RFC 7515 §5.1) and appends `.`
    /// and the base64url signature to it: a compact JWS.
    pub(crate) fn sign_into(&self, signing_input: &mut String) -> Result<(), KeyError> {
        let mut signature = [0u8; MAX_SIGNATURE_LEN];
        let len = self.signer.sign(signing_input.as_bytes(), &mut signature)?;
        signing_input.push('.');
        B64.encode_string(&signature[..len], signing_input);
        Ok(())
    }

    /// The private key as a JWK with `alg` (and `kid` when it has one).
    pub(crate) fn private_jwk(&self) -> Result<Secret, KeyError> {
        const FAILED: KeyError = KeyError::KeyRejected("key export failed");
        let public = self.public_jwk.strip_prefix('{').unwrap_or_default();
        let mut out = String::with_capacity(self.public_jwk.len() * 3 + 32);
        out.push_str(r#"{"alg":""#);
        out.push_str(self.alg.as_str());
        out.push_str(r#"","#);
        match &self.signer {
            Signer::Ecdsa(key) => {
                // RFC 7518 §6.2.2.1: `d` at the full length of the curve order.
                let d = key.private_key().as_be_bytes().map_err(|_| FAILED)?;
                push_b64_member(&mut out, "d", d.as_ref());
            }
            Signer::Ed25519(key) => {
                // RFC 8037 §2: `d` is the 32-octet seed.
                let seed = key.seed().map_err(|_| FAILED)?;
                let seed = seed.as_be_bytes().map_err(|_| FAILED)?;
                push_b64_member(&mut out, "d", seed.as_ref());
            }
            Signer::Rsa(key, _) => {
                let der = key.as_der().map_err(|_| FAILED)?;
                let [d, p, q, dp, dq, qi] = rsa_private_members(der.as_ref()).ok_or(FAILED)?;
                for (name, value) in [("d", d), ("dp", dp), ("dq", dq), ("p", p), ("q", q), ("qi", qi)] {
                    push_b64_member(&mut out, name, strip_leading_zeros(value));
                }
            }
        }
        if let Some(kid) = &self.kid {
            out.push_str(r#""kid":""#);
            push_json_escaped(&mut out, kid);
            out.push_str(r#"","#);
        }
        out.push_str(public);
        Ok(Secret::from(out))
    }
}

impl Signer {
    /// Signs `message` into `out`, returning the signature's length.
    fn sign(&self, message: &[u8], out: &mut [u8; MAX_SIGNATURE_LEN]) -> Result<usize, KeyError> {
        let signature = match self {
            // RFC 7518 §3.4: a JWS ECDSA signature is r || s at fixed length (the FIXED
            // signing algorithms), not ASN.1 DER.
            Signer::Ecdsa(key) => key.sign(&rand::SystemRandom::new(), message),
            Signer::Ed25519(key) => key.try_sign(message),
            Signer::Rsa(key, padding) => {
                let len = key.public_modulus_len();
                let slot = out.get_mut(..len).ok_or(KeyError::Signing)?;
                key.sign(*padding, &rand::SystemRandom::new(), message, slot).map_err(|_| KeyError::Signing)?;
                return Ok(len);
            }
        };
        let signature = signature.map_err(|_| KeyError::Signing)?;
        let signature = signature.as_ref();
        out.get_mut(..signature.len()).ok_or(KeyError::Signing)?.copy_from_slice(signature);
        Ok(signature.len())
    }
}

#[derive(Deserialize)]
struct RawPrivateJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<Secret>,
    p: Option<Secret>,
    q: Option<Secret>,
    dp: Option<Secret>,
    dq: Option<Secret>,
    qi: Option<Secret>,
    oth: Option<serde::de::IgnoredAny>,
    kid: Option<String>,
}

/// Decoded private key bytes, overwritten before they are freed (best effort: the
/// backend keeps its own copy, which it clears itself).
struct Scrub(Vec<u8>);

impl Drop for Scrub {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the compiler from dropping the writes as dead stores.
        std::hint::black_box(&self.0);
    }
}

fn decode_public(value: Option<&str>, missing: &'static str, invalid: &'static str) -> Result<Vec<u8>, KeyError> {
    B64.decode(value.ok_or(KeyError::InvalidJwk(missing))?).map_err(|_| KeyError::InvalidJwk(invalid))
}

fn decode_private(value: Option<&Secret>, missing: &'static str, invalid: &'static str) -> Result<Scrub, KeyError> {
    let value = value.ok_or(KeyError::InvalidJwk(missing))?;
    B64.decode(value.expose()).map(Scrub).map_err(|_| KeyError::InvalidJwk(invalid))
}

fn rejected(error: aws_lc_rs::error::KeyRejected) -> KeyError {
    KeyError::KeyRejected(error.description_())
}

fn ecdsa_signing(alg: Algorithm) -> Result<&'static signature::EcdsaSigningAlgorithm, KeyError> {
    match alg {
        Algorithm::ES256 => Ok(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Ok(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::ES512 => Ok(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => Err(KeyError::UnsupportedAlgorithm),
    }
}

fn rsa_padding(alg: Algorithm) -> Result<&'static signature::RsaSignatureEncoding, KeyError> {
    match alg {
        Algorithm::RS256 => Ok(&signature::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Ok(&signature::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Ok(&signature::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Ok(&signature::RSA_PSS_SHA256),
        Algorithm::PS384 => Ok(&signature::RSA_PSS_SHA384),
        Algorithm::PS512 => Ok(&signature::RSA_PSS_SHA512),
        _ => Err(KeyError::UnsupportedAlgorithm),
    }
}

pub(crate) fn ec_coordinate_len(family: KeyFamily) -> usize {
    match family {
        KeyFamily::EcP256 => 32,
        KeyFamily::EcP384 => 48,
        _ => 66,
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn push_b64_member(out: &mut String, name: &str, bytes: &[u8]) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":\"");
    B64.encode_string(bytes, out);
    out.push_str("\",");
}

/// Appends `value` as the inside of a JSON string (RFC 8259 §7): quote, backslash and
/// control characters escaped, everything else as it is.
pub(crate) fn push_json_escaped(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every escaped byte is ASCII, so `i` is a character boundary.
        out.push_str(&value[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
}

/// The private members `d`, `p`, `q`, `dp`, `dq`, `qi` of an RSA key from its PKCS#8
/// DER (RFC 5208 §5 `PrivateKeyInfo` holding an RFC 8017 §A.1.2 `RSAPrivateKey`).
fn rsa_private_members(pkcs8: &[u8]) -> Option<[&[u8]; 6]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (info, _) = der_expect(pkcs8, SEQUENCE)?;
    let (_version, rest) = der_expect(info, INTEGER)?;
    let (_algorithm, rest) = der_expect(rest, SEQUENCE)?;
    let (private_key, _) = der_expect(rest, OCTET_STRING)?;
    let (mut fields, _) = der_expect(private_key, SEQUENCE)?;
    // version, n, e, d, p, q, dP, dQ, qInv
    let mut values = [&[][..]; 9];
    for value in &mut values {
        let (integer, rest) = der_expect(fields, INTEGER)?;
        *value = integer;
        fields = rest;
    }
    let [_, _, _, d, p, q, dp, dq, qi] = values;
    Some([d, p, q, dp, dq, qi])
}

/// One DER element of type `tag` at the start of `input`: its contents and what follows.
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (len, rest) = rest.split_at(octets);
        (len.iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}
