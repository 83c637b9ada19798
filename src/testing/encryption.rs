//! Encryption keys for minting JWE access tokens, like an issuer that encrypts them.

use josekit::jwe::{self, JweEncrypter, JweHeader};
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::{Jwk as JoseJwk, KeyPair};
use serde_json::{Map, Value, json};

/// A resource server's encryption key pair (or shared secret), for minting JWE tokens
/// in tests: the issuer encrypts to [`public_jwk`](Self::public_jwk), and the resource
/// server decrypts with [`private_jwks`](Self::private_jwks).
///
/// `Debug` shows the key id and algorithm only.
#[derive(Clone)]
pub struct TestEncryptionKey {
    kid: String,
    alg: &'static str,
    private: JoseJwk,
    public: JoseJwk,
}

impl std::fmt::Debug for TestEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEncryptionKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl TestEncryptionKey {
    /// A fresh key for `alg`: RSA 2048 for the `RSA*` algorithms, P-256 for `ECDH-ES*`,
    /// a secret of the right size for AES key wrap, and 32 bytes for `dir` (A256GCM or
    /// A128CBC-HS256).
    ///
    /// # Panics
    /// On an algorithm this crate does not decrypt (PBES2 is deliberately absent).
    pub fn generate(alg: &str) -> TestEncryptionKey {
        let (alg, (private, public)): (&'static str, _) = match alg {
            "RSA-OAEP" => ("RSA-OAEP", rsa()),
            "RSA-OAEP-256" => ("RSA-OAEP-256", rsa()),
            "RSA1_5" => ("RSA1_5", rsa()),
            "ECDH-ES" => ("ECDH-ES", ec()),
            "ECDH-ES+A128KW" => ("ECDH-ES+A128KW", ec()),
            "ECDH-ES+A192KW" => ("ECDH-ES+A192KW", ec()),
            "ECDH-ES+A256KW" => ("ECDH-ES+A256KW", ec()),
            "A128KW" => ("A128KW", oct(16)),
            "A192KW" => ("A192KW", oct(24)),
            "A256KW" => ("A256KW", oct(32)),
            "dir" => ("dir", oct(32)),
            other => panic!("TestEncryptionKey::generate: unsupported algorithm {other}"),
        };
        let kid = format!("enc-{:016x}", fastrand::u64(..));
        TestEncryptionKey { kid, alg, private, public }
    }

    /// Replaces the key id.
    pub fn with_kid(mut self, kid: impl Into<String>) -> TestEncryptionKey {
        self.kid = kid.into();
        self
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key-management algorithm.
    pub fn alg(&self) -> &str {
        self.alg
    }

    /// The private key as a one-key JWK Set, with `kid`, `alg` and `use: enc`: what a
    /// resource server loads into [`DecryptionKeys`](crate::validate::DecryptionKeys).
    pub fn private_jwks(&self) -> String {
        json!({"keys": [self.with_metadata(&self.private)]}).to_string()
    }

    /// The public key (or, for symmetric algorithms, the shared secret) as a JWK.
    pub fn public_jwk(&self) -> Value {
        self.with_metadata(&self.public)
    }

    fn with_metadata(&self, jwk: &JoseJwk) -> Value {
        let mut map: Map<String, Value> = jwk.as_ref().clone();
        map.insert("kid".into(), self.kid.clone().into());
        map.insert("alg".into(), self.alg.into());
        map.insert("use".into(), "enc".into());
        Value::Object(map)
    }

    /// Encrypts `plaintext` with content encryption `enc`; `cty` marks a nested JWT.
    pub fn encrypt(&self, plaintext: &[u8], enc: &str, cty: Option<&str>) -> String {
        let mut header = Map::new();
        header.insert("enc".into(), enc.into());
        if let Some(cty) = cty {
            header.insert("cty".into(), cty.into());
        }
        self.encrypt_with_header(plaintext, header)
    }

    /// Encrypts with exactly these protected-header members (plus `alg` and `kid` unless
    /// given): for tokens a real issuer would not make, such as `zip` or odd `crit`.
    ///
    /// # Panics
    /// If josekit cannot encrypt with that header (say, an unknown `enc`).
    pub fn encrypt_with_header(&self, plaintext: &[u8], members: Map<String, Value>) -> String {
        let mut header = JweHeader::new();
        header.set_key_id(self.kid.clone());
        for (name, value) in members {
            header.set_claim(&name, Some(value)).expect("a settable JWE header member");
        }
        let encrypter = self.encrypter();
        jwe::serialize_compact(plaintext, &header, encrypter.as_ref()).expect("josekit encrypts the test token")
    }

    fn encrypter(&self) -> Box<dyn JweEncrypter> {
        let jwk = &self.public;
        let made: Result<Box<dyn JweEncrypter>, _> = match self.alg {
            "RSA-OAEP" => jwe::RSA_OAEP.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "RSA-OAEP-256" => jwe::RSA_OAEP_256.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            #[allow(deprecated)]
            "RSA1_5" => jwe::RSA1_5.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "ECDH-ES" => jwe::ECDH_ES.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "ECDH-ES+A128KW" => jwe::ECDH_ES_A128KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "ECDH-ES+A192KW" => jwe::ECDH_ES_A192KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "ECDH-ES+A256KW" => jwe::ECDH_ES_A256KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "A128KW" => jwe::A128KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "A192KW" => jwe::A192KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            "A256KW" => jwe::A256KW.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
            _ => jwe::Dir.encrypter_from_jwk(jwk).map(|e| Box::new(e) as _),
        };
        made.expect("the generated key fits its algorithm")
    }
}

fn rsa() -> (JoseJwk, JoseJwk) {
    let pair = jwe::RSA_OAEP_256.generate_key_pair(2048).expect("RSA key generation");
    (without_alg(pair.to_jwk_private_key()), without_alg(pair.to_jwk_public_key()))
}

fn ec() -> (JoseJwk, JoseJwk) {
    let pair = jwe::ECDH_ES.generate_ec_key_pair(EcCurve::P256).expect("EC key generation");
    (without_alg(pair.to_jwk_private_key()), without_alg(pair.to_jwk_public_key()))
}

/// josekit stamps the generating algorithm on the key; the key serves the one asked for.
fn without_alg(jwk: JoseJwk) -> JoseJwk {
    let mut map: Map<String, Value> = jwk.as_ref().clone();
    map.remove("alg");
    JoseJwk::from_map(map).expect("a generated key is a valid JWK")
}

fn oct(len: u8) -> (JoseJwk, JoseJwk) {
    let key = JoseJwk::generate_oct_key(len).expect("random secret");
    (key.clone(), key)
}
