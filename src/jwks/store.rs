use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, oneshot, watch};

use super::refresher::{Refresher, Schedule, Source};
use crate::KeySet;
use crate::error::{BuildError, FetchError};
use crate::idp::fetch::{self, Limits};

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
    /// Fetches started so far, counted by the task as each begins.
    started: AtomicU64,
    /// Fetches finished so far, and whether the last one succeeded; waiters watch it.
    completed: watch::Sender<Progress>,
    /// The cold path's one decision: claim, join or refuse an on-demand fetch. A lock
    /// is fine here: only requests with an unknown `kid` come this way, and they hold it
    /// for a few instructions, never across an await.
    on_demand: Mutex<OnDemand>,
    cooldown: Duration,
    /// How long a request waits for an on-demand fetch: the one in flight, then its own.
    wait: Duration,
    failures: AtomicU64,
    /// Why the most recent fetch failed; cleared by a success.
    last_error: ArcSwapOption<FetchError>,
    /// Dropped with the last handle, which tells the task to stop.
    _stop: oneshot::Sender<()>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    completed: u64,
    last_ok: bool,
}

#[derive(Debug, Default)]
struct OnDemand {
    /// When the last on-demand fetch was claimed.
    last: Option<Instant>,
    /// The fetch number that claim waits for (one that starts after the claim).
    target: u64,
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
        self.shared.remote.as_ref().map_or(0, |r| r.started.load(Ordering::Relaxed))
    }

    /// The number of failed fetch attempts so far.
    pub fn fetch_failures(&self) -> u64 {
        self.shared.remote.as_ref().map_or(0, |r| r.failures.load(Ordering::Relaxed))
    }

    /// Why the most recent fetch failed (a timeout, a status, a body over the limit, a
    /// document that is not a key set, …), or `None` when it succeeded, none has
    /// finished yet, or the keys are static. The keys in use are the last good ones
    /// either way.
    ///
    /// ```
    /// use tower_oauth::{KeySet, KeyStore};
    ///
    /// let store = KeyStore::from_key_set(KeySet::default());
    /// assert!(store.last_error().is_none()); // static keys are never fetched
    /// ```
    pub fn last_error(&self) -> Option<Arc<FetchError>> {
        self.shared.remote.as_ref().and_then(|r| r.last_error.load_full())
    }

    /// Waits until a key set is loaded, up to `timeout`; returns whether one is.
    pub async fn wait_until_loaded(&self, timeout: Duration) -> bool {
        let Some(remote) = &self.shared.remote else { return self.is_loaded() };
        let mut rx = remote.completed.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|_| self.is_loaded())).await;
        self.is_loaded()
    }

    /// Fetches now, bypassing the schedule and the cooldown, and waits for that fetch (one
    /// that starts after this call, so it sees keys published before it). Returns whether
    /// it succeeded; `false` too when it did not finish within the wait bound.
    pub async fn refresh(&self) -> bool {
        let Some(remote) = &self.shared.remote else { return self.is_loaded() };
        let mut rx = remote.completed.subscribe();
        let target = remote.started.load(Ordering::Acquire) + 1;
        remote.wake.notify_one();
        match tokio::time::timeout(remote.wait, rx.wait_for(|p| p.completed >= target)).await {
            Ok(Ok(progress)) => progress.last_ok,
            _ => false,
        }
    }

    /// Called by a request whose token names a `kid` the set lacks, or when no set is
    /// loaded. Waits for a fetch that can have the key, sharing it with every other such
    /// request, and starting one at most once per cooldown; returns at once when the
    /// cooldown allows no fetch.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let Some(remote) = &self.shared.remote else { return };
        let mut rx = remote.completed.subscribe();
        let target = {
            let mut on_demand = remote.on_demand.lock().unwrap_or_else(|e| e.into_inner());
            let started = remote.started.load(Ordering::Acquire);
            let completed = rx.borrow().completed;
            if !self.is_loaded() && started > completed {
                // The first fetch is under way: any fetch will do.
                started
            } else if on_demand.target > completed {
                // Another request claimed a fetch that has not finished: join it.
                on_demand.target
            } else if on_demand.last.is_none_or(|at| at.elapsed() >= remote.cooldown) {
                // Claim a fetch that starts after now, so it sees the new key even if an
                // older (scheduled) fetch is running at this moment.
                on_demand.last = Some(Instant::now());
                on_demand.target = started + 1;
                tracing::debug!("unknown kid: fetching keys on demand");
                remote.wake.notify_one();
                on_demand.target
            } else {
                return;
            }
        };
        let _ = tokio::time::timeout(remote.wait, rx.wait_for(|p| p.completed >= target)).await;
    }
}

/// Configures a remote [`KeyStore`].
#[must_use]
pub struct KeyStoreBuilder {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    http_client: Option<reqwest::Client>,
    schedule: Schedule,
    cooldown: Duration,
    limits: Limits,
}

impl std::fmt::Debug for KeyStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its `Debug` shows its default headers, which may hold an API key.
        f.debug_struct("KeyStoreBuilder")
            .field("issuer", &self.issuer)
            .field("jwks_uri", &self.jwks_uri)
            .field("custom_http_client", &self.http_client.is_some())
            .field("schedule", &self.schedule)
            .field("cooldown", &self.cooldown)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for KeyStoreBuilder {
    fn default() -> Self {
        KeyStoreBuilder {
            issuer: None,
            jwks_uri: None,
            http_client: None,
            schedule: Schedule::default(),
            cooldown: Duration::from_secs(30),
            limits: Limits { timeout: fetch::DEFAULT_TIMEOUT, max_body: fetch::DEFAULT_DOCUMENT_MAX_BODY_SIZE },
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
                // The first fetch counts as started now, so early requests join it.
                started: AtomicU64::new(1),
                completed: watch::Sender::new(Progress::default()),
                on_demand: Mutex::new(OnDemand::default()),
                cooldown: self.cooldown,
                wait: self.limits.timeout * 2 + Duration::from_secs(1),
                failures: AtomicU64::new(0),
                last_error: ArcSwapOption::empty(),
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
        FetchError::InsecureUrl => BuildError::InsecureUrl,
        _ => BuildError::InvalidUrl,
    })
}

/// What the refresher needs from the shared state, each call holding it only briefly.
pub(super) struct Handle(pub(super) Arc<Shared>);

impl Handle {
    pub(super) fn upgrade(weak: &Weak<Shared>) -> Option<Handle> {
        weak.upgrade().map(Handle)
    }

    /// Counts a fetch as started; the very first was counted at build time.
    pub(super) fn begin(&self, first: bool) {
        if let Some(r) = self.0.remote.as_ref().filter(|_| !first) {
            r.started.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn finish(&self, outcome: Result<KeySet, FetchError>) {
        let Some(r) = &self.0.remote else { return };
        let ok = outcome.is_ok();
        match outcome {
            Ok(keys) => {
                self.0.keys.store(Some(Arc::new(keys)));
                r.last_error.store(None);
            }
            Err(error) => {
                r.last_error.store(Some(Arc::new(error)));
                r.failures.fetch_add(1, Ordering::Release);
            }
        }
        r.completed.send_modify(|p| {
            p.completed += 1;
            p.last_ok = ok;
        });
    }
}
