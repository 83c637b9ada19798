//! The operations a shared store offers: values with a time to live, and leases.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future of one store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where a fleet of processes keeps the tokens it shares, and the leases that decide
/// which process fetches: the backend of a [`SharedStore`](super::SharedStore).
///
/// [`RedisTokenStore`](super::RedisTokenStore) (feature `redis`) is the store for a
/// fleet; [`MemoryTokenStore`](super::MemoryTokenStore) shares within one process.
/// Implement this trait to use another backend. The cache's side of the protocol
/// (hashed keys, sealed values, the lease discipline, degradation) is done for every
/// store alike, so a backend only stores bytes:
///
/// - keys are short ASCII strings without a secret; values are opaque bytes;
/// - every value and lease expires after its time to live, on its own;
/// - a lease is taken only when no one holds it (Redis `SET NX PX`), and renewed or
///   released only by its holder (compare-and-set).
///
/// Each call is bounded by the shared store's operation timeout, and any error or
/// timeout makes the cache fetch on its own (or, for a refresh-token grant, wait), so
/// a backend need not retry for long.
pub trait TokenStore: Send + Sync + 'static {
    /// The value under `key`, if there is one that has not expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`, replacing any value.
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;

    /// Takes the lease `key` for `holder` for `ttl` if no one holds it; whether it was
    /// taken.
    fn try_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Extends the lease `key` to `ttl` from now if `holder` still holds it; whether it
    /// did.
    fn renew_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Ends the lease `key` if `holder` still holds it (one that expired and went to
    /// another holder is left alone).
    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()>;
}

/// A store operation failed. The cache logs it (without any value) and carries on
/// without the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The operation took longer than the shared store's operation timeout: the store
    /// is slow, paused or unreachable.
    Timeout,
    /// The store could not be reached or refused the operation; the source says why.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("token store operation timed out"),
            StoreError::Unavailable(_) => f.write_str("token store unavailable"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Timeout => None,
            StoreError::Unavailable(error) => Some(&**error),
        }
    }
}
