//! A bounded cache of per-token answers with single flight, and the rule for how long
//! an answer lives: what introspection and userinfo share.
//!
//! - The key is the SHA-256 of the token: the cache never holds a token.
//! - One fetch per token at a time: callers that arrive while it runs wait for it and
//!   share its answer, even one that is not kept (a failure).
//! - An answer that is kept lives until the token's `exp`, and never longer than the
//!   owner's `max_ttl` ([`ttl_until`]); an answer with a time to live of zero is shared
//!   with the waiting callers, then dropped.
//! - The cache is bounded by the weight of its answers (S3-FIFO eviction).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};

/// The default longest time an answer is reused, whatever the token's `exp`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// The default bound of an answer cache, in bytes of claims (plus a fixed allowance per
/// entry).
pub const DEFAULT_CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

/// How long an answer about a token that expires at `exp` (seconds since the epoch) may
/// be reused: until `exp`, and never longer than `max_ttl` (nor longer than `max_ttl`
/// when the token has no `exp`). Zero once the token has expired.
pub(crate) fn ttl_until(exp: Option<i64>, max_ttl: Duration) -> Duration {
    let Some(exp) = exp else { return max_ttl };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Duration::from_secs(u64::try_from(exp).unwrap_or(0).saturating_sub(now)).min(max_ttl)
}

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
pub(crate) struct AnswerCache<V> {
    entries: quick_cache::sync::Cache<TokenHash, Arc<Entry<V>>, EntryWeight>,
}

/// What a fetch produced, and how long it may be reused.
pub(crate) struct Answer<V> {
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

impl<V: Clone> AnswerCache<V> {
    pub(crate) fn with_capacity(bytes: u64) -> Self {
        let estimated_items = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
        AnswerCache { entries: quick_cache::sync::Cache::with_weighter(estimated_items, bytes.max(1), EntryWeight) }
    }

    /// The cached answer for `token`, or the answer of the one `fetch` that runs for
    /// it (started here, or joined).
    pub(crate) async fn get_or_fetch<F, Fut>(&self, token: &str, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer<V>>,
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

    fn answer(value: u32, ttl: Duration) -> Answer<u32> {
        Answer { value, ttl, weight: 4 }
    }

    #[tokio::test]
    async fn a_kept_answer_is_reused_and_an_unkept_one_is_not() {
        let cache = AnswerCache::with_capacity(1 << 20);
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
        let cache = AnswerCache::with_capacity(1 << 20);
        assert_eq!(cache.get_or_fetch("a", || async { answer(1, Duration::from_millis(1)) }).await, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get_or_fetch("a", || async { answer(2, Duration::from_secs(60)) }).await, 2);
    }

    #[test]
    fn an_answer_lives_until_exp_and_never_longer_than_max_ttl() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let max = Duration::from_secs(300);
        assert_eq!(ttl_until(None, max), max);
        assert_eq!(ttl_until(Some(now + 3600), max), max);
        let soon = ttl_until(Some(now + 60), max);
        assert!(soon <= Duration::from_secs(60) && soon >= Duration::from_secs(58), "{soon:?}");
        assert_eq!(ttl_until(Some(now - 1), max), Duration::ZERO);
        assert_eq!(ttl_until(Some(-5), max), Duration::ZERO);
        assert_eq!(ttl_until(Some(now + 60), Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch_even_of_an_answer_not_kept() {
        let cache = Arc::new(AnswerCache::with_capacity(1 << 20));
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, fetches) = (Arc::clone(&cache), Arc::clone(&fetches));
                tokio::spawn(async move {
                    cache
                        .get_or_fetch("t", || async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            answer(7, Duration::ZERO)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!((cache.len(), cache.get("t")), (0, None), "not kept");
    }

    #[tokio::test]
    async fn only_a_kept_unexpired_answer_is_served_without_waiting() {
        let cache = AnswerCache::with_capacity(1 << 20);
        assert_eq!(cache.get("a"), None);
        cache.get_or_fetch("a", || async { answer(1, Duration::from_secs(60)) }).await;
        assert_eq!(cache.get("a"), Some(1));
        cache.get_or_fetch("b", || async { answer(2, Duration::from_millis(1)) }).await;
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get("b"), None);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_token() {
        assert_eq!(
            token_hash("abc")[..4],
            [0xba, 0x78, 0x16, 0xbf] // FIPS 180-2 example B.1
        );
    }
}
