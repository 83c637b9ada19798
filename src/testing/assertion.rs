//! JWT assertions (RFC 7523 §3): the one check behind client authentication with a JWT
//! (§2.2: `private_key_jwt`, `client_secret_jwt`) and the JWT bearer grant (§2.1).
//!
//! The signature is verified with [`verify_jws`], with every header rule of the
//! validator; then the claims: `iss`, `sub`, `aud`, `exp` (and how far ahead), `nbf`,
//! `iat`, and `jti` once only.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::validate::dpop::{DpopReplayCache, ReplayError};
use crate::validate::{ValidationError, verify_jws};
use crate::{Algorithm, KeySet};

/// The algorithms of `private_key_jwt` assertions and of JWT bearer grants.
pub(crate) const KEY_ALGORITHMS: [Algorithm; 4] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

/// The algorithms of `client_secret_jwt` assertions (OpenID Connect Core 1.0 §9).
pub(crate) const SECRET_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// The clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY: i64 = 30;

/// Assertions remembered for the replay check: plenty for any test. When it is full of
/// assertions that have not expired, new ones are refused rather than old ones forgotten.
pub(crate) const REPLAY_CAPACITY: usize = 100_000;

/// What an assertion must say, besides a good signature.
pub(crate) struct Expected<'a> {
    /// The `iss` it must have.
    pub(crate) issuer: &'a str,
    /// The `sub` it must have; any non-empty one when `None`.
    pub(crate) subject: Option<&'a str>,
    /// The values one of which `aud` must contain.
    pub(crate) audiences: &'a [String],
    /// How far ahead `exp` may be, in seconds; unbounded when `None`.
    pub(crate) max_lifetime: Option<i64>,
    /// Whether `jti` is required; when present it is always accepted once only.
    pub(crate) require_jti: bool,
    /// Keeps the `jti`s of one use of assertions apart from another's.
    pub(crate) replay_domain: &'static str,
}

/// The members of an assertion that say whose key verifies it, read before anything is
/// verified.
pub(crate) struct Unverified {
    pub(crate) alg: Option<Algorithm>,
    pub(crate) kid: Option<String>,
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
}

impl Unverified {
    /// `None` when the header or the payload is not base64url JSON.
    pub(crate) fn read(assertion: &str) -> Option<Unverified> {
        let mut segments = assertion.split('.');
        let (header, payload) = (segments.next()?, segments.next()?);
        let header: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let payload: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let text = |map: &Map<String, Value>, name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Unverified {
            alg: header.get("alg").and_then(Value::as_str).and_then(|alg| alg.parse().ok()),
            kid: text(&header, "kid"),
            iss: text(&payload, "iss"),
            sub: text(&payload, "sub"),
        })
    }
}

/// Verifies `assertion` with `keys` and `algorithms`, then its claims against `expected`,
/// and spends its `jti`. Returns the claims.
///
/// # Errors
///
/// A short description of the first thing wrong, which never quotes the assertion.
pub(crate) fn verify(
    assertion: &str,
    keys: &KeySet,
    algorithms: &[Algorithm],
    expected: &Expected<'_>,
    replay: &DpopReplayCache,
) -> Result<Map<String, Value>, &'static str> {
    let verified = verify_jws(assertion, keys, algorithms).map_err(|error| match error {
        ValidationError::AlgorithmNone
        | ValidationError::UnsupportedAlgorithm
        | ValidationError::AlgorithmNotAllowed(_) => "the assertion's alg is not accepted",
        ValidationError::UnknownKey | ValidationError::KeyAlgorithmMismatch => "no registered key fits the assertion",
        ValidationError::InvalidSignature => "the assertion's signature does not verify",
        _ => "the assertion is not a well-formed JWS",
    })?;
    let claims: Map<String, Value> =
        serde_json::from_slice(verified.payload()).map_err(|_| "the assertion's payload is not a JSON object")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|value| !value.is_empty());

    if text("iss") != Some(expected.issuer) {
        return Err("the assertion's iss is wrong");
    }
    let subject = text("sub").ok_or("the assertion has no sub")?;
    if expected.subject.is_some_and(|expected| expected != subject) {
        return Err("the assertion's sub is wrong");
    }
    let audience_fits = |aud: &Value| aud.as_str().is_some_and(|aud| expected.audiences.iter().any(|a| a == aud));
    let audience = claims.get("aud").ok_or("the assertion has no aud")?;
    let fits = match audience {
        Value::Array(audiences) => audiences.iter().any(audience_fits),
        audience => audience_fits(audience),
    };
    if !fits {
        return Err("the assertion's aud is not this authorization server");
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let exp = numeric_date(&claims, "exp")?.ok_or("the assertion has no exp")?;
    if exp.saturating_add(LEEWAY) <= now {
        return Err("the assertion has expired");
    }
    if let Some(max) = expected.max_lifetime
        && exp > now.saturating_add(max).saturating_add(LEEWAY)
    {
        return Err("the assertion's exp is too far in the future");
    }
    if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY)) {
        return Err("the assertion is not valid yet");
    }
    if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(LEEWAY)) {
        return Err("the assertion was issued in the future");
    }

    // RFC 7523 §3, item 7: last, so that only a good assertion spends its `jti`.
    match claims.get("jti") {
        None if expected.require_jti => return Err("the assertion has no jti"),
        None => {}
        Some(jti) => {
            let jti = jti.as_str().filter(|jti| !jti.is_empty()).ok_or("the assertion's jti is not a string")?;
            let key = replay_key(expected.replay_domain, expected.issuer, jti);
            match replay.check_local(&key, exp.saturating_add(LEEWAY), now) {
                Ok(()) => {}
                Err(ReplayError::Replayed) => return Err("the assertion was used before"),
                // Fail closed: an assertion that cannot be remembered could be replayed.
                Err(ReplayError::Unavailable) => return Err("too many assertions to remember; try again later"),
            }
        }
    }
    Ok(claims)
}

