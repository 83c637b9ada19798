//! A store within one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{StoreFuture, TokenStore};

/// A [`TokenStore`] in this process's memory, with the same semantics as the Redis
/// store: values and leases expire after their time to live.
///
/// It lets caches that are built separately in one process (one per tenant, say, or
/// one per library that calls the same API) share one token, and it is the store to
/// test a custom [`TokenSource`](crate::client::TokenSource) or backend against.
/// Clones share the same memory. Across processes, use
/// [`RedisTokenStore`](super::RedisTokenStore).
#[derive(Clone, Default)]
pub struct MemoryTokenStore {
    inner: Arc<Mutex<Slots>>,
}

#[derive(Default)]
struct Slots {
    values: HashMap<String, (Vec<u8>, Instant)>,
    leases: HashMap<String, (String, Instant)>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> MemoryTokenStore {
        MemoryTokenStore::default()
    }

    /// Forgets every value and lease, like Redis `FLUSHALL`.
    pub fn clear(&self) {
        let mut slots = self.slots();
        slots.values.clear();
        slots.leases.clear();
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Every critical section leaves the maps consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The holder of the lease `key`, if it has not expired.
    fn holder(slots: &mut Slots, key: &str, now: Instant) -> Option<String> {
        match slots.leases.get(key) {
            Some((holder, until)) if now < *until => Some(holder.clone()),
            Some(_) => {
                slots.leases.remove(key);
                None
            }
            None => None,
        }
    }
}

impl TokenStore for MemoryTokenStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let now = Instant::now();
        let mut slots = self.slots();
        let value = match slots.values.get(key) {
            Some((value, until)) if now < *until => Some(value.clone()),
            Some(_) => {
                slots.values.remove(key);
                None
            }
            None => None,
        };
        Box::pin(std::future::ready(Ok(value)))
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        let until = Instant::now() + ttl;
        self.slots().values.insert(key.to_owned(), (value.to_vec(), until));
        Box::pin(std::future::ready(Ok(())))
    }

    fn try_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut slots = self.slots();
        let taken = MemoryTokenStore::holder(&mut slots, key, now).is_none();
        if taken {
            slots.leases.insert(key.to_owned(), (holder.to_owned(), now + ttl));
        }
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn renew_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut slots = self.slots();
        let held = MemoryTokenStore::holder(&mut slots, key, now).is_some_and(|h| h == holder);
        if held {
            slots.leases.insert(key.to_owned(), (holder.to_owned(), now + ttl));
        }
        Box::pin(std::future::ready(Ok(held)))
    }

    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        let now = Instant::now();
        let mut slots = self.slots();
        if MemoryTokenStore::holder(&mut slots, key, now).is_some_and(|h| h == holder) {
            slots.leases.remove(key);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.slots();
        f.debug_struct("MemoryTokenStore")
            .field("values", &slots.values.len())
            .field("leases", &slots.leases.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_go_to_one_holder_until_released_or_expired() {
        let store = MemoryTokenStore::new();
        let ttl = Duration::from_secs(60);
        assert!(store.try_lease("l", "a", ttl).await.unwrap());
        assert!(!store.try_lease("l", "b", ttl).await.unwrap());
        assert!(!store.renew_lease("l", "b", ttl).await.unwrap());
        assert!(store.renew_lease("l", "a", ttl).await.unwrap());
        store.release_lease("l", "b").await.unwrap(); // not b's to release
        assert!(!store.try_lease("l", "b", ttl).await.unwrap());
        store.release_lease("l", "a").await.unwrap();
        assert!(store.try_lease("l", "b", Duration::ZERO).await.unwrap());
        // A lease of no time has expired at once: its holder died, in effect.
        assert!(store.try_lease("l", "c", ttl).await.unwrap());

        store.put("v", b"bytes", ttl).await.unwrap();
        store.put("gone", b"bytes", Duration::ZERO).await.unwrap();
        assert_eq!(store.get("v").await.unwrap().as_deref(), Some(&b"bytes"[..]));
        assert_eq!(store.get("gone").await.unwrap(), None);
        store.clear();
        assert_eq!(store.get("v").await.unwrap(), None);
        assert_eq!(format!("{store:?}"), "MemoryTokenStore { values: 0, leases: 0 }");
    }
}
