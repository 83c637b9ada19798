//! JWK and JWK Set parsing (`jwk.rs`): what an issuer's JWKS endpoint may serve, and the
//! `*_trusted` entry points that also take `oct` (HMAC) keys.
//!
//! Input: a byte choosing the entry point (0 `Jwk::from_json`, 1 `Jwk::from_json_trusted`,
//! 2 `KeySet::from_jwks`, 3 `KeySet::from_jwks_trusted`), then the JSON document.
//! Checked: nothing panics; an untrusted entry point never yields a symmetric key; a set
//! holds at most `MAX_KEYS`; every key answers `supports` in line with its family and
//! never verifies a fixed junk signature; `Debug` never shows an `oct` key's `k`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_oauth::jwk::MAX_KEYS;
use tower_oauth::{Algorithm, Jwk, KeyFamily, KeySet};

/// Fixed junk, long enough for every algorithm's signature length.
const JUNK: [u8; 512] = [0x5a; 512];

fn check_key(key: &Jwk, trusted: bool, secrets: &[String]) {
    assert!(trusted || key.family() != KeyFamily::Symmetric, "an untrusted source gave an HMAC key");
    for alg in Algorithm::ALL {
        let supports = key.supports(alg);
        assert!(!supports || alg.key_family() == key.family(), "{alg} supported by a {:?} key", key.family());
        assert!(key.alg().is_none_or(|own| !supports || own == alg), "a key restricted to one alg supports another");
        for len in [0, 32, 64, 96, 132, 256, 512] {
            assert!(!key.verify(alg, b"header.payload", &JUNK[..len]), "{alg} verified junk");
        }
    }
    assert_eq!(key.thumbprint(), key.thumbprint());
    let debug = format!("{key:?}");
    for secret in secrets {
        assert!(secret.len() < 8 || !debug.contains(secret.as_str()), "Debug shows key material: {debug}");
    }
}

/// The `k` members of a JWK or of each key of a set, to make sure none is printed; a
/// `k` that also appears inside a `kid` (public, and printed) is left out.
fn secrets(json: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(json) else { return Vec::new() };
    let keys = match value.get("keys").and_then(Value::as_array) {
        Some(keys) => keys.clone(),
        None => vec![value],
    };
    let member = |name: &str| -> Vec<String> {
        keys.iter().filter_map(|key| key.get(name)?.as_str().map(str::to_owned)).collect()
    };
    let kids = member("kid");
    member("k").into_iter().filter(|k| !kids.iter().any(|kid| kid.contains(k.as_str()))).collect()
}

fn check_set(set: &KeySet, trusted: bool, secrets: &[String]) {
    assert!(set.len() <= MAX_KEYS, "{} keys", set.len());
    assert_eq!(set.iter().count(), set.len());
    for key in set.iter() {
        check_key(key, trusted, secrets);
        if let Some(kid) = key.kid() {
            assert!(set.contains_kid(kid));
            assert!(set.get(kid).is_some());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&entry, json)) = data.split_first() else { return };
    match entry % 4 {
        0 => {
            if let Ok(key) = Jwk::from_json(json) {
                check_key(&key, false, &secrets(json));
            }
        }
        1 => {
            if let Ok(key) = Jwk::from_json_trusted(json) {
                check_key(&key, true, &secrets(json));
            }
        }
        2 => {
            if let Ok(set) = KeySet::from_jwks(json) {
                check_set(&set, false, &secrets(json));
            }
        }
        _ => {
            if let Ok(set) = KeySet::from_jwks_trusted(json) {
                check_set(&set, true, &secrets(json));
            }
        }
    }
});
