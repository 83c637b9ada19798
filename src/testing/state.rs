//! The state the issuer's server and its handles share: settings, keys, clients,
//! grants, faults and counters. It imports none of the endpoints that read it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use super::clients::Clients;
use super::grants::Grants;
use super::keyring::KeyRing;
use super::{Endpoint, Fault, GrantType, TestKey};
use crate::validate::dpop::{DpopReplayCache, DpopVerifier};
use crate::{Algorithm, KeySet};

/// The client id registered by default.
pub(crate) const DEFAULT_CLIENT_ID: &str = "test-client";
/// The secret of [`DEFAULT_CLIENT_ID`].
pub(crate) const DEFAULT_CLIENT_SECRET: &str = "test-secret";
/// The default `aud` of issued tokens.
pub(crate) const DEFAULT_AUDIENCE: &str = "test-audience";

/// The state the server and the handles share.
pub(crate) struct Shared {
    pub(crate) issuer: String,
    /// `http://127.0.0.1:PORT`, or `https://…` over TLS.
    pub(crate) origin: String,
    pub(crate) addr: SocketAddr,
    pub(crate) prefix: String,
    pub(crate) token_path: String,
    pub(crate) audience: String,
    pub(crate) token_lifetime: Duration,
    pub(crate) jwks_max_age: Option<u64>,
    pub(crate) access_token_typ: String,
    pub(crate) opaque_access_tokens: bool,
    #[cfg(feature = "jwe")]
    pub(crate) access_token_encryption: Option<super::TestEncryptionKey>,
    pub(crate) signing_alg: Algorithm,
    /// Checks the proofs of token requests (RFC 9449 §5); requires nonces when
    /// [`dpop_nonce`](super::TestIssuerBuilder::dpop_nonce) was set.
    pub(crate) dpop: DpopVerifier,
    /// Token requests without a proof are refused.
    pub(crate) require_dpop: bool,
    /// Basic credentials are compared as sent, and refused with a bare 403.
    pub(crate) basic_without_form_decoding: bool,
    /// The keys of each issuer whose assertions the JWT bearer grant accepts.
    pub(crate) assertion_issuers: HashMap<String, KeySet>,
    /// The `jti`s of client assertions and JWT bearer grants already used.
    pub(crate) assertion_replay: DpopReplayCache,
    /// The TLS server, with the client CA, when the issuer serves HTTPS.
    #[cfg(feature = "mtls-rustls")]
    pub(crate) tls: Option<super::tls::IssuerTls>,
    pub(super) keys: Mutex<KeyRing>,
    /// Opaque access tokens and the claims behind them.
    pub(super) opaque: Mutex<HashMap<String, Map<String, Value>>>,
    pub(super) revoked: Mutex<HashSet<String>>,
    /// Userinfo claims per subject.
    pub(super) user_claims: Mutex<HashMap<String, Map<String, Value>>>,
    pub(super) faults: Mutex<[Option<Fault>; Endpoint::COUNT]>,
    pub(super) counters: [AtomicU64; Endpoint::COUNT],
    pub(super) grant_counters: [AtomicU64; GrantType::COUNT],
    pub(super) clients: Mutex<Clients>,
    pub(super) grants: Mutex<Grants>,
}

impl Shared {
    pub(crate) fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    pub(crate) fn token_endpoint(&self) -> String {
        format!("{}{}", self.issuer, self.token_path)
    }

    pub(crate) fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.issuer)
    }

    pub(crate) fn userinfo_endpoint(&self) -> String {
        format!("{}/userinfo", self.issuer)
    }

    pub(crate) fn register_opaque(&self, token: &str, claims: Map<String, Value>) {
        lock(&self.opaque).insert(token.to_owned(), claims);
    }

    pub(crate) fn opaque_claims(&self, token: &str) -> Option<Map<String, Value>> {
        lock(&self.opaque).get(token).cloned()
    }

    pub(crate) fn revoke(&self, token: &str) {
        lock(&self.revoked).insert(token.to_owned());
    }

    pub(crate) fn is_revoked(&self, token: &str) -> bool {
        lock(&self.revoked).contains(token)
    }

    pub(crate) fn user_claims(&self, subject: &str) -> Option<Map<String, Value>> {
        lock(&self.user_claims).get(subject).cloned()
    }

    pub(crate) fn current_key(&self, alg: Algorithm) -> TestKey {
        if let Some(key) = self.keys().current(alg) {
            return key;
        }
        // Generate without holding the lock; if another caller won the race, its key
        // stays current and this one is discarded.
        let key = TestKey::generate(alg);
        self.keys().install(key)
    }

    pub(crate) fn record_request(&self, endpoint: Endpoint) {
        self.counters[endpoint.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn record_grant(&self, grant: GrantType) {
        self.grant_counters[grant.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn grant_requests(&self, grant: GrantType) -> u64 {
        self.grant_counters[grant.index()].load(Ordering::SeqCst)
    }

    /// Whether the issuer serves HTTPS, and so mutual-TLS client authentication.
    pub(crate) fn serves_tls(&self) -> bool {
        #[cfg(feature = "mtls-rustls")]
        return self.tls.is_some();
        #[cfg(not(feature = "mtls-rustls"))]
        false
    }

    pub(crate) fn set_user_claims(&self, subject: &str, claims: Map<String, Value>) {
        lock(&self.user_claims).insert(subject.to_owned(), claims);
    }

    pub(crate) fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        self.faults()[endpoint.index()] = fault;
    }

    pub(crate) fn clear_faults(&self) {
        *self.faults() = Default::default();
    }

    pub(crate) fn requests(&self, endpoint: Endpoint) -> u64 {
        self.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    pub(crate) fn reset_counters(&self) {
        for counter in self.counters.iter().chain(&self.grant_counters) {
            counter.store(0, Ordering::SeqCst);
        }
    }

    pub(crate) fn fault(&self, endpoint: Endpoint) -> Option<Fault> {
        self.faults()[endpoint.index()].clone()
    }

    pub(crate) fn keys(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.keys)
    }

    pub(crate) fn clients(&self) -> MutexGuard<'_, Clients> {
        lock(&self.clients)
    }

    pub(crate) fn grants(&self) -> MutexGuard<'_, Grants> {
        lock(&self.grants)
    }

    fn faults(&self) -> MutexGuard<'_, [Option<Fault>; Endpoint::COUNT]> {
        lock(&self.faults)
    }
}

/// Every critical section leaves the state consistent, so a panic elsewhere while
/// holding a lock is no reason to stop serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
