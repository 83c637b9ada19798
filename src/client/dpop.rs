//! The client's DPoP key and the proofs it signs (RFC 9449).
//!
//! A [`DpopKey`] holds a private signing key in memory and makes one proof JWT per
//! request (RFC 9449 §4.2). The protected header never changes for a key, so it is
//! encoded once when the key is made; a proof then costs one short claims string, a
//! SHA-256 of the access token (for `ath`), 16 random bytes (for `jti`) and the
//! signature, which dominates.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;

use crate::Secret;
use crate::algorithm::Algorithm;
use crate::jwk::B64;
use crate::signing::{Jti, KeyError, SigningKey, now_secs, push_json_escaped};

/// A client's DPoP key (RFC 9449): a private signing key kept in memory, never printed.
///
/// Cheap to clone (the key is shared), `Send` and `Sync`. `Debug` shows the algorithm
/// and the thumbprint only.
///
/// Supported algorithms: `ES256` (the default), `ES384`, `ES512`, `EdDSA` (Ed25519),
/// and `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512` (RSA, 2048 to 8192 bits).
///
/// ```
/// use tower_oauth::client::DpopKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = DpopKey::generate()?;
/// let url: url::Url = "https://api.example/x".parse()?;
/// let proof = key.proof(&http::Method::GET, &url, Some("token"), None)?;
/// // Send it as the `DPoP` header, with `Authorization: DPoP token`.
/// assert_eq!(proof.split('.').count(), 3);
/// // The authorization server binds tokens to this value (`cnf.jkt`, `dpop_jkt`).
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    /// The base64url protected header and its `.`: the start of every proof.
    prefix: Box<str>,
    /// The nonce each server (by origin) last sent (RFC 9449 §8.2), for the next proof.
    nonces: std::sync::Mutex<std::collections::HashMap<Box<str>, Box<str>>>,
}

