//! Signing keys for the test issuer: generation, JWK export and JWS signatures.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaEncoding,
};
use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::{Algorithm, KeyFamily};

/// A signing key with its algorithm and key id, as an authorization server holds it.
///
/// Cloning is cheap (the key material is shared). `Debug` shows the algorithm and
/// `kid` only, never private material.
///
/// ```
/// use tower_oauth::Algorithm;
/// use tower_oauth::testing::TestKey;
///
/// let key = TestKey::generate(Algorithm::ES256).with_kid("my-key");
/// let jwk = key.public_jwk();
/// assert_eq!(jwk["kty"], "EC");
/// assert_eq!(jwk["kid"], "my-key");
/// let token = key.sign_compact(r#"{"alg":"ES256","kid":"my-key"}"#, r#"{"sub":"a"}"#);
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[derive(Clone)]
pub struct TestKey {
    alg: Algorithm,
    kid: String,
    material: Arc<Material>,
}

enum Material {
    Rsa(rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

impl TestKey {
    /// Generates a fresh key for `alg` with a random `kid`: RSA 2048 for `RS*`/`PS*`,
    /// the matching NIST curve for `ES*`, Ed25519 for `EdDSA`, and a random secret
    /// as long as the hash output for `HS*` (RFC 7518 §3.2).
    ///
    /// # Panics
    ///
    /// If the system random number generator fails.
    pub fn generate(alg: Algorithm) -> TestKey {
        let material = match alg.key_family() {
            KeyFamily::Rsa => return TestKey::generate_rsa(alg, 2048),
            KeyFamily::EcP256 => Material::ec(&ECDSA_P256_SHA256_FIXED_SIGNING),
            KeyFamily::EcP384 => Material::ec(&ECDSA_P384_SHA384_FIXED_SIGNING),
            KeyFamily::EcP521 => Material::ec(&ECDSA_P521_SHA512_FIXED_SIGNING),
            KeyFamily::Ed25519 => Material::Ed25519(Ed25519KeyPair::generate().expect("Ed25519 key generation failed")),
            KeyFamily::Symmetric => {
                let mut secret = vec![0; hmac_algorithm(alg).digest_algorithm().output_len];
                rand::fill(&mut secret).expect("system random number generator failed");
                return TestKey::hmac(alg, &secret);
            }
        };
        TestKey::new(alg, material)
    }

    /// Generates an RSA key of `bits` (2048, 3072, 4096 or 8192) for an `RS*` or `PS*`
    /// algorithm.
    ///
    /// # Panics
    ///
    /// If `alg` is not an RSA algorithm, `bits` is not a supported size, or key
    /// generation fails.
    pub fn generate_rsa(alg: Algorithm, bits: usize) -> TestKey {
        assert_eq!(alg.key_family(), KeyFamily::Rsa, "{alg} is not an RSA algorithm");
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            _ => panic!("unsupported RSA key size {bits}: use 2048, 3072, 4096 or 8192"),
        };
        let pair = rsa::KeyPair::generate(size).expect("RSA key generation failed");
        TestKey::new(alg, Material::Rsa(pair))
    }

    /// An HMAC key for an `HS*` algorithm with the given shared secret.
    ///
    /// # Panics
    ///
    /// If `alg` is not an HMAC algorithm.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> TestKey {
        // Fail here, not at the first signature, when `alg` is not HMAC.
        hmac_algorithm(alg);
        TestKey::new(alg, Material::Hmac(secret.to_vec()))
    }

    fn new(alg: Algorithm, material: Material) -> TestKey {
        TestKey { alg, kid: random_id(), material: Arc::new(material) }
    }

    /// The same key under another `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> TestKey {
        self.kid = kid.into();
        self
    }

    /// The key id (`kid`) published in the JWK and put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The shared secret of an HMAC key, so that a validator can be configured with
    /// it; `None` for asymmetric keys.
    pub fn hmac_secret(&self) -> Option<&[u8]> {
        match &*self.material {
            Material::Hmac(secret) => Some(secret),
            _ => None,
        }
    }

    /// The key as a JWK (RFC 7517 §4) with `kty`, `kid`, `alg`, `use: "sig"` and the
    /// public parameters (RFC 7518 §6): `n`/`e` for RSA, `crv`/`x`/`y` for EC,
    /// `crv`/`x` for Ed25519 (RFC 8037 §2). An HMAC key has no public part, so its
    /// JWK is `kty: "oct"` with the secret in `k`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &*self.material {
            Material::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Material::Ec(pair) => {
                // SEC 1 §2.3.3 uncompressed point: 0x04 || X || Y, each coordinate full
                // width as RFC 7518 §6.2.1.2 requires.
                let point = pair.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = match self.alg.key_family() {
                    KeyFamily::EcP384 => "P-384",
                    KeyFamily::EcP521 => "P-521",
                    _ => "P-256",
                };
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Material::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
            Material::Hmac(secret) => json!({"kty": "oct", "k": b64(secret)}),
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.alg.as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// The JWS signature of `message` (RFC 7515 §5.1 step 5). ECDSA signatures are
    /// the fixed-width `R || S` form of RFC 7518 §3.4, not DER.
    ///
    /// # Panics
    ///
    /// If the underlying signer fails, which aws-lc-rs only reports for internal errors.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &*self.material {
            Material::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(rsa_encoding(self.alg), &SystemRandom::new(), message, &mut signature)
                    .expect("RSA signing failed");
                signature
            }
            Material::Ec(pair) => {
                pair.sign(&SystemRandom::new(), message).expect("ECDSA signing failed").as_ref().to_vec()
            }
            Material::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Material::Hmac(secret) => {
                let key = hmac::Key::new(hmac_algorithm(self.alg), secret);
                hmac::sign(&key, message).as_ref().to_vec()
            }
        }
    }

    /// A compact JWS over these exact header and payload bytes, for tests that need
    /// byte-exact input (duplicate members, odd whitespace, unusual `alg` values).
    /// Nothing is parsed or checked.
    pub fn sign_compact(&self, header_json: &str, payload_json: &str) -> String {
        let signing_input = format!("{}.{}", b64(header_json), b64(payload_json));
        let signature = b64(self.sign(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Material {
    fn ec(alg: &'static EcdsaSigningAlgorithm) -> Material {
        Material::Ec(EcdsaKeyPair::generate(alg).expect("ECDSA key generation failed"))
    }
}

fn hmac_algorithm(alg: Algorithm) -> hmac::Algorithm {
    match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => panic!("{alg} is not an HMAC algorithm"),
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn RsaEncoding {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        // RFC 7518 §3.5: the PSS salt is as long as the hash output, which is what
        // aws-lc-rs uses.
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

/// base64url without padding, the only encoding JOSE uses (RFC 7515 §2).
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random, URL-safe identifier with 128 bits of entropy, for `kid`, `jti`,
/// authorization codes and refresh tokens alike.
pub(crate) fn random_id() -> String {
    let mut bytes = [0; 16];
    rand::fill(&mut bytes).expect("system random number generator failed");
    b64(bytes)
}
