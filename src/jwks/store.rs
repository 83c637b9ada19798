use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, oneshot, watch};

use super::refresher::{Refresher, Schedule, Source};
use crate::KeySet;
use crate::error::BuildError;
use crate::fetch::{self, Limits};

/// The issuer's signing keys, shared by every clone of the handle.
///
/// Built with [`KeyStore::builder`] (remote, refreshed) or [`KeyStore::from_key_set`]
/// (fixed). See the [module docs](crate::jwks).
#[derive(Clone)]
pub struct KeyStore {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) keys: ArcSwapOption<KeySet>,
    remote: Option<Remote>,
}

struct Remote {
    wake: Arc<Notify>,
    /// Bumped after every fetch attempt, good or bad; waiters watch it.
    generation: watch::Sender<u64>,
    in_flight: AtomicBool,
    /// When the last on-demand fetch was claimed, in ms since `epoch` (`u64::MAX`: never).
    last_on_demand: AtomicU64,
    epoch: Instant,
    cooldown: Duration,
    /// How long a request waits for an on-demand fetch.
    wait: Duration,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Dropped with the last handle, which tells the task to stop.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.shared.keys.load().as_deref().map(KeySet::len))
            .field("remote", &self.shared.remote.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A builder for a store that fetches and refreshes a remote JWK Set.
    pub fn builder() -> KeyStoreBuilder {
        KeyStoreBuilder::default()
    }

    /// A store with fixed keys that never fetches: local keys, or HMAC secrets.
    pub fn from_key_set(keys: KeySet) -> KeyStore {
        KeyStore { shared: Arc::new(Shared { keys: ArcSwapOption::from_pointee(keys), remote: None }) }
    }

    /// The current key set, or `None` when none was ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.shared.keys.load_full()
    }

    /// Whether a key set has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.shared.keys.load().is_some()
    }

    /// Replaces the keys (for a fixed store; a remote store overwrites them at its next fetch).
    pub fn set_keys(&self, keys: KeySet) {
        self.shared.keys.store(Some(Arc::new(keys)));
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<KeySet>>> {
        self.shared.keys.load()
    }

    /// The number of fetch attempts so far (discovery and JWKS together count as one).
    pub fn fetch_attempts(&self) -> u64 {
        self.shared.remote.as_ref().map_or(0, |r| r.fetches.load(Ordering::Relaxed))
    }

    /// The number of failed fetch attempts so far.
    pub fn fetch_failures(&self) -> u64 {
        self.shared.remote.as_ref().map_or(0, |r| r.failures.load(Ordering::Relaxed))
    }

    /// Waits until a key set is loaded, up to `timeout`; returns whether one is.
    pub async fn wait_until_loaded(&self, timeout: Duration) -> bool {
        let Some(remote) = &self.shared.remote else { return self.is_loaded() };
        let mut rx = remote.generation.subscribe();
        let loaded = tokio::time::timeout(timeout, async {
            while !self.is_loaded() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        let _ = loaded.await;
        self.is_loaded()
    }

    /// Fetches now, bypassing the schedule and the cooldown, and waits for the result
    /// (bounded by the fetch timeout). Returns whether the fetch succeeded.
    pub async fn refresh(&self) -> bool {
        let Some(remote) = &self.shared.remote else { return self.is_loaded() };
        let failures = remote.failures.load(Ordering::Acquire);
        let mut rx = remote.generation.subscribe();
        rx.borrow_and_update();
        remote.wake.notify_one();
        let changed = tokio::time::timeout(remote.wait, rx.changed()).await;
        matches!(changed, Ok(Ok(()))) && remote.failures.load(Ordering::Acquire) == failures
    }

    /// Called by a request whose token names a `kid` the set lacks (or when no set is
    /// loaded). Joins a fetch in flight, or starts one if the cooldown allows, and
    /// waits for it; returns at once when neither applies.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let Some(remote) = &self.shared.remote else { return };
        let mut rx = remote.generation.subscribe();
        rx.borrow_and_update();
        if !remote.in_flight.load(Ordering::Acquire) {
            let now = remote.epoch.elapsed().as_millis() as u64;
            let last = remote.last_on_demand.load(Ordering::Acquire);
            let cooled = last == u64::MAX || now.saturating_sub(last) >= remote.cooldown.as_millis() as u64;
            if !cooled {
                return;
            }
            // One request claims the fetch; the others that raced it just wait for it.
            if remote.last_on_demand.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                tracing::debug!("unknown kid: fetching keys on demand");
                remote.wake.notify_one();
            }
        }
        let _ = tokio::time::timeout(remote.wait, rx.changed()).await;
    }
}

