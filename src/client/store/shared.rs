//! The cache's side of a shared store: a token source in front of the real one that
//! reads the fleet's token, and fetches under a lease when it is due.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

use super::entry::{Entry, EntryKey, Protection, StoreKeys, wall_clock_ms};
use super::{StoreError, TokenStore};
use crate::Secret;
use crate::client::refresher::policy::RefreshPolicy;
use crate::client::source::{FetchFuture, TokenSource};
use crate::client::{CacheKey, DpopKey, GrantKind, TokenError, TokenResponse};
use crate::error::BuildError;

/// A [`TokenStore`] and how a [`TokenCache`](crate::client::TokenCache) shares tokens
/// through it; give it to [`TokenCacheBuilder::store`](crate::client::TokenCacheBuilder::store).
///
/// How the fleet shares one token:
///
/// 1. When its cache needs a token (a cold start, or the refresh point), a process
///    reads the shared entry. A token there that is not yet due for refresh is used
///    as it is, with the lifetime it has left.
/// 2. Otherwise the process tries to take the lease (`SET NX PX`). The one that gets
///    it reads the entry again (it may have just been written), fetches from the
///    token endpoint, writes the entry (it expires with the token) and releases the
///    lease. While it fetches it renews the lease, so a slow token endpoint does not
///    let a second process in; a process that dies stops renewing, and its lease
///    expires after [`lease`](Self::lease) (default 5 s).
/// 3. The others poll the entry every [`poll_interval`](Self::poll_interval) (default
///    50 ms) and take the new token as soon as it is there, or the lease when it is
///    free again. Meanwhile each cache keeps serving its current token, so requests
///    wait only on a cold start.
///
/// Entries are sealed with AES-256-GCM under an [`EntryKey`], with the store key as
/// additional data, so an entry read by someone without the key, or moved under another
/// key, is useless. An entry that does not open (another key, damage) counts as
/// absent. [`dangerous_plaintext`](Self::dangerous_plaintext) stores tokens readable
/// by anyone who can read the store.
///
/// Store keys are `{prefix}:token:{sha256}` and `{prefix}:lease:{sha256}`, the hash
/// taken over every field of the [`CacheKey`] (and the [grant id](Self::grant_id)):
/// no client id, scope or secret is visible in them.
///
/// **The store never fails a request.** Every operation is bounded by
/// [`operation_timeout`](Self::operation_timeout) (default 250 ms). When the store is
/// down, slow or answers garbage, the cache logs one warning (then one a minute while
/// it lasts) and fetches on its own, as it would without a store; it tries the store
/// again at its next fetch, and a Redis store reconnects by itself. A flushed store is
/// an empty one: the next process that needs a token fetches one.
///
/// Processes compare wall-clock times (when a token was obtained, when it is due), so
/// their clocks should agree (NTP) to well within a token's lifetime; a process whose
/// clock runs ahead only refreshes a little early.
///
/// **Refresh tokens.** For the `refresh_token` and authorization-code grants, the entry
/// also carries the grant's newest refresh token, and a process hands it to its source
/// ([`TokenSource::adopt_refresh_token`]) before it fetches, so a rotating refresh
/// token is spent once fleet-wide, and an authorization code (single-use) is exchanged
/// by one process only. These grants need a [`grant_id`](Self::grant_id), because the
/// cache key does not tell users apart. When the store cannot be reached they do not
/// fetch alone (two processes spending one refresh token would make a server with
/// reuse detection revoke the grant): the cache keeps its current token and retries,
/// with [`TokenError::StoreUnavailable`] once that token has expired. A flushed store
/// loses the newest refresh token: each process then continues with the newest one
/// it had seen.
///
/// ```no_run
/// use tower_oauth::client::store::{EntryKey, RedisTokenStore, SharedStore};
/// use tower_oauth::client::{TokenCache, TokenEndpoint};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = std::env::var("OAUTH_CLIENT_SECRET")?;
/// let endpoint = TokenEndpoint::builder("https://idp.example/token", "my-service", secret.as_str()).build()?;
/// // No I/O yet: the store connects on first use, and reconnects by itself.
/// let redis = RedisTokenStore::new("redis://redis.internal:6379")?;
/// let store = SharedStore::new(redis, EntryKey::derive_from_client_secret(&secret));
/// let cache = TokenCache::builder(endpoint).store(store).build()?;
/// let token = cache.token().await?; // one token request for the whole fleet
/// # let _ = token;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct SharedStore {
    store: Arc<dyn TokenStore>,
    protection: Protection,
    prefix: String,
    grant_id: Option<String>,
    timing: Timing,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    lease: Duration,
    operation_timeout: Duration,
    poll_interval: Duration,
    wait_for_holder: Duration,
}

