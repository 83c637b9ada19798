//! What the fuzz targets and the seed generator share: the fixed names, the keys and
//! validators (built once per process), and the layout of the structured inputs.
//!
//! Keys are generated at start-up with the crate's own test key types, except the HMAC
//! secrets, which are fixed: a seed token signed with them verifies in every run, so a
//! plain token input reaches the claims policy. Tokens that must verify with the other
//! keys are signed inside the target (the `RESIGN` and `SPLICE` modes).

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_oauth::testing::TestKey;
use tower_oauth::validate::ValidationError;
use tower_oauth::{Algorithm, Claims, Jwk, KeySet, KeyStore, TypPolicy, Validator};

/// The trusted issuer, shaped like a Keycloak realm.
pub const ISSUER: &str = "https://login.example.com/auth/realms/main";
/// The accepted audience.
pub const AUDIENCE: &str = "https://api.example.com";
/// The HS256 secret (32 bytes, RFC 7518 §3.2).
pub const HS256_SECRET: &[u8; 32] = b"tower-oauth fuzz hs256 secret 32";
/// The HS512 secret (64 bytes).
pub const HS512_SECRET: &[u8; 64] = b"tower-oauth fuzz hs512 secret, sixty-four bytes long, exactly 64";
/// The time the direct validations are made at: 2024-01-01T00:00:00Z.
pub const NOW: u64 = 1_704_067_200;
/// `iat`/`nbf` of the base tokens: a minute before [`NOW`].
pub const ISSUED_AT: u64 = NOW - 60;
/// `exp` of the base tokens: 2100-01-01, so they are valid at [`NOW`] and at the real
/// time the service checks them at.
pub const EXPIRES_AT: u64 = 4_102_444_800;
/// Separates the parts of a structured input; never part of UTF-8 text.
pub const SEP: u8 = 0xFF;

/// The signing keys, in a fixed order: a structured input picks one by index.
pub const SIGNING_ALGS: [Algorithm; 8] = [
    Algorithm::HS256,
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::HS512,
];

/// The `kid` of the key for `alg`: `fuzz-` and the lowercase algorithm name.
pub fn kid(alg: Algorithm) -> String {
    format!("fuzz-{}", alg.as_str().to_ascii_lowercase())
}

/// A key for `alg`: fixed for HMAC, fresh otherwise.
pub fn signing_key(alg: Algorithm) -> TestKey {
    let key = match alg {
        Algorithm::HS256 => TestKey::hmac(alg, HS256_SECRET),
        Algorithm::HS512 => TestKey::hmac(alg, HS512_SECRET),
        _ => TestKey::generate(alg),
    };
    key.with_kid(kid(alg))
}

/// base64url without padding (RFC 7515 §2).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The protected header of a base token for `alg`.
pub fn base_header(alg: Algorithm) -> String {
    serde_json::json!({"alg": alg.as_str(), "kid": kid(alg), "typ": "at+jwt"}).to_string()
}

/// The claims of a base token: valid for [`ISSUER`] and [`AUDIENCE`], shaped like
/// Keycloak's (`azp`, `scope`, `typ`, realm roles).
pub fn base_claims() -> String {
    serde_json::json!({
        "exp": EXPIRES_AT,
        "iat": ISSUED_AT,
        "nbf": ISSUED_AT,
        "jti": "06b31932-2dd2-4090-99e1-a8910bb8b6d1",
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "b7639928-1b6b-48ba-9a2f-b2b709265d84",
        "typ": "Bearer",
        "azp": "fuzz-client",
        "client_id": "fuzz-client",
        "scope": "openid profile read",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    })
    .to_string()
}

