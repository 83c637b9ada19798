//! The live set of trusted issuers: named ones and those discovered through patterns,
//! each with its own keys (or introspection) and policy, read without a lock and
//! changeable while requests are served.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use url::Url;

use super::ValidationError;
use super::issuer::{ConfiguredSource, Issuer};
use super::patterns::{IssuerPattern, is_canonical};
use super::policy::IssuerPolicy;
use crate::error::BuildError;
use crate::idp::fetch;
use crate::introspect::Introspector;
use crate::jwks::KeyStore;

/// The default bound on issuers discovered through an [`IssuerPattern`]: 1,000.
pub const DEFAULT_MAX_DISCOVERED_ISSUERS: usize = 1000;

/// From this many issuers on, lookups go through a hash map; below it, a scan of a few
/// string comparisons is faster than hashing.
const INDEX_FROM: usize = 8;

/// An issuer in the live set.
pub(crate) struct TrustedIssuer {
    pub(crate) name: Box<str>,
    pub(crate) policy: Arc<IssuerPolicy>,
    pub(crate) source: IssuerSource,
    /// Created from a pattern: counts towards the bound.
    discovered: bool,
    /// Removed or replaced: whatever was verified with it (say, in a token cache) must
    /// not be trusted any more.
    retired: AtomicBool,
}

/// How the live set checks an issuer's tokens.
pub(crate) enum IssuerSource {
    Keys(KeyStore),
    Introspection(Introspector),
    /// Lazy discovery, yet to start: the first token starts it.
    Undiscovered,
}

impl TrustedIssuer {
    fn new(name: &str, policy: Arc<IssuerPolicy>, source: IssuerSource, discovered: bool) -> Arc<TrustedIssuer> {
        Arc::new(TrustedIssuer { name: name.into(), policy, source, discovered, retired: AtomicBool::new(false) })
    }

    /// Whether the issuer left the live set (removed or replaced) since.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// The key store, if the issuer has one yet.
    pub(crate) fn key_store(&self) -> Option<&KeyStore> {
        match &self.source {
            IssuerSource::Keys(keys) => Some(keys),
            _ => None,
        }
    }

    /// The keys now loaded, if the issuer has a key store.
    pub(crate) fn key_set(&self) -> Option<arc_swap::Guard<Option<Arc<crate::KeySet>>>> {
        self.key_store().map(KeyStore::load)
    }
}

/// One version of the live set; replaced whole on every change, read without a lock.
pub(crate) struct Snapshot {
    list: Vec<Arc<TrustedIssuer>>,
    index: HashMap<Box<str>, usize>,
    discovered: usize,
}

impl Snapshot {
    fn new(list: Vec<Arc<TrustedIssuer>>) -> Snapshot {
        let index = if list.len() >= INDEX_FROM {
            list.iter().enumerate().map(|(i, issuer)| (issuer.name.clone(), i)).collect()
        } else {
            HashMap::new()
        };
        let discovered = list.iter().filter(|i| i.discovered).count();
        Snapshot { list, index, discovered }
    }

    /// The issuer named exactly `iss`.
    pub(crate) fn get(&self, iss: &str) -> Option<&Arc<TrustedIssuer>> {
        if self.index.is_empty() {
            self.list.iter().find(|issuer| *issuer.name == *iss)
        } else {
            self.index.get(iss).map(|&i| &self.list[i])
        }
    }

    /// A copy with `issuer` added, or in place of the one of the same name (returned).
    fn with(&self, issuer: Arc<TrustedIssuer>) -> (Snapshot, Option<Arc<TrustedIssuer>>) {
        let mut list = self.list.clone();
        let old = match list.iter().position(|i| i.name == issuer.name) {
            Some(at) => Some(std::mem::replace(&mut list[at], issuer)),
            None => {
                list.push(issuer);
                None
            }
        };
        (Snapshot::new(list), old)
    }
}

/// The live set of trusted issuers of a [`Validator`](super::Validator), from
/// [`Validator::issuers`](super::Validator::issuers).
///
/// Requests read it without a lock (one `ArcSwap` load); changes replace it whole and
/// apply from the next request on. Issuers added here get the validator's policy and
/// HTTP client unless they bring their own.
///
/// ```
/// use tower_oauth::Validator;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let validator = Validator::builder().issuer("https://a.example").audience("api").build()?;
/// validator.issuers().insert("https://b.example")?;
/// assert!(validator.issuers().contains("https://b.example"));
/// validator.issuers().remove("https://a.example");
/// assert_eq!(validator.issuers().names(), ["https://b.example"]);
/// # Ok(()) }
/// ```
pub struct Issuers {
    current: ArcSwap<Snapshot>,
    patterns: Box<[CompiledPattern]>,
    defaults: Arc<IssuerPolicy>,
    http_client: Option<reqwest::Client>,
    lazy: bool,
    max_discovered: usize,
    /// Whether reaching the bound was logged at `warn` yet: once is enough to alert an
    /// operator, and a flood of tokens must not flood the log.
    limit_logged: AtomicBool,
    /// Serialises changes (a cold path) so none is lost; readers never take it.
    writer: Mutex<()>,
}