impl SharedStore {
    /// Shares tokens through `store`, sealed with `key`.
    pub fn new(store: impl TokenStore, key: EntryKey) -> SharedStore {
        SharedStore::with_protection(store, Protection::Encrypted(key))
    }

    /// Shares tokens through `store` **unencrypted**: anyone who can read the store
    /// (a replica, a backup, a `MONITOR`, a dump) can use the access tokens and, for
    /// user-delegated grants, the refresh tokens. Only for a store that is as trusted as
    /// the process memory, such as one reached over a Unix socket on the same host.
    pub fn dangerous_plaintext(store: impl TokenStore) -> SharedStore {
        SharedStore::with_protection(store, Protection::Plaintext)
    }

    fn with_protection(store: impl TokenStore, protection: Protection) -> SharedStore {
        SharedStore {
            store: Arc::new(store),
            protection,
            prefix: "tower-oauth".to_owned(),
            grant_id: None,
            timing: Timing {
                lease: Duration::from_secs(5),
                operation_timeout: Duration::from_millis(250),
                poll_interval: Duration::from_millis(50),
                wait_for_holder: Duration::from_secs(15),
            },
        }
    }

    /// The start of every store key; default `tower-oauth`. Caches that must not share
    /// (two environments on one Redis) use different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whose grant this is, for the `refresh_token` and authorization-code grants
    /// (required for them): a stable label such as a user id, hashed into the store key
    /// with the rest. Caches share a token only when they have the same key and grant
    /// id.
    pub fn grant_id(mut self, id: impl Into<String>) -> Self {
        self.grant_id = Some(id.into());
        self
    }

    /// How long a lease lasts without renewal: how long the fleet waits when the
    /// process that fetches dies. Default 5 s; at least 100 ms.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.timing.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// The bound on each store operation; past it the store counts as unavailable for
    /// this fetch. Default 250 ms.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timing.operation_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How often a process that waits for another's fetch looks for the new token;
    /// default 50 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.timing.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a process waits for another that holds the lease before it fetches
    /// on its own (a refresh-token grant gives up with [`TokenError::Timeout`]
    /// instead); default 15 s.
    pub fn wait_for_holder(mut self, wait: Duration) -> Self {
        self.timing.wait_for_holder = wait;
        self
    }

    /// The source the cache's refresher calls: `inner` behind the store.
    pub(in crate::client) fn wrap(
        self,
        inner: Box<dyn TokenSource>,
        policy: RefreshPolicy,
    ) -> Result<SharedSource, BuildError> {
        let key = inner.key().clone();
        let user_delegated = key.grant() != GrantKind::ClientCredentials;
        if user_delegated && self.grant_id.is_none() {
            return Err(BuildError::MissingGrantId);
        }
        let keys = StoreKeys::derive(&self.prefix, &key, self.grant_id.as_deref());
        let mut id = [0_u8; 16];
        SystemRandom::new().fill(&mut id).expect("the system random generator works");
        Ok(SharedSource {
            inner,
            store: self.store,
            protection: self.protection,
            timing: self.timing,
            keys,
            holder: id.iter().map(|b| format!("{b:02x}")).collect(),
            policy,
            user_delegated,
            last: None,
            refresh_token: None,
            adopted_ms: 0,
            warned_at: None,
            unreadable_warned_at: None,
        })
    }
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStore")
            .field("protection", &self.protection)
            .field("prefix", &self.prefix)
            .field("grant_id", &self.grant_id.as_ref().map(|_| "***"))
            .field("lease", &self.timing.lease)
            .field("operation_timeout", &self.timing.operation_timeout)
            .field("poll_interval", &self.timing.poll_interval)
            .field("wait_for_holder", &self.timing.wait_for_holder)
            .finish_non_exhaustive()
    }
}

