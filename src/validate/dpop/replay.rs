//! The DPoP replay cache (RFC 9449 §11.1): each proof is accepted once, by this process
//! or, with a shared store, by any process of the fleet.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::client::store::TokenStore;

/// The default bound of the in-memory cache: a million proofs, about 40 MB at most.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;

/// How long a shared store may take to answer before the request is refused (503).
pub const DEFAULT_REPLAY_STORE_TIMEOUT: Duration = Duration::from_secs(2);

const SHARDS: usize = 16;

/// Where the proofs already seen are remembered until they would be too old anyway.
///
/// - [`in_memory`](Self::in_memory) (the default): this process only, bounded. When it
///   is full of proofs that are all still fresh, new proofs are refused (503) rather
///   than old ones forgotten, which would let them be replayed.
/// - [`shared`](Self::shared): a [`TokenStore`] (such as
///   [`RedisTokenStore`](crate::client::store::RedisTokenStore)) shared by every
///   replica, so a proof replayed to another replica fails too. Each proof is written
///   once with `SET key NX PX ttl`. The local cache is checked first, so a replay to
///   the same process costs no round trip.
///
/// When the shared store is down or slow, requests with proofs are refused with 503
/// (fail closed); a proof so refused is not spent, having been accepted nowhere, and may
/// be sent again. Serving with only this process's memory is a named choice:
/// [`dangerous_local_fallback`](Self::dangerous_local_fallback).
///
/// Keys are a SHA-256 of the proof's key thumbprint and its `jti`: what one client
/// chooses cannot collide with what another chooses.
#[derive(Clone)]
pub struct DpopReplayCache {
    local: Arc<LocalReplay>,
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    store: Arc<dyn TokenStore>,
    prefix: Arc<str>,
    timeout: Duration,
    local_fallback: bool,
}

impl fmt::Debug for DpopReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopReplayCache")
            .field("capacity", &self.local.capacity)
            .field("shared", &self.shared.as_ref().map(|s| &*s.prefix))
            .field("local_fallback", &self.shared.as_ref().is_some_and(|s| s.local_fallback))
            .finish()
    }
}

impl Default for DpopReplayCache {
    fn default() -> Self {
        DpopReplayCache::in_memory(DEFAULT_REPLAY_CAPACITY)
    }
}

/// Why a proof could not be accepted as new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayError {
    /// Seen before.
    Replayed,
    /// The cache cannot remember it: full of fresh proofs, or the shared store is down.
    Unavailable,
}

impl DpopReplayCache {
    /// A cache in this process's memory for at most `capacity` proofs.
    pub fn in_memory(capacity: usize) -> DpopReplayCache {
        DpopReplayCache { local: Arc::new(LocalReplay::new(capacity)), shared: None }
    }

    /// A cache shared through `store`, under keys that start with `prefix` (say
    /// `"dpop:api:"`), with an in-memory cache of [`DEFAULT_REPLAY_CAPACITY`] in front.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # fn run() -> Result<(), tower_oauth::BuildError> {
    /// use tower_oauth::client::store::RedisTokenStore;
    /// use tower_oauth::validate::dpop::DpopReplayCache;
    ///
    /// let replay = DpopReplayCache::shared(RedisTokenStore::new("redis://127.0.0.1:6379")?, "dpop:api:");
    /// # let _ = replay; Ok(()) }
    /// ```
    pub fn shared(store: impl TokenStore, prefix: &str) -> DpopReplayCache {
        DpopReplayCache {
            local: Arc::new(LocalReplay::new(DEFAULT_REPLAY_CAPACITY)),
            shared: Some(Shared {
                store: Arc::new(store),
                prefix: prefix.into(),
                timeout: DEFAULT_REPLAY_STORE_TIMEOUT,
                local_fallback: false,
            }),
        }
    }