/// A NumericDate claim (RFC 7519 §2), in whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, &'static str> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => {
            let seconds = value.as_i64().or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64));
            seconds.map(Some).ok_or("a time claim of the assertion is not a number")
        }
    }
}

/// The replay-cache key of (`domain`, `issuer`, `jti`): one issuer's `jti`s cannot
/// collide with another's.
fn replay_key(domain: &str, issuer: &str, jti: &str) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [domain, issuer, jti] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::TestKey;

    const AUDIENCE: &str = "https://issuer.example";

    fn keys(key: &TestKey) -> KeySet {
        KeySet::from_jwks(json!({ "keys": [key.public_jwk()] }).to_string().as_bytes()).unwrap()
    }

    fn sign(key: &TestKey, claims: Value) -> String {
        let header = json!({"alg": key.alg().as_str(), "kid": key.kid()});
        key.sign_compact(&header.to_string(), &claims.to_string())
    }

    fn now() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
    }

    fn claims() -> Value {
        json!({"iss": "c", "sub": "c", "aud": AUDIENCE, "exp": now() + 60, "iat": now(), "jti": crate::testing::key::random_id()})
    }

    fn check(assertion: &str, key: &TestKey, replay: &DpopReplayCache) -> Result<Map<String, Value>, &'static str> {
        let audiences = [AUDIENCE.to_owned()];
        let expected = Expected {
            issuer: "c",
            subject: Some("c"),
            audiences: &audiences,
            max_lifetime: Some(600),
            require_jti: true,
            replay_domain: "test",
        };
        verify(assertion, &keys(key), &KEY_ALGORITHMS, &expected, replay)
    }

    #[test]
    fn a_good_assertion_is_accepted_once() {
        let key = TestKey::generate(Algorithm::ES256);
        let replay = DpopReplayCache::in_memory(REPLAY_CAPACITY);
        let assertion = sign(&key, claims());
        assert!(check(&assertion, &key, &replay).is_ok());
        assert_eq!(check(&assertion, &key, &replay).err(), Some("the assertion was used before"));
    }

    #[test]
    fn each_wrong_claim_is_refused_without_spending_the_jti() {
        let key = TestKey::generate(Algorithm::EdDSA);
        let replay = DpopReplayCache::in_memory(REPLAY_CAPACITY);
        let cases: [(&str, Value, &str); 9] = [
            ("iss", json!("other"), "the assertion's iss is wrong"),
            ("sub", json!("other"), "the assertion's sub is wrong"),
            ("aud", json!(["https://elsewhere"]), "the assertion's aud is not this authorization server"),
            ("exp", json!(now() - 3600), "the assertion has expired"),
            ("exp", json!(now() + 3600), "the assertion's exp is too far in the future"),
            ("exp", json!("soon"), "a time claim of the assertion is not a number"),
            ("nbf", json!(now() + 3600), "the assertion is not valid yet"),
            ("iat", json!(now() + 3600), "the assertion was issued in the future"),
            ("jti", json!(7), "the assertion's jti is not a string"),
        ];
        for (name, value, error) in cases {
            let mut claims = claims();
            claims[name] = value;
            assert_eq!(check(&sign(&key, claims), &key, &replay).err(), Some(error), "{name}");
        }
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("jti");
        assert_eq!(check(&sign(&key, claims), &key, &replay).err(), Some("the assertion has no jti"));
        assert!(replay.is_empty());
    }

    #[test]
    fn a_signature_by_another_key_or_algorithm_is_refused() {
        let key = TestKey::generate(Algorithm::ES256);
        let replay = DpopReplayCache::in_memory(REPLAY_CAPACITY);
        let stranger = TestKey::generate(Algorithm::ES256).with_kid(key.kid());
        assert_eq!(
            check(&sign(&stranger, claims()), &key, &replay).err(),
            Some("the assertion's signature does not verify")
        );
        let hs = TestKey::generate(Algorithm::HS256);
        assert_eq!(check(&sign(&hs, claims()), &key, &replay).err(), Some("the assertion's alg is not accepted"));
        let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(check(&unsigned, &key, &replay).err(), Some("the assertion's alg is not accepted"));
        assert_eq!(check("not a jwt", &key, &replay).err(), Some("the assertion is not a well-formed JWS"));
    }

    #[test]
    fn unverified_members_are_read_from_any_jws() {
        let key = TestKey::generate(Algorithm::PS256).with_kid("k1");
        let read = Unverified::read(&sign(&key, claims())).unwrap();
        assert_eq!(
            (read.alg, read.kid.as_deref(), read.iss.as_deref()),
            (Some(Algorithm::PS256), Some("k1"), Some("c"))
        );
        assert!(Unverified::read("a.b.c").is_none());
    }
}