/// Warnings about an unavailable store repeat at most this often while it lasts.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A [`TokenSource`] that shares its tokens through a store; see [`SharedStore`].
pub(in crate::client) struct SharedSource {
    inner: Box<dyn TokenSource>,
    store: Arc<dyn TokenStore>,
    protection: Protection,
    timing: Timing,
    keys: StoreKeys,
    /// This cache's lease holder id: random, so processes never mistake one another.
    holder: String,
    policy: RefreshPolicy,
    /// The grant spends refresh tokens: never fetch without the lease.
    user_delegated: bool,
    /// A digest of the token last handed to the cache: the cache asking again means
    /// it wants another (a forced refresh after a 401), even if the entry still holds it.
    last: Option<[u8; 32]>,
    /// The newest refresh token known, and when the entry that carried it was written:
    /// an older entry never takes the source back to an older refresh token.
    refresh_token: Option<Secret>,
    adopted_ms: u64,
    warned_at: Option<Instant>,
    unreadable_warned_at: Option<Instant>,
}

/// Why a fetch went without the store.
enum Degraded {
    Store(StoreError),
    /// The lease holder did not publish a token within `wait_for_holder`.
    HolderTooSlow,
}

impl From<StoreError> for Degraded {
    fn from(error: StoreError) -> Self {
        Degraded::Store(error)
    }
}

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Degraded::Store(error) => {
                write!(f, "{error}")?;
                if let Some(source) = std::error::Error::source(error) {
                    write!(f, ": {source}")?;
                }
                Ok(())
            }
            Degraded::HolderTooSlow => f.write_str("the process holding the lease published no token in time"),
        }
    }
}

fn fingerprint(token: &str) -> [u8; 32] {
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One store operation, bounded.
async fn bounded<T>(timeout: Duration, operation: super::StoreFuture<'_, T>) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, operation).await.unwrap_or(Err(StoreError::Timeout))
}

/// Renews the lease every third of its time until dropped (when the fetch ends).
async fn keep_lease(store: &dyn TokenStore, keys: &StoreKeys, holder: &str, timing: Timing) -> Infallible {
    loop {
        tokio::time::sleep(timing.lease / 3).await;
        match bounded(timing.operation_timeout, store.renew_lease(&keys.lease, holder, timing.lease)).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("the lease was lost during the fetch; another process may fetch as well"),
            Err(error) => tracing::debug!(%error, "renewing the lease failed"),
        }
    }
}

impl SharedSource {
    async fn obtain(&mut self) -> Result<TokenResponse, TokenError> {
        match self.through_store().await {
            Ok(outcome) => {
                if self.warned_at.take().is_some() {
                    tracing::info!("shared token store available again");
                }
                outcome
            }
            Err(why) => {
                self.degraded(&why);
                if self.user_delegated {
                    return Err(match why {
                        Degraded::Store(_) => TokenError::StoreUnavailable,
                        Degraded::HolderTooSlow => TokenError::Timeout,
                    });
                }
                let outcome = self.inner.fetch().await;
                if let Ok(response) = &outcome {
                    self.last = Some(fingerprint(response.access_token()));
                }
                outcome
            }
        }
    }

    /// The fleet's token, or one fetched under the lease; `Err` only when the store
    /// failed before anything was fetched.
    async fn through_store(&mut self) -> Result<Result<TokenResponse, TokenError>, Degraded> {
        let deadline = Instant::now() + self.timing.wait_for_holder;
        loop {
            if let Some(response) = self.read_fresh().await? {
                return Ok(Ok(response));
            }
            let lease = self.store.try_lease(&self.keys.lease, &self.holder, self.timing.lease);
            let taken = bounded(self.timing.operation_timeout, lease).await;
            crate::telemetry::store_lease(match &taken {
                Ok(true) => "acquired",
                Ok(false) => "held_elsewhere",
                Err(_) => "error",
            });
            if taken? {
                return Ok(self.fetch_holding_lease().await);
            }
            if Instant::now() >= deadline {
                return Err(Degraded::HolderTooSlow);
            }
            tokio::time::sleep(self.timing.poll_interval).await;
        }
    }

