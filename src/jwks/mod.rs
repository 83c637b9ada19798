//! The key store: the issuer's JWK Set in an `ArcSwap`, kept fresh by a background task.
//!
//! Requests read the current [`KeySet`](crate::KeySet) without a lock. One task per
//! store fetches it:
//! - first through discovery (OIDC, then RFC 8414 metadata) unless a JWKS URI is given;
//! - then on a schedule (5 min by default; `Cache-Control: max-age` is honoured within
//!   bounds of 1 min to 1 day);
//! - and at once when a token names an unknown `kid`: single-flight, paced by a cooldown
//!   that starts at 250 ms and doubles (up to 30 s) only while such fetches bring no new
//!   key; the request that saw the `kid` waits for that fetch (and for up to 2 s of
//!   cooldown), so a key rotation does not turn into a 401 even when made-up `kid`s
//!   arrived shortly before.
//!
//! Fetches are conditional (`If-None-Match`, `If-Modified-Since`) once the server has
//! named its set's version, so an unchanged set costs the issuer a `304`.
//!
//! A failed fetch keeps the last good set and retries with jittered backoff (honouring
//! `Retry-After`). Every fetch is bounded: 10 s in all, 1 MiB bodies, https only except
//! on loopback, redirects included. The task ends when the last handle is dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_oauth::{KeyStore, Validator};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeyStore::builder()
//!     .issuer("https://login.example.com")
//!     .refresh_interval(Duration::from_secs(600))
//!     .build()?;
//! keys.wait_until_loaded(Duration::from_secs(5)).await;
//!
//! let validator = Validator::builder()
//!     .issuer_with_keys("https://login.example.com", keys)
//!     .audience("my-api")
//!     .build()?;
//! # Ok(()) }
//! ```

mod refresher;
mod schedule;
mod source;
mod store;

pub use store::{KeyStore, KeyStoreBuilder};