/// The most servers whose nonces a key remembers; past it, all are forgotten (a
/// server that needs one asks again).
const MAX_REMEMBERED_NONCES: usize = 256;

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.inner.key.alg())
            .field("thumbprint", &self.inner.key.thumbprint())
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// Generates a new `ES256` (P-256) key: small, fast to sign with, and the DPoP
    /// algorithm authorization servers most often support.
    ///
    /// # Errors
    ///
    /// [`KeyError::KeyRejected`] if the crypto backend cannot make a key.
    pub fn generate() -> Result<DpopKey, KeyError> {
        DpopKey::generate_for(Algorithm::ES256)
    }

    /// Generates a new key for `alg`. RSA keys are 2048 bits (and take tens of
    /// milliseconds to make).
    ///
    /// # Errors
    ///
    /// [`KeyError::UnsupportedAlgorithm`] for the HMAC algorithms;
    /// [`KeyError::KeyRejected`] if the crypto backend cannot make a key.
    pub fn generate_for(alg: Algorithm) -> Result<DpopKey, KeyError> {
        DpopKey::new(SigningKey::generate(alg)?)
    }

    /// Loads a private JWK (RFC 7517, RFC 7518 §6): `EC` on P-256, P-384 or P-521 with
    /// `d`; `OKP` Ed25519 (RFC 8037) with `d`; or two-prime `RSA` with `d`, `p`, `q`,
    /// `dp`, `dq` and `qi`. The public members must match the private ones.
    ///
    /// Without an `alg` member the algorithm follows the key: `ES256`, `ES384` or `ES512`
    /// by curve, `EdDSA` for Ed25519, and `RS256` for RSA (the RSA algorithm servers
    /// most often accept; give `alg` for `PS256` and the others). `kid`, `x5c` and other members are ignored;
    /// `use`, if present, must be `sig`, and `key_ops`, if present, must include `sign`.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidJwk`] for a document that is not a private signing key of
    /// a supported type (a public key, an `oct` key, a wrong curve, a bad length),
    /// [`KeyError::UnsupportedAlgorithm`] for an `alg` that cannot sign proofs, and
    /// [`KeyError::KeyRejected`] when the members do not form one valid key.
    pub fn from_jwk(json: &[u8]) -> Result<DpopKey, KeyError> {
        DpopKey::new(SigningKey::from_jwk(json)?)
    }

    /// Loads an unencrypted PKCS#8 `PRIVATE KEY` PEM (as `openssl genpkey` writes) for
    /// `alg`, which must fit the key: an EC key on the algorithm's curve, an Ed25519 key
    /// for `EdDSA`, an RSA key for `RS*` and `PS*`.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPem`] for text without one `PRIVATE KEY` block of valid
    /// base64 (`EC PRIVATE KEY`, `RSA PRIVATE KEY` and `ENCRYPTED PRIVATE KEY` blocks
    /// among them), [`KeyError::UnsupportedAlgorithm`] for HMAC, and
    /// [`KeyError::KeyRejected`] for a key that does not fit `alg` or is invalid.
    pub fn from_pkcs8_pem(pem: &str, alg: Algorithm) -> Result<DpopKey, KeyError> {
        DpopKey::new(SigningKey::from_pkcs8_pem(pem, alg)?)
    }

    fn new(key: SigningKey) -> Result<DpopKey, KeyError> {
        // RFC 9449 §4.2: `typ` dpop+jwt, `alg`, and `jwk` with the public key only.
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{}}}"#, key.alg().as_str(), key.public_jwk());
        let mut prefix = B64.encode(header);
        prefix.push('.');
        Ok(DpopKey { inner: Arc::new(Inner { key, prefix: prefix.into(), nonces: std::sync::Mutex::default() }) })
    }

    /// Remembers the nonce the server at `origin` sent (a `DPoP-Nonce` header), for
    /// the next proof to it.
    pub(crate) fn remember_nonce(&self, origin: &str, nonce: &str) {
        let mut nonces = self.inner.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if nonces.len() >= MAX_REMEMBERED_NONCES && !nonces.contains_key(origin) {
            nonces.clear();
        }
        nonces.insert(origin.into(), nonce.into());
    }

    /// A proof for a request to `htu`, with the nonce its server last sent.
    pub(crate) fn proof_for(
        &self,
        htm: &http::Method,
        htu: &(impl Htu + ?Sized),
        access_token: Option<&str>,
    ) -> Result<String, KeyError> {
        let nonce = self.nonce_for(&origin(htu)?);
        self.proof(htm, htu, access_token, nonce.as_deref())
    }

    /// The nonce the server at `origin` last sent, if any.
    pub(crate) fn nonce_for(&self, origin: &str) -> Option<String> {
        let nonces = self.inner.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        nonces.get(origin).map(|nonce| nonce.to_string())
    }

    /// The algorithm the key signs proofs with (the proof header's `alg`).
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.alg()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url without padding: the value of
    /// `cnf.jkt` in a bound token (RFC 9449 §6.1) and of the `dpop_jkt` authorization
    /// request parameter (§10).
    pub fn thumbprint(&self) -> &str {
        self.inner.key.thumbprint()
    }

    /// The public key as a compact JWK with the required members only (`crv`, `kty`,
    /// `x`, `y`; `crv`, `kty`, `x`; or `e`, `kty`, `n`), in RFC 7638 order. It has no
    /// private members, `kid` or `alg`.
    pub fn public_jwk(&self) -> &str {
        self.inner.key.public_jwk()
    }

    /// The private key as a JWK with `alg`, for storing the key (say, in a file that
    /// [`DpopKey::from_jwk`] reads back). Keep it as secret as the key itself.
    ///
    /// # Errors
    ///
    /// [`KeyError::KeyRejected`] if the crypto backend cannot export the key (not
    /// expected for a key it holds).
    pub fn private_jwk(&self) -> Result<Secret, KeyError> {
        self.inner.key.private_jwk()
    }

    /// Signs a proof JWT for one request: `htm` is its method, `htu` its URL (the query
    /// and fragment are dropped, RFC 9449 §4.2), `access_token` the token sent with it
    /// (bound through `ath`), and `nonce` the server's latest `DPoP-Nonce`, if any (§8, §9).
    ///
    /// The claims are `jti` (128 random bits), `htm`, `htu`, `iat` (now), then `ath`
    /// and `nonce` when given. The result goes in the request's `DPoP` header.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidHtu`] for a URL that is not absolute `http` or `https`;
    /// [`KeyError::Signing`] if the crypto backend fails.
    pub fn proof(
        &self,
        htm: &http::Method,
        htu: &(impl Htu + ?Sized),
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, KeyError> {
        let jti = Jti::new()?;
        self.proof_at(htm, htu, access_token, nonce, now_secs(), jti.as_str())
    }

    /// [`DpopKey::proof`] with a given `iat` and `jti`, so tests can pin them.
    pub(crate) fn proof_at(
        &self,
        htm: &http::Method,
        htu: &(impl Htu + ?Sized),
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
        jti: &str,
    ) -> Result<String, KeyError> {
        let inner = &*self.inner;
        let mut claims = String::with_capacity(160 + nonce.map_or(0, str::len));
        claims.push_str(r#"{"jti":""#);
        push_json_escaped(&mut claims, jti);
        claims.push_str(r#"","htm":""#);
        push_json_escaped(&mut claims, htm.as_str());
        claims.push_str(r#"","htu":""#);
        htu.write_htu(&mut claims)?;
        claims.push_str(r#"","iat":"#);
        // Writing to a String cannot fail.
        let _ = write!(claims, "{iat}");
        if let Some(token) = access_token {
            // RFC 9449 §4.2: `ath` is the base64url SHA-256 of the token's ASCII.
            let hash = digest::digest(&digest::SHA256, token.as_bytes());
            claims.push_str(r#","ath":""#);
            B64.encode_string(hash.as_ref(), &mut claims);
            claims.push('"');
        }
        if let Some(nonce) = nonce {
            claims.push_str(r#","nonce":""#);
            push_json_escaped(&mut claims, nonce);
            claims.push('"');
        }
        claims.push('}');

        let encoded = |len: usize| base64::encoded_len(len, false).unwrap_or(0);
        let mut proof =
            String::with_capacity(inner.prefix.len() + encoded(claims.len()) + 1 + encoded(inner.key.signature_len()));
        proof.push_str(&inner.prefix);
        B64.encode_string(claims.as_bytes(), &mut proof);
        inner.key.sign_into(&mut proof)?;
        Ok(proof)
    }
}

/// A request URL that can be a proof's `htu` (RFC 9449 §4.2): a [`url::Url`] (what
/// reqwest sends), an [`http::Uri`] (what a Tower client sends), or a `str`, which is
/// parsed as a URL first.
///
/// The `htu` is the scheme, host, port (unless the scheme's default) and path, without
/// user info, query or fragment. Scheme and host are lower case. The scheme must be
/// `http` or `https`.
pub trait Htu: sealed::Sealed {}

/// The origin (`scheme://host:port`) of a URL: whose nonce a proof carries.
pub(crate) fn origin(htu: &(impl Htu + ?Sized)) -> Result<String, KeyError> {
    let mut out = String::new();
    sealed::Sealed::write_htu(htu, &mut out)?;
    let start = out.find("://").map_or(0, |i| i + 3);
    if let Some(slash) = out[start..].find('/') {
        out.truncate(start + slash);
    }
    Ok(out)
}

mod sealed {
    /// Writes `htu`, already JSON-escaped, into a proof's claims; crate-only, so the
    /// types that can be an `htu` stay the crate's choice.
    #[allow(unreachable_pub)] // Nameable by no one outside the crate: the trait is sealed.
    pub trait Sealed {
        fn write_htu(&self, out: &mut String) -> Result<(), super::KeyError>;
    }
}

impl Htu for url::Url {}
impl sealed::Sealed for url::Url {
    fn write_htu(&self, out: &mut String) -> Result<(), KeyError> {
        // `url` has already lower-cased the scheme and host and dropped a default port.
        if !matches!(self.scheme(), "https" | "http") || !self.has_host() {
            return Err(KeyError::InvalidHtu);
        }
        out.push_str(self.scheme());
        out.push_str("://");
        // RFC 9110 §4.2.4: a target URI carries no user info.
        push_json_escaped(out, &self[url::Position::BeforeHost..url::Position::AfterPath]);
        Ok(())
    }
}

impl Htu for http::Uri {}
impl sealed::Sealed for http::Uri {
    fn write_htu(&self, out: &mut String) -> Result<(), KeyError> {
        let scheme = self.scheme_str().ok_or(KeyError::InvalidHtu)?;
        let (scheme, default_port) = if scheme.eq_ignore_ascii_case("https") {
            ("https", 443)
        } else if scheme.eq_ignore_ascii_case("http") {
            ("http", 80)
        } else {
            return Err(KeyError::InvalidHtu);
        };
        let host = self.host().filter(|host| !host.is_empty()).ok_or(KeyError::InvalidHtu)?;
        // RFC 3986 §6.2.2.1 and §6.2.3: scheme and host compare case-insensitively and a
        // default port is the same as none, so write the form `url::Url` would, which is
        // what servers most often compare against.
        out.push_str(scheme);
        out.push_str("://");
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            push_json_escaped(out, &host.to_ascii_lowercase());
        } else {
            push_json_escaped(out, host);
        }
        if let Some(port) = self.port_u16().filter(|&port| port != default_port) {
            let _ = write!(out, ":{port}");
        }
        match self.path() {
            "" => out.push('/'),
            path => push_json_escaped(out, path),
        }
        Ok(())
    }
}

impl Htu for str {}
impl sealed::Sealed for str {
    fn write_htu(&self, out: &mut String) -> Result<(), KeyError> {
        url::Url::parse(self).map_err(|_| KeyError::InvalidHtu)?.write_htu(out)
    }
}

impl Htu for String {}
impl sealed::Sealed for String {
    fn write_htu(&self, out: &mut String) -> Result<(), KeyError> {
        self.as_str().write_htu(out)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

    use super::*;
    use crate::Jwk;
    use crate::signing::ec_coordinate_len;

    const ALGORITHMS: [Algorithm; 10] = Algorithm::ASYMMETRIC;

    /// RFC 7515 Appendix A.3: the ECDSA P-256 key.
    const RFC7515_EC: &str = r#"{"kty":"EC","crv":"P-256",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

    struct Parts {
        header: serde_json::Value,
        claims: serde_json::Value,
        signing_input: String,
        signature: Vec<u8>,
    }

    fn parts(proof: &str) -> Parts {
        let (signing_input, signature) = proof.rsplit_once('.').unwrap();
        let (header, claims) = signing_input.split_once('.').unwrap();
        Parts {
            header: serde_json::from_slice(&B64.decode(header).unwrap()).unwrap(),
            claims: serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap(),
            signing_input: signing_input.to_owned(),
            signature: B64.decode(signature).unwrap(),
        }
    }

    fn now() -> i64 {
        crate::signing::now_secs()
    }

    fn url(s: &str) -> url::Url {
        s.parse().unwrap()
    }

    #[test]
    fn every_algorithm_signs_proofs_the_crates_verifier_accepts() {
        for alg in ALGORITHMS {
            let key = DpopKey::generate_for(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let proof = key.proof(&http::Method::POST, &url("https://api.example/x?q=1#f"), Some("tok"), None).unwrap();
            let parts = parts(&proof);
            let public = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
            assert!(public.verify(alg, parts.signing_input.as_bytes(), &parts.signature), "{alg}");
            // A changed byte no longer verifies.
            let mut tampered = parts.signing_input.clone().into_bytes();
            tampered[0] ^= 1;
            assert!(!public.verify(alg, &tampered, &parts.signature), "{alg}");
            assert_eq!(parts.header["alg"], alg.as_str());
            if matches!(alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512) {
                // RFC 7518 §3.4: r || s at fixed length, not DER.
                let size = ec_coordinate_len(alg.key_family());
                assert_eq!(parts.signature.len(), 2 * size, "{alg}");
            }
        }
    }

    #[test]
    fn the_header_has_typ_alg_and_the_public_jwk_only() {
        let key = DpopKey::generate().unwrap();
        let parts = parts(&key.proof(&http::Method::GET, &url("https://a.example/"), None, None).unwrap());
        let header = parts.header.as_object().unwrap();
        assert_eq!(header.len(), 3);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        let jwk = header["jwk"].as_object().unwrap();
        assert!(!jwk.contains_key("d"));
        let keys: Vec<&str> = jwk.keys().map(String::as_str).collect();
        assert_eq!(keys, ["crv", "kty", "x", "y"]);
        assert_eq!(serde_json::to_string(&header["jwk"]).unwrap(), key.public_jwk());
    }

    #[test]
    fn the_claims_name_the_request_and_the_time() {
        let key = DpopKey::generate().unwrap();
        let before = now();
        let proof = key.proof(&http::Method::DELETE, &url("https://API.example:443/a/b?x=1#frag"), None, None).unwrap();
        let claims = parts(&proof).claims;
        assert_eq!(claims["htm"], "DELETE");
        assert_eq!(claims["htu"], "https://api.example/a/b");
        let iat = claims["iat"].as_i64().unwrap();
        assert!(iat >= before && iat <= now() + 1, "{iat}");
        assert!(claims.get("ath").is_none());
        assert!(claims.get("nonce").is_none());
        assert_eq!(claims.as_object().unwrap().len(), 4);
    }

    #[test]
    fn every_proof_has_its_own_128_bit_jti() {
        let key = DpopKey::generate().unwrap();
        let target = url("https://api.example/");
        let one = parts(&key.proof(&http::Method::GET, &target, None, None).unwrap()).claims;
        let two = parts(&key.proof(&http::Method::GET, &target, None, None).unwrap()).claims;
        let (one, two) = (one["jti"].as_str().unwrap(), two["jti"].as_str().unwrap());
        assert_ne!(one, two);
        assert_eq!(B64.decode(one).unwrap().len(), 16);
    }

    #[test]
    fn ath_is_the_base64url_sha256_of_the_access_token() {
        // FIPS 180-2 Appendix B.1: SHA-256("abc").
        let hash = digest::digest(&digest::SHA256, b"abc");
        let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let expected = B64.encode(hash);
        assert_eq!(expected, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        let key = DpopKey::generate().unwrap();
        let claims =
            parts(&key.proof(&http::Method::GET, &url("https://a.example/"), Some("abc"), None).unwrap()).claims;
        assert_eq!(claims["ath"], expected);
    }

    #[test]
    fn the_nonce_is_included_only_when_given() {
        let key = DpopKey::generate().unwrap();
        let target = url("https://a.example/");
        let with = parts(&key.proof(&http::Method::GET, &target, None, Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")).unwrap());
        assert_eq!(with.claims["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
        let without = parts(&key.proof(&http::Method::GET, &target, None, None).unwrap());
        assert!(without.claims.get("nonce").is_none());
    }

    #[test]
    fn strings_in_the_claims_are_json_escaped() {
        let key = DpopKey::generate().unwrap();
        let nonce = "q\"b\\s/\u{1}\n\t\u{1f}é\u{2028}😀";
        let method = http::Method::from_bytes(b"PATCH").unwrap();
        let proof = key
            .proof_at(&method, &url("https://a.example/p%22a\"th/ü"), Some("t"), Some(nonce), -5, "j\"t\\i")
            .unwrap();
        let parts = parts(&proof);
        assert_eq!(parts.claims["nonce"], nonce);
        assert_eq!(parts.claims["jti"], "j\"t\\i");
        assert_eq!(parts.claims["iat"], -5);
        assert_eq!(parts.claims["htu"], url("https://a.example/p%22a\"th/ü").as_str());
        assert!(Jwk::from_json(key.public_jwk().as_bytes()).unwrap().verify(
            Algorithm::ES256,
            parts.signing_input.as_bytes(),
            &parts.signature
        ));
        let mut escaped = String::new();
        push_json_escaped(&mut escaped, nonce);
        assert_eq!(format!("\"{escaped}\""), serde_json::to_string(nonce).unwrap());
    }

    #[test]
    fn a_pinned_iat_and_jti_make_the_same_ed25519_proof_twice() {
        let key = DpopKey::generate_for(Algorithm::EdDSA).unwrap();
        let target = url("https://a.example/r");
        // Ed25519 is deterministic (RFC 8032), so the whole proof repeats.
        let one = key.proof_at(&http::Method::GET, &target, Some("t"), None, 1_700_000_000, "abc").unwrap();
        let two = key.proof_at(&http::Method::GET, &target, Some("t"), None, 1_700_000_000, "abc").unwrap();
        assert_eq!(one, two);
        let claims = parts(&one).claims;
        assert_eq!(
            serde_json::to_string(&claims).unwrap().len(),
            B64.decode(one.split('.').nth(1).unwrap()).unwrap().len(),
            "no whitespace in the claims"
        );
    }

    #[test]
    fn htu_drops_user_info_query_fragment_and_default_port() {
        let cases = [
            ("https://user:pw@Api.Example:443/a%20b?x=1#f", "https://api.example/a%20b"),
            ("http://api.example:80", "http://api.example/"),
            ("http://api.example:8080/p/", "http://api.example:8080/p/"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ];
        for (input, expected) in cases {
            let mut from_url = String::new();
            sealed::Sealed::write_htu(&url(input), &mut from_url).unwrap();
            assert_eq!(from_url, expected, "{input} as url::Url");
            let mut from_uri = String::new();
            sealed::Sealed::write_htu(&input.parse::<http::Uri>().unwrap(), &mut from_uri).unwrap();
            assert_eq!(from_uri, expected, "{input} as http::Uri");
            let mut from_str = String::new();
            sealed::Sealed::write_htu(input, &mut from_str).unwrap();
            assert_eq!(from_str, expected, "{input} as str");
        }
    }

    #[test]
    fn htu_must_be_an_absolute_http_url() {
        let key = DpopKey::generate().unwrap();
        let get = &http::Method::GET;
        for bad in ["/only/a/path", "ftp://files.example/x", "not a url"] {
            assert_eq!(key.proof(get, bad, None, None).unwrap_err(), KeyError::InvalidHtu, "{bad}");
        }
        assert_eq!(key.proof(get, &url("ftp://files.example/x"), None, None).unwrap_err(), KeyError::InvalidHtu);
        let relative: http::Uri = "/only/a/path".parse().unwrap();
        assert_eq!(key.proof(get, &relative, None, None).unwrap_err(), KeyError::InvalidHtu);
        let uri: http::Uri = "HTTPS://Api.Example/x?y".parse().unwrap();
        let claims = parts(&key.proof(get, &uri, None, None).unwrap()).claims;
        assert_eq!(claims["htu"], "https://api.example/x");
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            B64.encode(crate::jwk::thumbprint(&[("e", "AQAB"), ("kty", "RSA"), ("n", n)])),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_thumbprint_agrees_with_the_crates_jwk_for_every_algorithm() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::ES512, Algorithm::EdDSA, Algorithm::PS256] {
            let key = DpopKey::generate_for(alg).unwrap();
            let jwk = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
            assert_eq!(key.thumbprint(), B64.encode(jwk.thumbprint()), "{alg}");
            assert_eq!(key.thumbprint().len(), 43);
        }
    }

    #[test]
    fn the_rfc7515_ec_key_loads_and_signs() {
        let key = DpopKey::from_jwk(RFC7515_EC.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
        assert_eq!(
            key.public_jwk(),
            r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#
        );
        let public = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
        assert_eq!(key.thumbprint(), B64.encode(public.thumbprint()));
        let parts = parts(&key.proof(&http::Method::GET, "https://a.example/", Some("t"), None).unwrap());
        assert!(public.verify(Algorithm::ES256, parts.signing_input.as_bytes(), &parts.signature));
    }

    #[test]
    fn every_algorithm_survives_export_and_reload() {
        for alg in ALGORITHMS {
            let key = DpopKey::generate_for(alg).unwrap();
            let exported = key.private_jwk().unwrap();
            let reloaded = DpopKey::from_jwk(exported.expose()).unwrap();
            assert_eq!(reloaded.algorithm(), alg);
            assert_eq!(reloaded.thumbprint(), key.thumbprint(), "{alg}");
            let parts = parts(&reloaded.proof(&http::Method::GET, "https://a.example/", None, None).unwrap());
            let public = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
            assert!(public.verify(alg, parts.signing_input.as_bytes(), &parts.signature), "{alg}");
        }
    }

    #[test]
    fn without_alg_the_key_type_chooses_it() {
        let cases = [
            (Algorithm::ES384, Algorithm::ES384),
            (Algorithm::EdDSA, Algorithm::EdDSA),
            (Algorithm::PS384, Algorithm::RS256),
        ];
        for (generated, expected) in cases {
            let exported = DpopKey::generate_for(generated).unwrap().private_jwk().unwrap();
            let mut jwk: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(exported.expose()).unwrap();
            jwk.remove("alg");
            let key = DpopKey::from_jwk(serde_json::to_string(&jwk).unwrap().as_bytes()).unwrap();
            assert_eq!(key.algorithm(), expected, "{generated}");
        }
    }

    #[test]
    fn malformed_or_public_jwks_are_refused() {
        // The RFC 7515 key with one member removed (None) or replaced.
        let with = |member: &str, value: Option<&str>| {
            let mut jwk: serde_json::Map<String, serde_json::Value> = serde_json::from_str(RFC7515_EC).unwrap();
            match value {
                None => jwk.remove(member),
                Some(value) => jwk.insert(member.into(), value.into()),
            };
            DpopKey::from_jwk(serde_json::to_string(&jwk).unwrap().as_bytes()).unwrap_err()
        };
        for (member, value) in [
            ("d", None),
            ("kty", None),
            ("x", None),
            ("crv", Some("P-384")),
            ("crv", Some("secp256k1")),
            ("d", Some("AAAA")),
            ("d", Some("!!")),
            ("x", Some("AAAA")),
            ("use", Some("enc")),
            ("alg", Some("RS256")),
        ] {
            let error = with(member, value);
            assert!(matches!(error, KeyError::InvalidJwk(_)), "{member}={value:?}: {error:?}");
        }
        // A valid private scalar that is not the one behind `x` and `y`.
        let other = B64.encode([7u8; 32]);
        assert!(matches!(with("d", Some(&other)), KeyError::KeyRejected(_)));
        assert_eq!(with("alg", Some("HS256")), KeyError::UnsupportedAlgorithm);
        assert_eq!(with("alg", Some("none")), KeyError::UnsupportedAlgorithm);

        for bad in [
            &br#"{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#[..],
            br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            br#"{"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            br#"{"kty":"RSA","n":"0vx7","e":"AQAB"}"#,
            br#"{"kty":"PQ"}"#,
            b"[]",
            b"not json",
        ] {
            let error = DpopKey::from_jwk(bad).unwrap_err();
            assert!(matches!(error, KeyError::InvalidJwk(_)), "{}: {error:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_rsa_jwk_needs_every_private_member_and_consistent_ones() {
        let exported = DpopKey::generate_for(Algorithm::RS256).unwrap().private_jwk().unwrap();
        let jwk: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(exported.expose()).unwrap();
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            let mut partial = jwk.clone();
            partial.remove(member);
            let error = DpopKey::from_jwk(serde_json::to_string(&partial).unwrap().as_bytes()).unwrap_err();
            assert!(matches!(error, KeyError::InvalidJwk(_)), "{member}: {error:?}");
        }
        let mut swapped = jwk.clone();
        let dp = swapped["dp"].clone();
        swapped.insert("dq".into(), dp);
        let error = DpopKey::from_jwk(serde_json::to_string(&swapped).unwrap().as_bytes()).unwrap_err();
        assert!(matches!(error, KeyError::KeyRejected(_)), "{error:?}");
        let mut multi = jwk;
        multi.insert("oth".into(), serde_json::json!([]));
        let error = DpopKey::from_jwk(serde_json::to_string(&multi).unwrap().as_bytes()).unwrap_err();
        assert!(matches!(error, KeyError::InvalidJwk(_)), "{error:?}");
    }

    #[test]
    fn hmac_algorithms_cannot_make_dpop_keys() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert_eq!(DpopKey::generate_for(alg).unwrap_err(), KeyError::UnsupportedAlgorithm);
            assert_eq!(DpopKey::from_pkcs8_pem("", alg).unwrap_err(), KeyError::UnsupportedAlgorithm);
        }
    }

    #[test]
    fn a_pkcs8_pem_loads_for_the_algorithm_that_fits_it() {
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = ec.to_pkcs8v1().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        let key = DpopKey::from_pkcs8_pem(&pem, Algorithm::ES256).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
        assert!(key.public_jwk().contains(&B64.encode(&ec.public_key().as_ref()[1..33])));
        assert!(matches!(DpopKey::from_pkcs8_pem(&pem, Algorithm::ES384), Err(KeyError::KeyRejected(_))));
        assert!(matches!(DpopKey::from_pkcs8_pem(&pem, Algorithm::RS256), Err(KeyError::KeyRejected(_))));
        assert!(matches!(DpopKey::from_pkcs8_pem(&pem, Algorithm::EdDSA), Err(KeyError::KeyRejected(_))));
        assert_eq!(
            DpopKey::from_pkcs8_pem(&pem.replace("PRIVATE KEY", "EC PRIVATE KEY"), Algorithm::ES256).unwrap_err(),
            KeyError::InvalidPem("no `PRIVATE KEY` block")
        );
        assert_eq!(
            DpopKey::from_pkcs8_pem(&pem.replace('M', "*"), Algorithm::ES256).unwrap_err(),
            KeyError::InvalidPem("the block is not base64")
        );

        let ed = Ed25519KeyPair::generate().unwrap().to_pkcs8v1().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            base64::engine::general_purpose::STANDARD.encode(ed.as_ref())
        );
        assert_eq!(DpopKey::from_pkcs8_pem(&pem, Algorithm::EdDSA).unwrap().algorithm(), Algorithm::EdDSA);
    }

    #[test]
    fn debug_shows_the_algorithm_and_thumbprint_but_no_key_material() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let key = DpopKey::generate_for(alg).unwrap();
            let debug = format!("{key:?}");
            assert!(debug.contains(alg.as_str()) && debug.contains(key.thumbprint()), "{debug}");
            let exported = key.private_jwk().unwrap();
            let private: serde_json::Value = serde_json::from_slice(exported.expose()).unwrap();
            for member in ["d", "p", "q", "dp", "dq", "qi"] {
                if let Some(value) = private[member].as_str() {
                    assert!(!debug.contains(value), "{member} in {debug}");
                    assert!(!debug.contains(&value[..16]), "{member} in {debug}");
                    let raw = B64.decode(value).unwrap();
                    assert!(!debug.contains(&format!("{:02x}{:02x}{:02x}", raw[0], raw[1], raw[2])), "{debug}");
                }
            }
            assert!(!debug.contains("\"d\""), "{debug}");
            assert_eq!(format!("{:?}", key.private_jwk().unwrap()), "Secret(***)");
        }
    }

    #[test]
    fn the_key_is_cheap_to_share_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<DpopKey>();
        let key = DpopKey::generate().unwrap();
        let copy = key.clone();
        assert!(Arc::ptr_eq(&key.inner, &copy.inner));
    }

    #[test]
    fn error_messages_are_short_and_lowercase() {
        for error in [
            KeyError::UnsupportedAlgorithm,
            KeyError::InvalidJwk("missing `d`"),
            KeyError::InvalidPem("no `PRIVATE KEY` block"),
            KeyError::KeyRejected("InconsistentComponents"),
            KeyError::InvalidHtu,
            KeyError::Signing,
        ] {
            let message = error.to_string();
            assert!(message.starts_with(|c: char| c.is_ascii_lowercase()), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