    /// How long the shared store may take; default [`DEFAULT_REPLAY_STORE_TIMEOUT`].
    pub fn store_timeout(mut self, timeout: Duration) -> DpopReplayCache {
        if let Some(shared) = &mut self.shared {
            shared.timeout = timeout;
        }
        self
    }

    /// When the shared store cannot answer, accept proofs that this process has not
    /// seen, instead of refusing them with 503.
    ///
    /// Risky: while the store is down, a proof can be replayed once to each other
    /// replica.
    pub fn dangerous_local_fallback(mut self) -> DpopReplayCache {
        if let Some(shared) = &mut self.shared {
            shared.local_fallback = true;
        }
        self
    }

    /// The number of proofs this process remembers.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether this process remembers no proof.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a shared store must be asked: then [`check_shared`](Self::check_shared)
    /// follows [`check_local`](Self::check_local).
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Remembers `key` until `expires_at` (Unix seconds), unless this process has seen
    /// it already.
    pub(crate) fn check_local(&self, key: &[u8; 32], expires_at: i64, now: i64) -> Result<(), ReplayError> {
        self.local.insert(key, expires_at, now)
    }

    /// Writes `key` to the shared store unless any process wrote it before. When the
    /// store cannot answer and the proof is refused for it, this process forgets the proof
    /// too: it was accepted nowhere, so the client may send it again once the store is back.
    pub(crate) async fn check_shared(&self, key: &[u8; 32], expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let name = format!("{}{}", shared.prefix, URL_SAFE_NO_PAD.encode(&key[..16]));
        let ttl = Duration::from_secs(u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0).max(1));
        let answer = tokio::time::timeout(shared.timeout, shared.store.try_lease(&name, "1", ttl)).await;
        match answer {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(ReplayError::Replayed),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    fallback = shared.local_fallback,
                    "the shared DPoP replay cache did not answer; proofs are refused unless the local fallback is on"
                );
                if shared.local_fallback {
                    Ok(())
                } else {
                    self.local.remove(key);
                    Err(ReplayError::Unavailable)
                }
            }
        }
    }
}

/// Proofs seen by this process: sharded maps of key → expiry, swept when full.
struct LocalReplay {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u128, i64>,
    /// No sweep before this time (Unix seconds): a shard full of fresh proofs is not
    /// swept again on every request.
    next_sweep: i64,
}