    /// The entry's token if it is usable: it opens, it is not due for refresh, and it
    /// is not the token the cache has (asking again means it wants another one). Hands
    /// a newer refresh token to the source on the way.
    async fn read_fresh(&mut self) -> Result<Option<TokenResponse>, StoreError> {
        let Some(value) = bounded(self.timing.operation_timeout, self.store.get(&self.keys.entry)).await? else {
            return Ok(None);
        };
        let Some(entry) = self.protection.open(&self.keys.entry, &value) else {
            self.unreadable();
            return Ok(None);
        };
        if let Some(refresh_token) = &entry.refresh_token
            && entry.obtained_ms > self.adopted_ms
        {
            self.inner.adopt_refresh_token(refresh_token.clone());
            self.refresh_token = Some(refresh_token.clone());
            self.adopted_ms = entry.obtained_ms;
        }
        let now = wall_clock_ms();
        let lifetime = entry.lifetime();
        let due = entry.obtained_ms.saturating_add(millis(self.policy.refresh_after(lifetime)));
        if now >= due || now >= entry.expires_ms || self.last == Some(fingerprint(&entry.access_token)) {
            return Ok(None);
        }
        let issued_ago = Duration::from_millis(now.saturating_sub(entry.obtained_ms));
        match TokenResponse::stored(entry.access_token, lifetime, entry.scope, entry.dpop, issued_ago) {
            Ok(response) => {
                self.last = Some(fingerprint(response.access_token()));
                tracing::debug!(issued_ago_ms = millis(issued_ago), "access token taken from the shared store");
                Ok(Some(response))
            }
            Err(_) => {
                self.unreadable();
                Ok(None)
            }
        }
    }

    async fn fetch_holding_lease(&mut self) -> Result<TokenResponse, TokenError> {
        // Someone may have written the entry between our read and our lease.
        match self.read_fresh().await {
            Ok(Some(response)) => {
                self.release().await;
                return Ok(response);
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "re-reading the shared token failed; fetching under the lease"),
        }
        let obtained_ms = wall_clock_ms();
        let outcome = {
            let SharedSource { inner, store, keys, holder, timing, .. } = &mut *self;
            tokio::select! {
                outcome = inner.fetch() => outcome,
                never = keep_lease(&**store, keys, holder, *timing) => match never {},
            }
        };
        if let Ok(response) = &outcome {
            self.publish(response, obtained_ms).await;
        }
        self.release().await;
        outcome
    }

    /// Writes the new token (and the grant's newest refresh token) for the fleet. It
    /// must land before the lease is released, or a waiter could take the lease and
    /// fetch again.
    async fn publish(&mut self, response: &TokenResponse, obtained_ms: u64) {
        self.last = Some(fingerprint(response.access_token()));
        if let Some(fresh) = response.refresh_token() {
            self.refresh_token = Some(fresh.clone());
            self.adopted_ms = obtained_ms;
        }
        let lifetime = response.expires_in().unwrap_or(self.policy.default_lifetime);
        let entry = Entry {
            access_token: response.access_token().to_owned(),
            obtained_ms,
            expires_ms: obtained_ms.saturating_add(millis(lifetime)),
            scope: response.scope().map(str::to_owned),
            refresh_token: self.refresh_token.clone(),
            dpop: response.is_dpop(),
        };
        let ttl = Duration::from_millis(entry.expires_ms.saturating_sub(wall_clock_ms()));
        if ttl.is_zero() {
            return;
        }
        let value = self.protection.seal(&self.keys.entry, &entry);
        if let Err(error) = bounded(self.timing.operation_timeout, self.store.put(&self.keys.entry, &value, ttl)).await
        {
            self.degraded(&Degraded::Store(error));
        }
    }

