use std::sync::Arc;
use std::time::Duration;

use super::refresher::{KeyStoreState, Pacing};
use super::schedule::Schedule;
use super::source::KeyFetcher;
use crate::KeySet;
use crate::error::{BuildError, FetchError};
use crate::idp::endpoint::{IdpEndpoint, MetadataMember};
use crate::idp::fetch::{self, Limits, Target};

/// The cooldown after the first on-demand fetch, unless the ceiling is shorter.
const FIRST_COOLDOWN: Duration = Duration::from_millis(250);

/// How long a request with an unknown `kid` waits, by default, for the cooldown to end.
const DEFAULT_UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);

/// The issuer's signing keys, shared by every clone of the handle.
///
/// Built with [`KeyStore::builder`] (remote, refreshed) or [`KeyStore::from_key_set`]
/// (fixed). See the [module docs](crate::jwks).
#[derive(Clone)]
pub struct KeyStore {
    state: Arc<KeyStoreState>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.state.keys.load().as_deref().map(KeySet::len))
            .field("remote", &self.state.is_remote())
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
        KeyStore { state: Arc::new(KeyStoreState::fixed(keys)) }
    }

    /// The current key set, or `None` when none was ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.state.keys.load_full()
    }

    /// Whether a key set has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.state.is_loaded()
    }

    /// Replaces the keys (for a fixed store; a remote store overwrites them at its next fetch).
    pub fn set_keys(&self, keys: KeySet) {
        self.state.keys.store(Some(Arc::new(keys)));
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<KeySet>>> {
        self.state.keys.load()
    }

    /// The number of fetch attempts so far (discovery and JWKS together count as one).
    pub fn fetch_attempts(&self) -> u64 {
        self.state.attempts()
    }

    /// The number of failed fetch attempts so far.
    pub fn fetch_failures(&self) -> u64 {
        self.state.failures()
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
    pub fn last_error(&self) -> Option<FetchError> {
        self.state.last_error()
    }

    /// Waits until a key set is loaded, up to `timeout`; returns whether one is.
    pub async fn wait_until_loaded(&self, timeout: Duration) -> bool {
        self.state.wait_until_loaded(timeout).await
    }

    /// Fetches now, bypassing the schedule and the cooldown, and waits for that fetch (one
    /// that starts after this call, so it sees keys published before it). Returns whether
    /// it succeeded; `false` too when it did not finish within the wait bound.
    pub async fn refresh(&self) -> bool {
        self.state.refresh().await
    }

    /// Called by a request whose token names a `kid` the set lacks, or when no set is
    /// loaded. Waits for a fetch that can have the key, sharing it with every other such
    /// request; on-demand fetches are paced by a cooldown that starts short and grows
    /// only while they bring no new key (see [`KeyStoreBuilder::unknown_kid_cooldown`]).
    pub(crate) async fn refresh_for_unknown_kid(&self, kid: Option<&str>) {
        self.state.refresh_for_unknown_kid(kid).await
    }
}

/// Configures a remote [`KeyStore`].
#[must_use]
pub struct KeyStoreBuilder {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    http_client: Option<reqwest::Client>,
    schedule: Schedule,
    pacing: Pacing,
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
            .field("pacing", &self.pacing)
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
            pacing: Pacing { first: FIRST_COOLDOWN, max: Duration::from_secs(30), max_wait: DEFAULT_UNKNOWN_KID_WAIT },
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

    /// The longest cooldown between two fetches triggered by unknown `kid`s. Default 30 s.
    ///
    /// The cooldown starts at 250 ms (or this, when shorter) and doubles with each
    /// on-demand fetch that brings no new key: 0.25, 0.5, 1, 2, 4 … s, up to this
    /// ceiling. A quiet spell of this long with no unknown `kid` brings it back to 250 ms.
    /// A few made-up `kid`s therefore delay a rotation by at most a second or two, and a
    /// sustained flood of them costs the issuer at most 8 fetches in its first minute
    /// (with the default), then one per ceiling.
    pub fn unknown_kid_cooldown(mut self, max: Duration) -> Self {
        self.pacing.max = max;
        self.pacing.first = FIRST_COOLDOWN.min(max);
        self
    }

    /// The longest a request with an unknown `kid` waits for the cooldown to end before
    /// its fetch. Default 2 s; [`Duration::ZERO`] refuses at once inside the cooldown.
    ///
    /// A request that would have to wait longer is refused at once
    /// ([`ValidationError::UnknownKey`](crate::ValidationError::UnknownKey)). The whole
    /// wait is bounded by this plus the fetch itself (twice the
    /// [timeout](Self::timeout), plus 1 s). A made-up `kid` waits exactly as a real one.
    pub fn unknown_kid_wait(mut self, wait: Duration) -> Self {
        self.pacing.max_wait = wait;
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
        let target = match (self.jwks_uri, self.issuer) {
            (Some(uri), _) => Target::Url(uri),
            (None, Some(issuer)) => Target::Issuer(issuer),
            (None, None) => return Err(BuildError::MissingKeySource),
        };
        let endpoint = IdpEndpoint::new(target, MetadataMember::Jwks)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let client = match self.http_client {
            Some(client) => client,
            None => fetch::default_client().map_err(BuildError::HttpClient)?,
        };
        let fetcher = KeyFetcher::new(client, endpoint, self.limits);
        let wait = self.limits.timeout * 2 + Duration::from_secs(1);
        let state = KeyStoreState::start(&runtime, fetcher, self.schedule, self.pacing, wait);
        Ok(KeyStore { state })
    }
}
