//! The store for a fleet: Redis, through the `redis` crate's connection manager.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisError};

use super::{StoreError, StoreFuture, TokenStore};
use crate::error::BuildError;

/// A [`TokenStore`] in Redis (or a server that speaks its protocol, such as Valkey), so
/// that every process of a fleet shares one token per key: wrap it in a
/// [`SharedStore`](super::SharedStore).
///
/// - Values are written with `SET key value PX ttl`, so they expire with the token.
/// - The lease is `SET key holder NX PX ttl`; renewing and releasing it compare the
///   holder first, in one Lua script each, so a process never ends another's lease.
/// - One multiplexed connection serves every operation of every clone, and it
///   reconnects by itself after Redis restarts or the network drops; a failed
///   operation is retried once on the new connection. Nothing connects until the first
///   operation, so a Redis that is down at start-up only means the cache fetches alone.
///
/// URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS (with the
/// `rustls` feature), and `unix:///path/to/redis.sock`. `Debug` shows the address
/// without the password.
///
/// ```no_run
/// use tower_oauth::client::store::RedisTokenStore;
///
/// # async fn run() -> Result<(), tower_oauth::BuildError> {
/// let store = RedisTokenStore::new("redis://:s3cret@redis.internal:6379/0")?;
/// assert!(!format!("{store:?}").contains("s3cret"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTokenStore {
    connection: ConnectionManager,
    address: Arc<str>,
}

/// Renews the lease only for its holder.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Releases the lease only for its holder.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

impl RedisTokenStore {
    /// A store at `url`. No connection is made yet.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidUrl`] for a URL the `redis` crate does not accept (a
    /// `rediss://` URL without the `rustls` feature among them), and
    /// [`BuildError::NoRuntime`] outside a Tokio runtime.
    pub fn new(url: &str) -> Result<RedisTokenStore, BuildError> {
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let client = redis::Client::open(url).map_err(|_| BuildError::InvalidUrl)?;
        // Reconnect attempts stay short and frequent: an operation waits at most the
        // shared store's operation timeout anyway, and a restarted Redis should be used
        // again at the next fetch.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(|_| BuildError::InvalidUrl)?;
        Ok(RedisTokenStore { connection, address: redacted(url).into() })
    }

    /// Runs `cmd`, once more if the connection had dropped: the first failure is what
    /// tells the manager to reconnect.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match cmd.query_async(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) if reconnects(&error) => cmd.query_async(&mut connection).await.map_err(unavailable),
            Err(error) => Err(unavailable(error)),
        }
    }
}

fn reconnects(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

fn unavailable(error: RedisError) -> StoreError {
    crate::telemetry::redis_failure();
    StoreError::Unavailable(Box::new(error))
}

fn ttl_ms(ttl: Duration) -> u64 {
    // Redis refuses PX 0; one millisecond is as good as expired.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl TokenStore for RedisTokenStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.run(redis::cmd("GET").arg(key)).await })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.run(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms(ttl))).await })
    }

    fn try_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let cmd = redis::cmd("SET").arg(key).arg(holder).arg("NX").arg("PX").arg(ttl_ms(ttl)).clone();
            // `OK` when taken, nil when someone holds it.
            Ok(self.run::<Option<String>>(&cmd).await?.is_some())
        })
    }

    fn renew_lease<'a>(&'a self, key: &'a str, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let cmd = redis::cmd("EVAL").arg(RENEW).arg(1).arg(key).arg(holder).arg(ttl_ms(ttl)).clone();
            Ok(self.run::<i64>(&cmd).await? == 1)
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, holder: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let cmd = redis::cmd("EVAL").arg(RELEASE).arg(1).arg(key).arg(holder).clone();
            self.run::<i64>(&cmd).await.map(|_| ())
        })
    }
}

/// The URL without its password, for `Debug`: the user-info password, and the query,
/// where `unix://` URLs carry theirs (`?pass=`).
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                parsed.set_query(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsed>".to_owned(),
    }
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenStore").field("address", &self.address).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_never_shows_the_password() {
        assert_eq!(redacted("redis://:hunter2@cache:6379/1"), "redis://:***@cache:6379/1");
        assert_eq!(redacted("redis://app:hunter2@cache/"), "redis://app:***@cache/");
        assert_eq!(redacted("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redacted("not a url :hunter2"), "<unparsed>");
        assert_eq!(redacted("unix:///run/redis.sock?db=1&pass=hunter2"), "unix:///run/redis.sock?***");
    }

    #[tokio::test]
    async fn a_store_is_made_without_connecting_and_debug_hides_the_password() {
        // Nothing listens on port 9: building must not try.
        let store = RedisTokenStore::new("redis://:hunter2@127.0.0.1:9/0").unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains("127.0.0.1:9") && !shown.contains("hunter2"), "{shown}");
        assert!(matches!(RedisTokenStore::new("http://127.0.0.1/"), Err(BuildError::InvalidUrl)));
    }

    #[test]
    fn outside_a_runtime_it_says_so() {
        assert!(matches!(RedisTokenStore::new("redis://127.0.0.1"), Err(BuildError::NoRuntime)));
    }
}
