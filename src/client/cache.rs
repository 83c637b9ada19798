//! `TokenCache`: the current token in an `ArcSwap`, kept fresh by one background task.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::refresher::policy::RefreshPolicy;
use super::refresher::{DEFAULT_MAX_WAIT, TokenCacheState};
use super::store::SharedStore;
use super::{AccessToken, CacheKey, TokenError, TokenSource};
use crate::error::BuildError;
use crate::idp::background;

/// One access token, shared by every clone of the handle and refreshed ahead of expiry
/// by one background task.
///
/// - **Reads never lock.** The token lives in an `ArcSwap`; [`cached`](Self::cached) and
///   the layers read it without waiting, whatever the refresher is doing.
/// - **Refreshed ahead of expiry**, by default at 80 % of the lifetime but no later
///   than 60 s before expiry, and never before half of it (a 300 s token is refreshed
///   at 240 s, a 60 s one at 30 s, a 1 h one at 48 min). Requests keep using the
///   current token meanwhile, so none waits after the first.
/// - **Single flight.** Only the background task fetches, one fetch at a time: callers
///   of a cold cache share one fetch, and a rotating refresh token is never spent twice.
/// - **Outages.** A failed fetch is retried with exponential backoff (1 s doubling up to
///   60 s, ±20 % jitter), never sooner than the server's `Retry-After` (429, 503; honoured
///   up to 5 min). The current token serves until its real expiry. A caller with no
///   usable token waits (up to [`max_wait`](TokenCacheBuilder::max_wait), 10 s) for the
///   retry of a transient failure when it is due within that bound, sharing it with every
///   other waiting caller; otherwise it gets the error at once.
/// - **Rejected tokens.** [`force_refresh`](Self::force_refresh) with the token an API
///   rejected fetches a new one, once for many callers, and not at all when the token
///   was replaced since; a second forced refresh within 5 s is refused
///   ([`TokenError::Throttled`]), so an API that rejects every token cannot make the
///   cache hammer the token endpoint.
///
/// The background task runs on the Tokio runtime that built the cache and stops when
/// the last handle (including those held by layers) is dropped.
///
/// ```no_run
/// use tower_oauth::client::{TokenCache, TokenEndpoint};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/token", "my-service", "s3cret")
///     .scope("orders:read")
///     .build()?;
/// let cache = TokenCache::new(endpoint)?;
///
/// let token = cache.token().await?; // the first call fetches; later ones read the cache
/// println!("token {} lives {:?}", token.generation(), token.lifetime());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    state: Arc<TokenCacheState>,
}

impl TokenCache {
    /// A cache with the default schedule, fed by `source`.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a Tokio runtime.
    pub fn new(source: impl TokenSource) -> Result<TokenCache, BuildError> {
        TokenCache::builder(source).build()
    }

    /// A builder to tune the schedule before starting the cache.
    pub fn builder(source: impl TokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder {
            source: Box::new(source),
            policy: RefreshPolicy::default(),
            force_cooldown: FORCE_COOLDOWN,
            max_wait: DEFAULT_MAX_WAIT,
            store: None,
        }
    }

    /// What the tokens are for.
    pub fn key(&self) -> &CacheKey {
        &self.state.key
    }

    /// The current token if it is still valid; never waits, never fetches.
    pub fn cached(&self) -> Option<Arc<AccessToken>> {
        self.state.valid(background::now(), 0)
    }

    /// The hot path of the layers: a guard on the current token, valid or not.
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<AccessToken>>> {
        self.state.current.load()
    }

    /// A valid token: the cached one, or, on a cold or expired cache, the result of the
    /// one fetch that every waiting caller shares.
    ///
    /// # Errors
    ///
    /// The error of the fetch it waited for when that failure is not transient or its
    /// retry is due beyond the wait bound (then at once); after the bound
    /// ([`TokenCacheBuilder::max_wait`], 10 s by default) the last failure, or
    /// [`TokenError::Timeout`] when no fetch has failed.
    pub async fn token(&self) -> Result<Arc<AccessToken>, TokenError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        self.state.obtain(0, false).await
    }

    /// Replaces the current token with a new one now, whatever its age. Concurrent
    /// calls share one fetch.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn refresh(&self) -> Result<Arc<AccessToken>, TokenError> {
        let generation = self.state.current.load().as_ref().map_or(0, |t| t.generation());
        self.state.obtain(generation, false).await
    }

    /// A token other than `rejected`, which an API refused (a 401): the current one if
    /// the cache has replaced `rejected` since, or else a new one from one refresh that
    /// every caller with the same rejected token shares.
    ///
    /// # Errors
    ///
    /// [`TokenError::Throttled`] when a forced refresh happened less than 5 s ago (the
    /// API rejected that fresh token too; another refresh would not help), or as
    /// [`token`](Self::token).
    pub async fn force_refresh(&self, rejected: &AccessToken) -> Result<Arc<AccessToken>, TokenError> {
        self.force_refresh_generation(rejected.generation()).await
    }

    pub(crate) async fn force_refresh_generation(&self, rejected: u64) -> Result<Arc<AccessToken>, TokenError> {
        if let Some(token) = self.state.valid(background::now(), rejected) {
            return Ok(token);
        }
        self.state.obtain(rejected, true).await
    }

    /// How many fetches the cache has started.
    pub fn fetch_attempts(&self) -> u64 {
        self.state.attempts()
    }

    /// How many fetches have failed.
    pub fn fetch_failures(&self) -> u64 {
        self.state.failures()
    }

    /// Tells the cache that an API rejected the token of `generation`, without waiting:
    /// the refresher fetches a new one (under the same rules as
    /// [`force_refresh`](Self::force_refresh)) for the requests that follow.
    pub(crate) fn hint_rejected(&self, generation: u64) {
        if self.state.hint_rejected(generation) {
            tracing::debug!(generation, "the API rejected the token; refreshing it");
        }
    }
}

