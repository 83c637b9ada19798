//! A bounded cache of per-token answers with single flight: what introspection and
//! userinfo share.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};

/// The SHA-256 of a token: the cache key, so the cache never holds a token.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn token_hash(token: &str) -> TokenHash {
    let mut hash = [0; 32];
    hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    hash
}

/// Per-token answers, each with its own lifetime, bounded by total weight (S3-FIFO
/// eviction). One fetch per token at a time: callers that arrive while it runs wait
/// for it and share its answer, even one that is not kept.
pub(crate) struct FlightCache<V> {
    entries: quick_cache::sync::Cache<TokenHash, Arc<Entry<V>>, EntryWeight>,
}

/// What a fetch produced, and how long it may be reused.
pub(crate) struct Fetched<V> {
    pub(crate) value: V,
    /// `Duration::ZERO`: shared with the callers already waiting, then dropped.
    pub(crate) ttl: Duration,
    /// The approximate size in bytes of `value`, for the bound.
    pub(crate) weight: u64,
}

struct Entry<V> {
    value: V,
    /// `None` for an answer that is not kept.
    expires: Option<Instant>,
    weight: u64,
}

impl<V> Entry<V> {
    /// An answer that is not kept is only ever seen by the callers of its flight (it
    /// leaves the cache as soon as it is published), so they may all use it.
    fn usable(&self, now: Instant) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }
}

#[derive(Clone)]
struct EntryWeight;

/// A fixed allowance for the key, the entry and the cache's own bookkeeping.
const ENTRY_OVERHEAD: u64 = 160;

impl<V> quick_cache::Weighter<TokenHash, Arc<Entry<V>>> for EntryWeight {
    fn weight(&self, _: &TokenHash, entry: &Arc<Entry<V>>) -> u64 {
        entry.weight + ENTRY_OVERHEAD
    }
}

impl<V: Clone> FlightCache<V> {
    pub(crate) fn with_capacity(bytes: u64) -> Self {
        let estimated_items = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
        FlightCache { entries: quick_cache::sync::Cache::with_weighter(estimated_items, bytes.max(1), EntryWeight) }
    }

    /// The cached answer for `token`, or the answer of the one `fetch` that runs for
    /// it (started here, or joined).
    pub(crate) async fn get_or_fetch<F, Fut>(&self, token: &str, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Fetched<V>>,
    {
        let key = token_hash(token);
        let mut fetch = Some(fetch);
        loop {
            match self.entries.get_value_or_guard_async(&key).await {
                Ok(entry) if entry.usable(Instant::now()) => return entry.value.clone(),
                Ok(stale) => {
                    self.entries.remove_if(&key, |current| Arc::ptr_eq(current, &stale));
                }
                Err(guard) => {
                    let fetch = fetch.take().expect("a flight starts at most once per call");
                    let fetched = fetch().await;
                    let expires = (!fetched.ttl.is_zero()).then(|| Instant::now() + fetched.ttl);
                    let entry = Arc::new(Entry { value: fetched.value, expires, weight: fetched.weight });
                    // Publishing through the guard wakes the callers that joined this
                    // flight; an answer that is not kept leaves again at once.
                    let _ = guard.insert(Arc::clone(&entry));
                    if expires.is_none() {
                        self.entries.remove_if(&key, |current| Arc::ptr_eq(current, &entry));
                    }
                    return entry.value.clone();
                }
            }
        }
    }

    /// The kept, unexpired answer for `token`, without waiting for anything: the fast
    /// path of a hit.
    pub(crate) fn get(&self, token: &str) -> Option<V> {
        let entry = self.entries.get(&token_hash(token))?;
        (entry.expires.is_some() && entry.usable(Instant::now())).then(|| entry.value.clone())
    }

    /// Forgets the answer for `token`.
    pub(crate) fn remove(&self, token: &str) {
        self.entries.remove(&token_hash(token));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.entries.weight()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answer(value: u32, ttl: Duration) -> Fetched<u32> {
        Fetched { value, ttl, weight: 4 }
    }

    #[tokio::test]
    async fn a_kept_answer_is_reused_and_an_unkept_one_is_not() {
        let cache = FlightCache::with_capacity(1 << 20);
        let fetches = AtomicUsize::new(0);
        let fetch = |value, ttl| {
            let fetches = &fetches;
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                answer(value, ttl)
            }
        };
        assert_eq!(cache.get_or_fetch("a", fetch(1, Duration::from_secs(60))).await, 1);
        assert_eq!(cache.get_or_fetch("a", fetch(2, Duration::from_secs(60))).await, 1);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get_or_fetch("b", fetch(3, Duration::ZERO)).await, 3);
        assert_eq!(cache.get_or_fetch("b", fetch(4, Duration::ZERO)).await, 4);
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), 1);
        cache.remove("a");
        assert_eq!(cache.get_or_fetch("a", fetch(5, Duration::from_secs(60))).await, 5);
    }

    #[tokio::test(start_paused = false)]
    async fn an_expired_answer_is_fetched_again() {
        let cache = FlightCache::with_capacity(1 << 20);
        assert_eq!(cache.get_or_fetch("a", || async { answer(1, Duration::from_millis(1)) }).await, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get_or_fetch("a", || async { answer(2, Duration::from_secs(60)) }).await, 2);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_token() {
        assert_eq!(
            token_hash("abc")[..4],
            [0xba, 0x78, 0x16, 0xbf] // FIPS 180-2 example B.1
        );
    }
}