/// Configures a remote [`KeyStore`].
#[must_use]
#[derive(Debug)]
pub struct KeyStoreBuilder {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    http_client: Option<reqwest::Client>,
    schedule: Schedule,
    cooldown: Duration,
    limits: Limits,
}

impl Default for KeyStoreBuilder {
    fn default() -> Self {
        KeyStoreBuilder {
            issuer: None,
            jwks_uri: None,
            http_client: None,
            schedule: Schedule::default(),
            cooldown: Duration::from_secs(30),
            limits: Limits { timeout: fetch::DEFAULT_TIMEOUT, max_body: fetch::DEFAULT_MAX_BODY },
        }
    }
}

impl KeyStoreBuilder {
    /// Finds the JWKS through the issuer's metadata (OIDC discovery, then RFC 8414).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Fetches the JWKS from this URI; skips discovery even when an issuer is set.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// The HTTP client for every fetch (custom CA, mTLS, proxy). Its own redirect
    /// policy applies; the final URL is still checked. Default: https-only redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// How often to refresh when the server sends no `max-age`. Default 5 min.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.schedule.interval = interval;
        self
    }

    /// The bounds within which `Cache-Control: max-age` is honoured. Default 1 min to 1 day.
    pub fn max_age_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.schedule.min = min;
        self.schedule.max = max.max(min);
        self
    }

    /// The least time between two fetches triggered by unknown `kid`s. Default 30 s.
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The time limit for one refresh (discovery and JWKS together). Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The largest metadata or JWKS body accepted. Default 1 MiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// Starts the store's background task; its first fetch begins at once.
    ///
    /// Must be called within a Tokio runtime.
    pub fn build(self) -> Result<KeyStore, BuildError> {
        let source = match (self.jwks_uri, self.issuer) {
            (Some(uri), _) => Source::JwksUri(check(&uri)?),
            (None, Some(issuer)) => {
                check(&issuer)?;
                Source::Issuer(issuer)
            }
            (None, None) => return Err(BuildError::MissingKeySource),
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let client = match self.http_client {
            Some(client) => client,
            None => fetch::default_client().map_err(BuildError::HttpClient)?,
        };
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            keys: ArcSwapOption::empty(),
            remote: Some(Remote {
                wake: wake.clone(),
                generation: watch::Sender::new(0),
                in_flight: AtomicBool::new(true),
                last_on_demand: AtomicU64::new(u64::MAX),
                epoch: Instant::now(),
                cooldown: self.cooldown,
                wait: self.limits.timeout + Duration::from_secs(1),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                _stop: stop_tx,
            }),
        });
        let refresher = Refresher { client, source, limits: self.limits, schedule: self.schedule };
        runtime.spawn(refresher.run(Arc::downgrade(&shared), wake, stop_rx));
        Ok(KeyStore { shared })
    }
}

fn check(url: &str) -> Result<url::Url, BuildError> {
    fetch::parse_url(url).map_err(|e| match e {
        crate::error::FetchError::InsecureUrl => BuildError::InsecureUrl,
        _ => BuildError::InvalidUrl,
    })
}

/// What the refresher needs from the shared state, each call holding it only briefly.
pub(super) struct Handle(pub(super) Arc<Shared>);

impl Handle {
    pub(super) fn upgrade(weak: &Weak<Shared>) -> Option<Handle> {
        weak.upgrade().map(Handle)
    }

    pub(super) fn begin(&self) {
        if let Some(r) = &self.0.remote {
            r.in_flight.store(true, Ordering::Release);
            r.fetches.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn finish(&self, keys: Option<KeySet>) {
        let Some(r) = &self.0.remote else { return };
        match keys {
            Some(keys) => self.0.keys.store(Some(Arc::new(keys))),
            None => {
                r.failures.fetch_add(1, Ordering::Release);
            }
        }
        r.in_flight.store(false, Ordering::Release);
        r.generation.send_modify(|g| *g += 1);
    }
}
