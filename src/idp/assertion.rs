//! Client assertions (RFC 7523 §2.2 and §3, OpenID Connect Core §9): the JWTs of
//! `private_key_jwt` and `client_secret_jwt`, and the [`ClientKey`] that signs the
//! first.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine as _;

use crate::Secret;
use crate::algorithm::Algorithm;
use crate::jwk::B64;
use crate::signing::{Jti, KeyError, SigningKey, now_secs, push_json_escaped};

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for a slow exchange and some clock
/// skew, short enough that a captured one is soon worthless.
const LIFETIME_SECS: i64 = 60;

/// A client's private key for `private_key_jwt` (RFC 7523 §2.2): it signs a fresh
/// client assertion for every request to the authorization server. The key never
/// leaves the process; the server holds the public half (registered, or from the
/// client's `jwks_uri`).
///
/// Supported algorithms: `RS256` (the default for RSA keys), `PS256` (FAPI 2.0's),
/// `ES256`, `EdDSA`, and the other sizes of each. Cheap to clone, `Send` and `Sync`.
/// `Debug` shows the algorithm, the `kid` and the thumbprint only.
///
/// The assertion's protected header carries `alg` and, when the key has one, `kid`
/// (most servers need it to pick the key); its claims are `iss` and `sub` (the client
/// id), `aud`, a random 128-bit `jti`, `iat` and `exp` a minute later.
///
/// ```
/// use tower_oauth::Algorithm;
/// use tower_oauth::client::ClientKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = ClientKey::generate_for(Algorithm::PS256)?.with_kid("2026-12");
/// // Register this with the authorization server:
/// let public = key.public_jwk();
/// assert!(public.contains(r#""kid":"2026-12""#) && !public.contains(r#""d""#));
/// // Keep this as secret as a password (a file that `ClientKey::from_jwk` reads back):
/// let private = key.private_jwk()?;
/// let again = ClientKey::from_jwk(private.expose())?;
/// assert_eq!(again.kid(), Some("2026-12"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<SigningKey>,
    kid: Option<Arc<str>>,
    /// The base64url protected header and its `.`: the start of every assertion.
    prefix: Arc<str>,
}

impl ClientKey {
    /// Generates a new key for `alg` (RSA keys are 2048 bits), without a `kid`.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnsupportedAlgorithm`] for the HMAC algorithms (use
    /// `client_secret_jwt` for those); [`KeyError::KeyRejected`] if the crypto backend
    /// cannot make a key.
    pub fn generate_for(alg: Algorithm) -> Result<ClientKey, KeyError> {
        Ok(ClientKey::new(SigningKey::generate(alg)?, None))
    }

    /// Loads a private JWK, with the same rules as
    /// [`DpopKey::from_jwk`](crate::client::DpopKey::from_jwk); its `kid`, if any, is
    /// kept and sent in each assertion's header.
    ///
    /// # Errors
    ///
    /// As [`DpopKey::from_jwk`](crate::client::DpopKey::from_jwk).
    pub fn from_jwk(json: &[u8]) -> Result<ClientKey, KeyError> {
        let key = SigningKey::from_jwk(json)?;
        let kid = key.kid().map(Into::into);
        Ok(ClientKey::new(key, kid))
    }

    /// Loads an unencrypted PKCS#8 `PRIVATE KEY` PEM for `alg`, without a `kid`.
    ///
    /// # Errors
    ///
    /// As [`DpopKey::from_pkcs8_pem`](crate::client::DpopKey::from_pkcs8_pem).
    pub fn from_pkcs8_pem(pem: &str, alg: Algorithm) -> Result<ClientKey, KeyError> {
        Ok(ClientKey::new(SigningKey::from_pkcs8_pem(pem, alg)?, None))
    }