/// How long after a forced refresh another one is refused.
const FORCE_COOLDOWN: Duration = Duration::from_secs(5);

/// Configures a [`TokenCache`]; from [`TokenCache::builder`].
#[must_use]
pub struct TokenCacheBuilder {
    source: Box<dyn TokenSource>,
    policy: RefreshPolicy,
    force_cooldown: Duration,
    max_wait: Duration,
    store: Option<SharedStore>,
}

impl TokenCacheBuilder {
    /// The longest a caller waits for a token when none is usable: the fetch in flight,
    /// and after a transient failure (429, 503, a 5xx, a timeout, a transport error)
    /// the backoff and the one retry the cache makes for every waiting caller, when that
    /// retry is due within this bound (a `Retry-After` is honoured). Default 10 s.
    ///
    /// A failure that is not transient, or one whose retry is due later, is returned
    /// at once; a caller still waiting when the bound passes gets the last failure, or
    /// [`TokenError::Timeout`] when there was none (the first fetch is still running). The same bound holds for [`TokenCache::token`], the
    /// Tower layer and the reqwest middleware.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Refresh at this fraction of the lifetime; default 0.8. Clamped to `0.0..=1.0`.
    pub fn refresh_at(mut self, fraction: f64) -> Self {
        self.policy.refresh_at = clamp_fraction(fraction, self.policy.refresh_at);
        self
    }

    /// ...but no later than this long before expiry; default 60 s.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.policy.margin = margin;
        self
    }

    /// ...and never before this fraction of the lifetime, whatever the margin; default
    /// 0.5, so a 60 s token is refreshed at 30 s. Clamped to `0.0..=1.0`.
    pub fn refresh_not_before(mut self, fraction: f64) -> Self {
        self.policy.not_before = clamp_fraction(fraction, self.policy.not_before);
        self
    }

    /// The lifetime of a token whose response has no `expires_in`; default 5 min.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.policy.default_lifetime = lifetime;
        self
    }

    /// The backoff after failures: `initial`, doubling up to `max`; default 1 s and
    /// 60 s. A `Retry-After` is honoured up to `max(max, 5 min)`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.backoff_initial = initial.max(Duration::from_millis(1));
        self.policy.backoff_max = max.max(self.policy.backoff_initial);
        self
    }

    /// How long after a forced refresh (a 401) another one is refused; default 5 s.
    pub fn force_refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.force_cooldown = cooldown;
        self
    }

    /// Shares tokens with other caches, in this process or others, through `store`:
    /// the fleet fetches one token per key and refresh point. Without a store (the
    /// default) the cache fetches its own. The request path is the same either way; only
    /// the background task talks to the store. See [`SharedStore`].
    pub fn store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Starts the background task on the current Tokio runtime. The first fetch
    /// happens when a token is first needed.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a Tokio runtime, and
    /// [`BuildError::MissingGrantId`] for a shared store of a user-delegated grant
    /// without a grant id.
    pub fn build(self) -> Result<TokenCache, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let source: Box<dyn TokenSource> = match self.store {
            None => self.source,
            Some(store) => Box::new(store.wrap(self.source, self.policy)?),
        };
        let state = TokenCacheState::start(&runtime, source, self.policy, self.force_cooldown, self.max_wait);
        Ok(TokenCache { state })
    }
}

fn clamp_fraction(fraction: f64, default: f64) -> f64 {
    if fraction.is_nan() { default } else { fraction.clamp(0.0, 1.0) }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.state.current.load();
        f.debug_struct("TokenCache")
            .field("key", &self.state.key)
            .field("token", &*current)
            .field("fetch_attempts", &self.fetch_attempts())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("key", self.source.key())
            .field("policy", &self.policy)
            .field("force_cooldown", &self.force_cooldown)
            .field("max_wait", &self.max_wait)
            .field("store", &self.store)
            .finish()
    }
}
