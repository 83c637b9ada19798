//! The `jwe` target's keys and validators: an RSA-OAEP-256, an ECDH-ES, an A256KW and a
//! `dir` decryption key (fresh per process), and nested tokens signed with the HS256 key.

use std::sync::OnceLock;

use serde_json::Value;
use tower_oauth::Validator;
use tower_oauth::testing::TestEncryptionKey;
use tower_oauth::validate::{DecryptedJwe, DecryptionKeys, ValidationError};

use super::{AUDIENCE, ISSUER, assert_accepted, now, ready, signing};

/// The key-management algorithms, in a fixed order: a structured input picks one by index.
pub const KEY_ALGS: [&str; 4] = ["RSA-OAEP-256", "ECDH-ES", "A256KW", "dir"];

/// The content encryptions (RFC 7518 §5.1), in a fixed order.
pub const ENCS: [&str; 6] = ["A256GCM", "A128GCM", "A192GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"];

/// The `cty` values a plaintext input may carry: none, or one of these.
pub const CTYS: [Option<&str>; 4] = [None, Some("JWT"), Some("at+jwt"), Some("json")];

/// The `kid` of the decryption key for `alg`.
pub fn kid(alg: &str) -> String {
    format!("fuzz-{}", alg.to_ascii_lowercase())
}

/// Everything the `jwe` target decrypts and validates with.
pub struct Encryption {
    /// The keys, in [`KEY_ALGS`] order.
    pub keys: Vec<TestEncryptionKey>,
    /// One nested JWE per key (A256GCM, `cty: JWT`, the HS256 base token inside).
    pub tokens: Vec<String>,
    /// The private keys of all of them.
    pub decryption: DecryptionKeys,
    /// The signing keys and the decryption keys, with the safe defaults.
    pub validator: Validator,
    /// The same, with RSA1_5 allowed and unsigned claims accepted under symmetric keys.
    pub lenient: Validator,
}

/// The keys, tokens and validators, built on first use.
pub fn encryption() -> &'static Encryption {
    static ENCRYPTION: OnceLock<Encryption> = OnceLock::new();
    ENCRYPTION.get_or_init(|| {
        let keys: Vec<TestEncryptionKey> =
            KEY_ALGS.iter().map(|&alg| TestEncryptionKey::generate(alg).with_kid(kid(alg))).collect();
        let mut private = Vec::new();
        for key in &keys {
            let set: Value = serde_json::from_str(&key.private_jwks()).expect("a JWK Set");
            private.extend(set["keys"].as_array().expect("keys").iter().cloned());
        }
        let decryption = DecryptionKeys::from_jwks(serde_json::json!({ "keys": private }).to_string().as_bytes())
            .expect("the test keys load");
        let inner = &signing().tokens[0];
        let tokens = keys.iter().map(|key| key.encrypt(inner.as_bytes(), "A256GCM", Some("JWT"))).collect();
        let builder = || {
            Validator::builder()
                .issuer_with_keys(ISSUER, signing().store.clone())
                .audience(AUDIENCE)
                .algorithms(tower_oauth::Algorithm::ALL)
                .decryption_keys(decryption.clone())
        };
        let validator = builder().build().expect("a valid configuration");
        let lenient = builder()
            .dangerous(|d| {
                d.allow_rsa1_5().accept_unsigned_encrypted_claims();
            })
            .build()
            .expect("a valid configuration");
        Encryption { keys, tokens, decryption, validator, lenient }
    })
}

/// Decrypts `token` with the three keys and the safe defaults.
pub fn decrypt(token: &str) -> Result<DecryptedJwe, ValidationError> {
    encryption().decryption.decrypt(token)
}

/// Validates `token` as of [`NOW`](super::NOW) with both validators; an accepted token
/// meets the policy.
pub fn validate(token: &str) -> [Result<(), ValidationError>; 2] {
    let encryption = encryption();
    [&encryption.validator, &encryption.lenient].map(|validator| {
        let result = ready(validator.validate_at(token, now()));
        result.map(|claims| assert_accepted(&claims, super::NOW))
    })
}