struct CompiledPattern {
    pattern: IssuerPattern,
    policy: Arc<IssuerPolicy>,
}

/// What the validator builder hands over.
pub(crate) struct IssuersConfig {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) patterns: Vec<IssuerPattern>,
    pub(crate) defaults: Arc<IssuerPolicy>,
    pub(crate) http_client: Option<reqwest::Client>,
    pub(crate) lazy: bool,
    pub(crate) max_discovered: usize,
}

impl Issuers {
    pub(crate) fn new(config: IssuersConfig) -> Result<Issuers, BuildError> {
        let patterns = config
            .patterns
            .into_iter()
            .map(|pattern| Ok(CompiledPattern { policy: pattern.overrides.apply(&config.defaults)?, pattern }))
            .collect::<Result<Box<[_]>, BuildError>>()?;
        let mut issuers = Issuers {
            current: ArcSwap::from_pointee(Snapshot::new(Vec::new())),
            patterns,
            defaults: config.defaults,
            http_client: config.http_client,
            lazy: config.lazy,
            max_discovered: config.max_discovered,
            limit_logged: AtomicBool::new(false),
            writer: Mutex::new(()),
        };
        let mut list: Vec<Arc<TrustedIssuer>> = Vec::with_capacity(config.issuers.len());
        for issuer in config.issuers {
            if list.iter().any(|i| *i.name == *issuer.name) {
                return Err(BuildError::DuplicateIssuer);
            }
            list.push(issuers.trusted(issuer)?);
        }
        issuers.current = ArcSwap::from_pointee(Snapshot::new(list));
        Ok(issuers)
    }

    /// Turns a configured issuer into a live one, starting its key store unless
    /// discovery is lazy.
    fn trusted(&self, issuer: Issuer) -> Result<Arc<TrustedIssuer>, BuildError> {
        if issuer.name.is_empty() {
            return Err(BuildError::MissingIssuer);
        }
        let policy = issuer.overrides.apply(&self.defaults)?;
        let source = match issuer.source {
            ConfiguredSource::Keys(keys) => IssuerSource::Keys(keys),
            ConfiguredSource::Introspection(introspector) => IssuerSource::Introspection(introspector),
            ConfiguredSource::Discovery if self.lazy => {
                // Checked now so a bad URL fails here, not on the first token.
                fetch::check_url(&issuer.name)?;
                IssuerSource::Undiscovered
            }
            ConfiguredSource::Discovery => IssuerSource::Keys(self.discovery_store(&issuer.name)?),
        };
        Ok(TrustedIssuer::new(&issuer.name, policy, source, false))
    }

    fn discovery_store(&self, issuer: &str) -> Result<KeyStore, BuildError> {
        let mut builder = KeyStore::builder().issuer(issuer);
        if let Some(client) = &self.http_client {
            builder = builder.http_client(client.clone());
        }
        builder.build()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Trusts `issuer` from the next request on, in place of any issuer of the same
    /// name (whose verified tokens a [`VerifiedTokenCache`](crate::bearer::VerifiedTokenCache)
    /// then forgets).
    ///
    /// # Errors
    ///
    /// As [`ValidatorBuilder::build`](super::ValidatorBuilder::build): an empty or
    /// insecure issuer URL, no audience, no algorithm, or no Tokio runtime for its key
    /// store.
    pub fn insert(&self, issuer: impl Into<Issuer>) -> Result<(), BuildError> {
        let issuer = self.trusted(issuer.into())?;
        let _writer = self.lock();
        let (next, old) = self.current.load().with(issuer);
        self.current.store(Arc::new(next));
        if let Some(old) = old {
            old.retire();
        }
        Ok(())
    }

    /// Stops trusting `issuer` from the next request on; returns whether it was trusted.
    ///
    /// Tokens it verified are forgotten by a [`VerifiedTokenCache`](crate::bearer::VerifiedTokenCache)
    /// too. An issuer discovered through a pattern is discovered afresh by its next
    /// token, as long as the pattern still matches it.
    pub fn remove(&self, issuer: &str) -> bool {
        let _writer = self.lock();
        let current = self.current.load();
        let Some(old) = current.get(issuer).cloned() else { return false };
        let list = current.list.iter().filter(|i| !Arc::ptr_eq(i, &old)).cloned().collect();
        self.current.store(Arc::new(Snapshot::new(list)));
        old.retire();
        true
    }

    /// Whether `issuer` is in the live set (named, or discovered through a pattern).
    pub fn contains(&self, issuer: &str) -> bool {
        self.current.load().get(issuer).is_some()
    }

    /// Whether `issuer` would be trusted: it is in the set or matches a pattern.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.contains(issuer) || self.patterns.iter().any(|p| p.pattern.matches(issuer))
    }