    /// Loads a key file: a private JWK (text starting with `{`) or a PKCS#8 PEM, whose
    /// algorithm is then `ES256`, `ES384` or `ES512` for an EC key by its curve,
    /// `EdDSA` for Ed25519, and `RS256` for RSA (load the PEM with
    /// [`from_pkcs8_pem`](Self::from_pkcs8_pem) for `PS256`).
    ///
    /// # Errors
    ///
    /// As [`from_jwk`](Self::from_jwk) and [`from_pkcs8_pem`](Self::from_pkcs8_pem); a
    /// PEM that fits no algorithm gives the last refusal.
    pub fn from_file_contents(text: &str) -> Result<ClientKey, KeyError> {
        if text.trim_start().starts_with('{') {
            return ClientKey::from_jwk(text.as_bytes());
        }
        let mut last = KeyError::InvalidPem("no `PRIVATE KEY` block");
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::ES512, Algorithm::EdDSA, Algorithm::RS256] {
            match ClientKey::from_pkcs8_pem(text, alg) {
                Ok(key) => return Ok(key),
                Err(error @ KeyError::InvalidPem(_)) => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The same key with `kid` in the header of its assertions and in its public JWK.
    #[must_use]
    pub fn with_kid(self, kid: impl Into<String>) -> ClientKey {
        let kid: String = kid.into();
        ClientKey::new_shared(self.key, Some(kid.into()))
    }

    fn new(key: SigningKey, kid: Option<Arc<str>>) -> ClientKey {
        ClientKey::new_shared(Arc::new(key), kid)
    }

    fn new_shared(key: Arc<SigningKey>, kid: Option<Arc<str>>) -> ClientKey {
        let mut header = String::from(r#"{"alg":""#);
        header.push_str(key.alg().as_str());
        header.push('"');
        if let Some(kid) = &kid {
            header.push_str(r#","kid":""#);
            push_json_escaped(&mut header, kid);
            header.push('"');
        }
        header.push('}');
        let mut prefix = B64.encode(header);
        prefix.push('.');
        ClientKey { key, kid, prefix: prefix.into() }
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.key.alg()
    }

    /// The key id sent in each assertion's header, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url.
    pub fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    /// The public key as a JWK to register with the authorization server: the required
    /// members, then `alg`, `use: sig` and `kid` (when it has one).
    pub fn public_jwk(&self) -> String {
        let canonical = self.key.public_jwk();
        let mut out = String::with_capacity(canonical.len() + 64);
        out.push_str(canonical.strip_suffix('}').unwrap_or(canonical));
        out.push_str(r#","alg":""#);
        out.push_str(self.algorithm().as_str());
        out.push_str(r#"","use":"sig""#);
        if let Some(kid) = &self.kid {
            out.push_str(r#","kid":""#);
            push_json_escaped(&mut out, kid);
            out.push('"');
        }
        out.push('}');
        out
    }

    /// The private key as a JWK with `alg` and `kid`. Keep it as secret as the key.
    ///
    /// # Errors
    ///
    /// [`KeyError::KeyRejected`] if the crypto backend cannot export the key.
    pub fn private_jwk(&self) -> Result<Secret, KeyError> {
        match &self.kid {
            // The signing key keeps the kid it was loaded with; one set later is added.
            Some(kid) if self.key.kid() != Some(&**kid) => {
                let jwk = self.key.private_jwk()?;
                let text = std::str::from_utf8(jwk.expose()).map_err(|_| KeyError::KeyRejected("key export failed"))?;
                let mut out = String::from(r#"{"kid":""#);
                push_json_escaped(&mut out, kid);
                out.push_str(r#"","#);
                out.push_str(text.strip_prefix('{').unwrap_or(text));
                Ok(Secret::from(out))
            }
            _ => self.key.private_jwk(),
        }
    }

    /// A fresh assertion naming `client_id` for `audience`.
    pub(crate) fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret, KeyError> {
        self.sign(&claims(client_id, audience)?).map(Secret::from)
    }

    /// A compact JWS of `claims` (a JSON object), with this key's `alg` and `kid`.
    pub(crate) fn sign(&self, claims: &str) -> Result<String, KeyError> {
        let mut jwt =
            String::with_capacity(self.prefix.len() + claims.len() * 4 / 3 + 4 + 2 * self.key.signature_len());
        jwt.push_str(&self.prefix);
        B64.encode_string(claims, &mut jwt);
        self.key.sign_into(&mut jwt)?;
        Ok(jwt)
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid())
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

/// A `client_secret_jwt` assertion: HS256 keyed by the secret (RFC 7518 §3.2).
pub(crate) fn hs256(secret: &[u8], client_id: &str, audience: &str) -> Result<Secret, KeyError> {
    let mut jwt = B64.encode(r#"{"alg":"HS256"}"#);
    jwt.push('.');
    B64.encode_string(claims(client_id, audience)?, &mut jwt);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), jwt.as_bytes());
    jwt.push('.');
    B64.encode_string(tag.as_ref(), &mut jwt);
    Ok(Secret::from(jwt))
}

/// The claims of a client assertion (RFC 7523 §3): `iss` = `sub` = the client id, the
/// audience, a random `jti`, `iat` now and `exp` a minute later.
fn claims(client_id: &str, audience: &str) -> Result<String, KeyError> {
    let jti = Jti::new()?;
    let now = now_secs();
    let mut claims = String::with_capacity(160 + 2 * client_id.len() + audience.len());
    claims.push_str(r#"{"iss":""#);
    push_json_escaped(&mut claims, client_id);
    claims.push_str(r#"","sub":""#);
    push_json_escaped(&mut claims, client_id);
    claims.push_str(r#"","aud":""#);
    push_json_escaped(&mut claims, audience);
    claims.push_str(r#"","jti":""#);
    claims.push_str(jti.as_str());
    claims.push_str(&format!(r#"","iat":{now},"exp":{}}}"#, now.saturating_add(LIFETIME_SECS)));
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Jwk;

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn every_supported_algorithm_signs_assertions_its_public_jwk_verifies() {
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = ClientKey::generate_for(alg).unwrap().with_kid("k1");
            let jwt = key.assertion("svc:1", "https://idp.example").unwrap();
            let jwt = std::str::from_utf8(jwt.expose()).unwrap();
            let (input, signature) = jwt.rsplit_once('.').unwrap();
            let (header, claims) = input.split_once('.').unwrap();
            assert_eq!(decode(header), serde_json::json!({"alg": alg.as_str(), "kid": "k1"}));
            let claims = decode(claims);
            assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("svc:1"), Some("svc:1")));
            assert_eq!(claims["aud"], "https://idp.example");
            assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), LIFETIME_SECS);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
            let public = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
            assert!(public.verify(alg, input.as_bytes(), &B64.decode(signature).unwrap()), "{alg}");
        }
    }

    #[test]
    fn hs256_assertions_are_keyed_by_the_secret() {
        let jwt = hs256(b"0123456789abcdef0123456789abcdef", "c", "https://idp/token").unwrap();
        let jwt = std::str::from_utf8(jwt.expose()).unwrap();
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        assert!(hmac::verify(&key, input.as_bytes(), &B64.decode(signature).unwrap()).is_ok());
        assert_eq!(decode(input.split_once('.').unwrap().0), serde_json::json!({"alg": "HS256"}));
    }

    #[test]
    fn keys_load_from_jwk_or_pem_and_keep_their_kid() {
        let key = ClientKey::generate_for(Algorithm::ES256).unwrap().with_kid("a\"b");
        let public: serde_json::Value = serde_json::from_str(&key.public_jwk()).unwrap();
        assert_eq!(
            (public["kid"].as_str(), public["use"].as_str(), public["alg"].as_str()),
            (Some("a\"b"), Some("sig"), Some("ES256"))
        );
        assert!(public.get("d").is_none());
        let again =
            ClientKey::from_file_contents(std::str::from_utf8(key.private_jwk().unwrap().expose()).unwrap()).unwrap();
        assert_eq!((again.kid(), again.thumbprint()), (Some("a\"b"), key.thumbprint()));
        // A kid set on a shared key.
        let shared = again.clone();
        let renamed = again.with_kid("c");
        assert_eq!((renamed.kid(), renamed.thumbprint()), (Some("c"), shared.thumbprint()));

        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap().to_pkcs8v1().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(ed.as_ref())
        );
        assert_eq!(ClientKey::from_file_contents(&pem).unwrap().algorithm(), Algorithm::EdDSA);
        assert!(matches!(ClientKey::from_file_contents("junk"), Err(KeyError::InvalidPem(_))));
        assert!(matches!(ClientKey::from_file_contents(r#"{"kty":"oct","k":"AAAA"}"#), Err(KeyError::InvalidJwk(_))));
        assert_eq!(ClientKey::generate_for(Algorithm::HS256).unwrap_err(), KeyError::UnsupportedAlgorithm);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = ClientKey::generate_for(Algorithm::ES256).unwrap().with_kid("k");
        let private = key.private_jwk().unwrap();
        let d =
            serde_json::from_slice::<serde_json::Value>(private.expose()).unwrap()["d"].as_str().unwrap().to_owned();
        let debug = format!("{key:?}");
        assert!(debug.contains("ES256") && debug.contains("\"k\"") && !debug.contains(&d), "{debug}");
    }
}