impl LocalReplay {
    fn new(capacity: usize) -> LocalReplay {
        LocalReplay { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), capacity: capacity.max(SHARDS) }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.entries.len())).sum()
    }

    /// The shard of `key`, locked, and the part of the key kept.
    fn shard(&self, key: &[u8; 32]) -> (std::sync::MutexGuard<'_, Shard>, u128) {
        // The key is a SHA-256: its bytes are uniform, and 128 of them are plenty.
        let short = u128::from_le_bytes(key[..16].try_into().unwrap_or_default());
        let shard = &self.shards[usize::from(key[16]) % SHARDS];
        (shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner), short)
    }

    fn remove(&self, key: &[u8; 32]) {
        let (mut shard, short) = self.shard(key);
        shard.entries.remove(&short);
    }

    fn insert(&self, key: &[u8; 32], expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let (mut shard, short) = self.shard(key);
        if let Some(&until) = shard.entries.get(&short)
            && until >= now
        {
            return Err(ReplayError::Replayed);
        }
        let room = self.capacity / SHARDS;
        if shard.entries.len() >= room {
            if now >= shard.next_sweep {
                shard.entries.retain(|_, until| *until >= now);
                shard.next_sweep = now + 1;
            }
            if shard.entries.len() >= room {
                tracing::warn!("the DPoP replay cache is full of fresh proofs; new proofs are refused");
                return Err(ReplayError::Unavailable);
            }
        }
        shard.entries.insert(short, expires_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::store::MemoryTokenStore;

    fn key(n: u8) -> [u8; 32] {
        let mut key = [n; 32];
        key[16] = n; // the shard
        key
    }

    #[test]
    fn a_proof_is_accepted_once_until_it_expires() {
        let cache = DpopReplayCache::in_memory(1000);
        assert_eq!(cache.check_local(&key(1), 100, 50), Ok(()));
        assert_eq!(cache.check_local(&key(1), 100, 99), Err(ReplayError::Replayed));
        assert_eq!(cache.check_local(&key(2), 100, 99), Ok(()));
        // Past its expiry the proof is too old to pass anyway; the entry may go.
        assert_eq!(cache.check_local(&key(1), 200, 101), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_full_cache_refuses_new_proofs_rather_than_forget_fresh_ones() {
        let cache = DpopReplayCache::in_memory(SHARDS * 2);
        // Three keys in one shard of room two.
        let k = |n: u8| {
            let mut k = [n; 32];
            k[16] = 0;
            k
        };
        assert_eq!(cache.check_local(&k(1), 100, 10), Ok(()));
        assert_eq!(cache.check_local(&k(2), 50, 10), Ok(()));
        assert_eq!(cache.check_local(&k(3), 100, 10), Err(ReplayError::Unavailable));
        assert_eq!(cache.check_local(&k(1), 100, 10), Err(ReplayError::Replayed), "still remembered");
        // Once one has expired, a sweep makes room.
        assert_eq!(cache.check_local(&k(3), 100, 60), Ok(()));
    }

    #[tokio::test]
    async fn a_shared_store_refuses_a_proof_another_replica_accepted() {
        let store = MemoryTokenStore::new();
        let one = DpopReplayCache::shared(store.clone(), "dpop:");
        let two = DpopReplayCache::shared(store, "dpop:");
        assert_eq!(one.check_shared(&key(1), 100, 50).await, Ok(()));
        assert_eq!(two.check_local(&key(1), 100, 50), Ok(()), "the other replica has not seen it");
        assert_eq!(two.check_shared(&key(1), 100, 50).await, Err(ReplayError::Replayed));
    }

    /// A store that never answers.
    struct Hung;

    impl TokenStore for Hung {
        fn get<'a>(&'a self, _: &'a str) -> crate::client::store::StoreFuture<'a, Option<Vec<u8>>> {
            Box::pin(std::future::pending())
        }
        fn put<'a>(&'a self, _: &'a str, _: &'a [u8], _: Duration) -> crate::client::store::StoreFuture<'a, ()> {
            Box::pin(std::future::pending())
        }
        fn try_lease<'a>(&'a self, _: &'a str, _: &'a str, _: Duration) -> crate::client::store::StoreFuture<'a, bool> {
            Box::pin(std::future::pending())
        }
        fn renew_lease<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: Duration,
        ) -> crate::client::store::StoreFuture<'a, bool> {
            Box::pin(std::future::pending())
        }
        fn release_lease<'a>(&'a self, _: &'a str, _: &'a str) -> crate::client::store::StoreFuture<'a, ()> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_does_not_answer_fails_closed_unless_told_otherwise() {
        let strict = DpopReplayCache::shared(Hung, "dpop:").store_timeout(Duration::from_millis(100));
        assert_eq!(strict.check_local(&key(1), 100, 50), Ok(()));
        assert_eq!(strict.check_shared(&key(1), 100, 50).await, Err(ReplayError::Unavailable));
        // Refused for the outage, the proof was accepted nowhere: it is not spent.
        assert_eq!(strict.check_local(&key(1), 100, 50), Ok(()), "forgotten locally");
        let lenient = DpopReplayCache::shared(Hung, "dpop:").dangerous_local_fallback();
        assert_eq!(lenient.check_local(&key(1), 100, 50), Ok(()));
        assert_eq!(lenient.check_shared(&key(1), 100, 50).await, Ok(()));
        assert_eq!(lenient.check_local(&key(1), 100, 50), Err(ReplayError::Replayed), "accepted, so remembered");
    }
}