    /// The number of issuers in the live set, discovered ones included.
    pub fn len(&self) -> usize {
        self.current.load().list.len()
    }

    /// Whether the live set is empty (only patterns, and no token seen yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many issuers were discovered through a pattern (bounded by
    /// [`max_discovered_issuers`](super::ValidatorBuilder::max_discovered_issuers)).
    pub fn discovered(&self) -> usize {
        self.current.load().discovered
    }

    /// The issuers in the live set, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        self.current.load().list.iter().map(|i| i.name.to_string()).collect()
    }

    /// The key store of `issuer`, once it has one (not for an issuer whose tokens are
    /// introspected, nor before a lazily discovered issuer's first token).
    pub fn key_store(&self, issuer: &str) -> Option<KeyStore> {
        self.current.load().get(issuer).and_then(|i| i.key_store().cloned())
    }

    /// The live set, for one request.
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub(crate) fn defaults(&self) -> &Arc<IssuerPolicy> {
        &self.defaults
    }

    /// The policy for `iss` without starting anything: a named issuer's, or the first
    /// matching pattern's.
    pub(crate) fn policy_for(&self, iss: &str) -> Option<Arc<IssuerPolicy>> {
        if let Some(issuer) = self.current.load().get(iss) {
            return Some(issuer.policy.clone());
        }
        self.patterns.iter().find(|p| p.pattern.matches(iss)).map(|p| p.policy.clone())
    }

    /// The cold path for an `iss` that the live set does not have ready: starts the key
    /// store of a lazily discovered issuer, or adds an issuer that matches a pattern.
    /// `Ok` means "look again". An issuer that neither names nor matches is refused
    /// here, before any network request.
    pub(crate) fn start(&self, iss: &str) -> Result<(), ValidationError> {
        let pattern = match self.current.load().get(iss) {
            Some(_) => None,
            None => {
                Some(self.patterns.iter().find(|p| p.pattern.matches(iss)).ok_or(ValidationError::UntrustedIssuer)?)
            }
        };
        let _writer = self.lock();
        let current = self.current.load();
        let (policy, discovered) = match (current.get(iss), pattern) {
            // Started meanwhile, by another request.
            (Some(issuer), _) if !matches!(issuer.source, IssuerSource::Undiscovered) => return Ok(()),
            (Some(issuer), _) => (issuer.policy.clone(), issuer.discovered),
            (None, pattern) => {
                let pattern = match pattern {
                    Some(pattern) => pattern,
                    // Removed meanwhile.
                    None => return Err(ValidationError::UntrustedIssuer),
                };
                if current.discovered >= self.max_discovered {
                    if self.limit_logged.swap(true, Ordering::Relaxed) {
                        tracing::debug!(limit = self.max_discovered, "bound on discovered issuers reached");
                    } else {
                        tracing::warn!(
                            limit = self.max_discovered,
                            "an issuer matches a trusted pattern, but the bound on discovered issuers is reached"
                        );
                    }
                    return Err(ValidationError::IssuerLimit);
                }
                if Url::parse(iss).map_or(true, |url| !is_canonical(&url, iss)) {
                    return Err(ValidationError::UntrustedIssuer);
                }
                (pattern.policy.clone(), true)
            }
        };
        let keys = self.discovery_store(iss).map_err(|e| match e {
            BuildError::NoRuntime | BuildError::HttpClient(_) => ValidationError::KeysUnavailable,
            _ => ValidationError::UntrustedIssuer,
        })?;
        tracing::debug!(issuer = iss, discovered, "discovering issuer");
        let (next, old) = current.with(TrustedIssuer::new(iss, policy, IssuerSource::Keys(keys), discovered));
        self.current.store(Arc::new(next));
        if let Some(old) = old {
            old.retire();
        }
        Ok(())
    }
}

impl fmt::Debug for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuers")
            .field("issuers", &self.names())
            .field("patterns", &self.patterns.iter().map(|p| &p.pattern).collect::<Vec<_>>())
            .field("lazy", &self.lazy)
            .field("max_discovered", &self.max_discovered)
            .finish()
    }
}
