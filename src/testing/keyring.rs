//! The issuer's keys: the current key per algorithm, the published JWK Set, and the
//! keys that rotation replaced.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::TestKey;
use crate::Algorithm;

/// The algorithms that get a key when the issuer starts; others get one on first use.
pub(crate) const STARTUP_ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::ES512, Algorithm::EdDSA];

#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    /// The signing key per algorithm. HMAC secrets live here too but are never
    /// published: a shared secret is configured out of band, not fetched.
    current: BTreeMap<Algorithm, TestKey>,
    /// The JWK Set, in publication order.
    published: Vec<TestKey>,
    /// `kid`s of issuer keys that a rotation replaced and that are still published.
    previous: Vec<String>,
    /// Raw JSON served instead of the JWK Set.
    jwks_override: Option<Value>,
}

impl KeyRing {
    pub(crate) fn current(&self, alg: Algorithm) -> Option<TestKey> {
        self.current.get(&alg).cloned()
    }

    /// Makes `key` the current key for its algorithm unless another caller got there
    /// first, and returns whichever is current.
    pub(crate) fn install(&mut self, key: TestKey) -> TestKey {
        if let Some(existing) = self.current.get(&key.alg()) {
            return existing.clone();
        }
        if !key.alg().is_symmetric() {
            self.publish(key.clone());
        }
        self.current.insert(key.alg(), key.clone());
        key
    }

    /// The asymmetric algorithms that have a current key, which rotation replaces.
    pub(crate) fn rotating_algorithms(&self) -> Vec<Algorithm> {
        self.current.keys().copied().filter(|alg| !alg.is_symmetric()).collect()
    }

    /// Makes each key current for its algorithm while keeping the replaced key
    /// published, as a real issuer does so that tokens already in flight still
    /// verify.
    pub(crate) fn rotate(&mut self, keys: Vec<TestKey>) {
        for key in keys {
            if let Some(old) = self.current.insert(key.alg(), key.clone()) {
                self.previous.push(old.kid().to_owned());
            }
            self.publish(key);
        }
    }

    /// Unpublishes the keys that rotation replaced.
    pub(crate) fn retire(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        self.published.retain(|key| !previous.iter().any(|kid| kid == key.kid()));
    }

    /// Publishes `key`, replacing any published key with the same `kid`.
    pub(crate) fn publish(&mut self, key: TestKey) {
        match self.published.iter_mut().find(|k| k.kid() == key.kid()) {
            Some(slot) => *slot = key,
            None => self.published.push(key),
        }
    }

    pub(crate) fn unpublish(&mut self, kid: &str) {
        self.published.retain(|key| key.kid() != kid);
    }

    pub(crate) fn set_override(&mut self, jwks: Option<Value>) {
        self.jwks_override = jwks;
    }

    /// The document served at `jwks_uri` (RFC 7517 §5).
    pub(crate) fn jwks(&self) -> Value {
        if let Some(raw) = &self.jwks_override {
            return raw.clone();
        }
        self.published_jwks()
    }

    /// The published keys, whatever the JWKS endpoint serves instead.
    pub(crate) fn published_jwks(&self) -> Value {
        let keys: Vec<Value> = self.published.iter().map(TestKey::public_jwk).collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(ring: &KeyRing) -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_retired() {
        let mut ring = KeyRing::default();
        let old = ring.install(TestKey::generate(Algorithm::ES256));
        let new = TestKey::generate(Algorithm::ES256);
        ring.rotate(vec![new.clone()]);
        assert_eq!(kids(&ring), [old.kid(), new.kid()]);
        assert_eq!(ring.current(Algorithm::ES256).map(|k| k.kid().to_owned()), Some(new.kid().to_owned()));
        ring.retire();
        assert_eq!(kids(&ring), [new.kid()]);
    }

    #[test]
    fn hmac_secrets_are_never_published() {
        let mut ring = KeyRing::default();
        ring.install(TestKey::generate(Algorithm::HS256));
        assert!(kids(&ring).is_empty());
        assert!(ring.rotating_algorithms().is_empty());
    }

    #[test]
    fn retiring_keeps_explicitly_published_keys() {
        let mut ring = KeyRing::default();
        ring.install(TestKey::generate(Algorithm::EdDSA));
        let extra = TestKey::generate(Algorithm::EdDSA).with_kid("extra");
        ring.publish(extra);
        ring.rotate(vec![TestKey::generate(Algorithm::EdDSA)]);
        ring.retire();
        assert!(kids(&ring).iter().any(|kid| kid == "extra"));
        assert_eq!(kids(&ring).len(), 2);
    }
}