/// A compact JWS of these exact header and payload bytes, signed with `key`.
pub fn sign_bytes(key: &TestKey, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = b64(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Everything the token targets validate with.
pub struct Signing {
    /// The keys, in [`SIGNING_ALGS`] order.
    pub keys: Vec<TestKey>,
    /// One valid base token per key, in the same order.
    pub tokens: Vec<String>,
    /// The public keys (and HMAC secrets), as the validators see them.
    pub store: KeyStore,
    /// Every algorithm allowed, lenient `typ`, the crate's [`Claims`].
    pub validator: Validator,
    /// Strict RFC 9068 `typ`, claims through serde into a `serde_json::Value`.
    pub strict: Validator<serde_json::Value>,
}

/// The keys, tokens and validators, built on first use.
pub fn signing() -> &'static Signing {
    static SIGNING: OnceLock<Signing> = OnceLock::new();
    SIGNING.get_or_init(|| {
        let keys: Vec<TestKey> = SIGNING_ALGS.iter().map(|&alg| signing_key(alg)).collect();
        let tokens = keys
            .iter()
            .map(|key| sign_bytes(key, base_header(key.alg()).as_bytes(), base_claims().as_bytes()))
            .collect();
        let set = KeySet::from_keys(keys.iter().map(|key| {
            Jwk::from_json_trusted(key.public_jwk().to_string().as_bytes()).expect("a test key is a valid JWK")
        }));
        let store = KeyStore::from_key_set(set);
        let validator = Validator::builder()
            .issuer_with_keys(ISSUER, store.clone())
            .audience(AUDIENCE)
            .algorithms(Algorithm::ALL)
            .build()
            .expect("a valid configuration");
        let strict = Validator::builder()
            .claims::<serde_json::Value>()
            .issuer_with_keys(ISSUER, store.clone())
            .audience(AUDIENCE)
            .algorithms(Algorithm::ALL)
            .typ(TypPolicy::Rfc9068)
            .build()
            .expect("a valid configuration");
        Signing { keys, tokens, store, validator, strict }
    })
}

/// [`NOW`] as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// Polls `future` once. With fixed keys nothing waits for the network, so anything but
/// `Ready` is a hang.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a validation with fixed keys must never wait"),
    }
}

/// Validates `token` as of [`NOW`] with the crate's [`Claims`], and checks that an
/// accepted token meets the policy.
pub fn validate(token: &str) -> Result<Claims, ValidationError> {
    let result = ready(signing().validator.validate_at(token, now()));
    if let Ok(claims) = &result {
        assert_accepted(claims, NOW);
    }
    result
}

/// Validates `token` as of [`NOW`] with the strict validator and serde claims.
pub fn validate_strict(token: &str) -> Result<serde_json::Value, ValidationError> {
    let result = ready(signing().strict.validate_at(token, now()));
    if let Ok(claims) = &result {
        assert!(claims.is_object(), "claims are a JSON object");
    }
    result
}

/// What any accepted token must satisfy: the trusted issuer, the audience, and an `exp`
/// after `now` (less the 60 s leeway).
pub fn assert_accepted(claims: &Claims, now: u64) {
    assert_eq!(claims.issuer(), Some(ISSUER), "accepted a token from another issuer");
    assert!(claims.audience().any(|aud| aud == AUDIENCE), "accepted a token for another audience");
    let exp = claims.expires_at().expect("accepted a token without exp");
    assert!(exp > now as i64 - 60, "accepted an expired token");
}

/// Splits `input` at the first [`SEP`]: (before, after); no separator gives (input, []).
pub fn split(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == SEP) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[]),
    }
}

/// The structured modes of the `bearer` target: the low two bits of the first byte.
pub mod bearer {
    /// The rest is the `Authorization` header value (with [`ALLOW_QUERY`], the header
    /// value, [`SEP`](super::SEP), then the query string).
    pub const HEADER: u8 = 0;
    /// The rest is a whole token, validated directly and sent as `Bearer <token>`.
    pub const TOKEN: u8 = 1;
    /// Then a byte picking the base token, a byte picking the segment (0 header,
    /// 1 payload, 2 signature; +4 to base64url-encode the replacement), and the
    /// replacement.
    pub const SPLICE: u8 = 2;
    /// Then a byte picking the key, the header JSON, [`SEP`](super::SEP), and the payload
    /// JSON: signed with that key, then validated.
    pub const RESIGN: u8 = 3;
    /// Flag: the request is gRPC.
    pub const GRPC: u8 = 1 << 2;
    /// Flag: verbose rejections.
    pub const VERBOSE: u8 = 1 << 3;
    /// Flag: the `access_token` query parameter is allowed.
    pub const ALLOW_QUERY: u8 = 1 << 4;
    /// Flag: a verified-token cache, and the request sent twice.
    pub const CACHE: u8 = 1 << 5;
}

#[cfg(feature = "jwe")]
pub mod encryption;
