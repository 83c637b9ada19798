//! Sharing tokens between processes: a store under the token cache.
//!
//! A [`TokenCache`](super::TokenCache) keeps its token in process memory, and by default
//! that is all: each process fetches its own token, which is free on the request path
//! and right for one replica. When a service runs as many replicas, each one fetching
//! its own token multiplies the load on the token endpoint (and its rate limits) by
//! the number of replicas. A [`SharedStore`] in front of the token endpoint makes the
//! fleet fetch one token per key:
//!
//! - [`TokenStore`] is what a store offers: values that expire, and leases;
//! - [`RedisTokenStore`] (feature `redis`) keeps them in Redis, for a fleet;
//!   [`MemoryTokenStore`] keeps them in this process, for caches built separately in
//!   one process and for tests;
//! - [`SharedStore`] is the protocol over any store: hashed keys, entries sealed with
//!   an [`EntryKey`], one fetch per refresh under a lease, and a store that is down,
//!   slow or flushed degrades to per-process fetching, never to a failed request.
//!
//! The request path does not change: requests read the cache's `ArcSwap` as before,
//! and only the cache's background task, when it needs a new token, talks to the store.
//!
//! ```no_run
//! use tower_oauth::client::store::{EntryKey, RedisTokenStore, SharedStore};
//! use tower_oauth::client::{TokenCache, TokenEndpoint};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = TokenEndpoint::builder("https://idp.example/token", "billing", "s3cret")
//!     .scope("invoices:write")
//!     .build()?;
//! let store = SharedStore::new(
//!     RedisTokenStore::new("redis://127.0.0.1:6379")?,
//!     EntryKey::derive_from_client_secret("s3cret"),
//! );
//! let cache = TokenCache::builder(endpoint).store(store).build()?;
//! # let _ = cache;
//! # Ok(()) }
//! ```

mod backend;
mod entry;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod shared;

pub use backend::{StoreError, StoreFuture, TokenStore};
pub use entry::EntryKey;
pub use memory::MemoryTokenStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisTokenStore;
pub use shared::SharedStore;