    async fn release(&mut self) {
        let release = self.store.release_lease(&self.keys.lease, &self.holder);
        if let Err(error) = bounded(self.timing.operation_timeout, release).await {
            // It expires on its own.
            tracing::debug!(%error, "releasing the lease failed");
        }
    }

    fn degraded(&mut self, why: &Degraded) {
        let now = Instant::now();
        if self.warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            self.warned_at = Some(now);
            let fallback = if self.user_delegated { "keeping the current token" } else { "fetching without the store" };
            tracing::warn!(reason = %why, fallback, "shared token store not used for this fetch");
        }
    }

    fn unreadable(&mut self) {
        let now = Instant::now();
        if self.unreadable_warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            self.unreadable_warned_at = Some(now);
            tracing::warn!(
                "the shared token entry does not open (another entry key, or plaintext against encryption); \
                 treating it as absent"
            );
        }
    }
}

impl TokenSource for SharedSource {
    fn key(&self) -> &CacheKey {
        self.inner.key()
    }

    fn fetch(&mut self) -> FetchFuture<'_> {
        Box::pin(self.obtain())
    }

    fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.dpop_key()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::client::store::MemoryTokenStore;

    /// Hands out `token-1`, `token-2`, … and counts its fetches.
    struct Counting {
        key: CacheKey,
        fetches: Arc<AtomicU64>,
    }

    impl TokenSource for Counting {
        fn key(&self) -> &CacheKey {
            &self.key
        }

        fn fetch(&mut self) -> FetchFuture<'_> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { TokenResponse::bearer(format!("token-{n}"), Some(Duration::from_secs(300))) })
        }
    }

    fn source(store: &MemoryTokenStore, fetches: &Arc<AtomicU64>) -> SharedSource {
        let key =
            CacheKey::new("https://idp/token", "c", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        let inner = Box::new(Counting { key, fetches: fetches.clone() });
        SharedStore::new(store.clone(), EntryKey::new([3; 32])).wrap(inner, RefreshPolicy::default()).unwrap()
    }

    #[tokio::test]
    async fn sources_on_one_store_share_a_token_and_asking_again_means_a_new_one() {
        let store = MemoryTokenStore::new();
        let fetches = Arc::new(AtomicU64::new(0));
        let (mut a, mut b) = (source(&store, &fetches), source(&store, &fetches));
        let first = a.fetch().await.unwrap();
        assert_eq!(first.access_token(), "token-1");
        assert_eq!(first.issued_ago(), Duration::ZERO);
        let shared = b.fetch().await.unwrap();
        assert_eq!(shared.access_token(), "token-1");
        assert_eq!(shared.expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // B asks again while the entry still holds its token: a forced refresh (an API
        // rejected it), so B fetches under the lease, and A then takes B's token.
        assert_eq!(b.fetch().await.unwrap().access_token(), "token-2");
        assert_eq!(a.fetch().await.unwrap().access_token(), "token-2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        // A flush: the next fetch fetches.
        store.clear();
        assert_eq!(a.fetch().await.unwrap().access_token(), "token-3");
    }

    #[tokio::test]
    async fn a_held_lease_makes_others_wait_then_fetch_once_it_expires() {
        let store = MemoryTokenStore::new();
        let fetches = Arc::new(AtomicU64::new(0));
        let mut waiter = source(&store, &fetches);
        // A holder that died: its lease stands, and no entry comes.
        assert!(store.try_lease(&waiter.keys.lease, "dead", Duration::from_millis(300)).await.unwrap());
        let started = Instant::now();
        assert_eq!(waiter.fetch().await.unwrap().access_token(), "token-1");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn debug_shows_neither_key_nor_grant_id() {
        let store = SharedStore::new(MemoryTokenStore::new(), EntryKey::new([0x41; 32])).grant_id("alice");
        let shown = format!("{store:?}");
        assert!(!shown.contains("AAAA") && !shown.contains("alice") && shown.contains("AES-256-GCM"), "{shown}");
    }
}
