//! Shared by the Redis tests: a real `redis-server` on a free 127.0.0.1 port, started
//! and stopped by the test (no persistence, so a restart is an empty Redis), and a
//! plain connection to look at what it holds.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// A `redis-server` process that this test owns.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run redis-server ({error}): scripts/test installs it, \
                     or run `apt-get install -y redis-server`"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = self.try_connect().await
                && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?.get_multiplexed_async_connection().await
    }

    /// A connection of the test's own.
    pub async fn connection(&self) -> MultiplexedConnection {
        self.try_connect().await.unwrap()
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            redis::cmd("KEYS").arg("*").query_async(&mut self.connection().await).await.unwrap();
        keys.sort();
        keys
    }

    /// The raw value of `key`.
    pub async fn raw(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET").arg(key).query_async(&mut self.connection().await).await.unwrap()
    }

    /// `FLUSHALL`.
    pub async fn flush(&self) {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut self.connection().await).await.unwrap();
    }

    /// Makes the server unresponsive for `duration` (`DEBUG SLEEP`), in the background.
    pub async fn freeze_for(&self, duration: Duration) {
        let mut connection = self.connection().await;
        tokio::spawn(async move {
            let _: redis::RedisResult<()> =
                redis::cmd("DEBUG").arg("SLEEP").arg(duration.as_secs_f64()).query_async(&mut connection).await;
        });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free 127.0.0.1 port where nothing listens (for a Redis that is down).
pub fn dead_redis_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("redis://127.0.0.1:{port}")
}
