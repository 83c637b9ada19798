//! The trusted issuers: named ones and patterns, each with its own keys and policy,
//! changeable while requests are served.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use url::Url;

use super::ValidationError;
use super::header::TypPolicy;
use super::validator::AlgorithmSet;
use crate::Algorithm;
use crate::error::BuildError;
use crate::idp::fetch;
use crate::introspect::Introspector;
use crate::jwks::KeyStore;

/// The default bound on issuers discovered through an [`IssuerPattern`]: 1,000.
pub const DEFAULT_MAX_DISCOVERED_ISSUERS: usize = 1000;

/// The longest tenant segment a template accepts. Real tenant ids (GUIDs, realm names,
/// domain names) are far shorter.
const MAX_TENANT_LEN: usize = 128;

/// The longest issuer a predicate is even asked about.
const MAX_PATTERN_ISSUER_LEN: usize = 1024;

/// From this many issuers on, lookups go through a hash map; below it, a scan of a few
/// string comparisons is faster than hashing.
const INDEX_FROM: usize = 8;

/// What one issuer's tokens must satisfy beyond their signature.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) audiences: Box<[Box<str>]>,
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) typ: TypPolicy,
}

/// The parts of the validator's policy an issuer or pattern replaces.
#[derive(Debug, Clone, Default)]
struct Overrides {
    audiences: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    typ: Option<TypPolicy>,
}

impl Overrides {
    /// The issuer's policy: the defaults where nothing is overridden (shared, not copied).
    fn apply(&self, defaults: &Arc<Policy>) -> Result<Arc<Policy>, BuildError> {
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::MissingAudience);
        }
        let policy = if self.audiences.is_empty() && self.algorithms.is_none() && self.typ.is_none() {
            defaults.clone()
        } else {
            let algorithms = match &self.algorithms {
                Some(list) => AlgorithmSet::from_list(list).ok_or(BuildError::NoAlgorithms)?,
                None => defaults.algorithms,
            };
            let audiences = if self.audiences.is_empty() {
                defaults.audiences.clone()
            } else {
                self.audiences.iter().map(|a| a.as_str().into()).collect()
            };
            Arc::new(Policy { audiences, algorithms, typ: self.typ.unwrap_or(defaults.typ) })
        };
        // Without an audience every token would be accepted for any API.
        if policy.audiences.is_empty() {
            return Err(BuildError::MissingAudience);
        }
        Ok(policy)
    }
}

/// One trusted issuer: its identifier, where its keys come from, and optionally its own
/// policy in place of the validator's.
///
/// A plain string converts into an `Issuer` whose keys are found through discovery, so
/// [`ValidatorBuilder::issuer`](super::ValidatorBuilder::issuer) takes either.
///
/// ```
/// use tower_oauth::validate::Issuer;
/// use tower_oauth::{Algorithm, Validator};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let validator = Validator::builder()
///     .issuer("https://login.example.com/realms/main")
///     .issuer(Issuer::new("https://partner.example").audience("partner-api").algorithms([Algorithm::ES256]))
///     .audience("https://api.example.com")
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct Issuer {
    name: String,
    source: IssuerSource,
    overrides: Overrides,
}

#[derive(Clone)]
enum IssuerSource {
    Discovery,
    Keys(KeyStore),
    Introspection(Introspector),
}

impl Issuer {
    /// An issuer whose keys are found through discovery
    /// (`{issuer}/.well-known/openid-configuration`, then RFC 8414 metadata). `iss` must
    /// equal this string exactly.
    pub fn new(issuer: impl Into<String>) -> Issuer {
        Issuer { name: issuer.into(), source: IssuerSource::Discovery, overrides: Overrides::default() }
    }

    /// Takes the keys from `keys` instead of discovery: a [`KeyStore`] built with its own
    /// settings, or a fixed set ([`KeyStore::from_key_set`]).
    pub fn keys(mut self, keys: KeyStore) -> Issuer {
        self.source = IssuerSource::Keys(keys);
        self
    }

    /// Asks `introspector` (RFC 7662) about this issuer's tokens instead of verifying them
    /// locally: for an issuer whose JWTs this server cannot verify (encrypted to a key it
    /// does not hold), or when revocation must be noticed within the introspection
    /// cache's lifetime rather than at `exp`. No key set is fetched for the issuer.
    ///
    /// The answer's claims go through the same policy as a JWT's: `iss` (when present)
    /// must be this issuer, `aud` must contain an accepted audience, `exp` is required,
    /// and `exp`, `nbf` and `iat` are checked with the leeway.
    pub fn introspection(mut self, introspector: Introspector) -> Issuer {
        self.source = IssuerSource::Introspection(introspector);
        self
    }

    /// Accepts this issuer's tokens for `audience`, in place of the validator's
    /// audiences. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Issuer {
        self.overrides.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list for this issuer, in place of the validator's.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Issuer {
        self.overrides.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The `typ` policy for this issuer, in place of the validator's.
    pub fn typ(mut self, policy: TypPolicy) -> Issuer {
        self.overrides.typ = Some(policy);
        self
    }

    /// Strict RFC 9068 `typ` for this issuer. Shorthand for `.typ(TypPolicy::Rfc9068)`.
    pub fn require_at_jwt(self) -> Issuer {
        self.typ(TypPolicy::Rfc9068)
    }

    /// The issuer identifier.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl From<&str> for Issuer {
    fn from(issuer: &str) -> Issuer {
        Issuer::new(issuer)
    }
}

impl From<String> for Issuer {
    fn from(issuer: String) -> Issuer {
        Issuer::new(issuer)
    }
}

impl From<&String> for Issuer {
    fn from(issuer: &String) -> Issuer {
        Issuer::new(issuer.as_str())
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            IssuerSource::Discovery => "discovery",
            IssuerSource::Keys(_) => "keys",
            IssuerSource::Introspection(_) => "introspection",
        };
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("source", &source)
            .field("audiences", &self.overrides.audiences)
            .field("algorithms", &self.overrides.algorithms)
            .field("typ", &self.overrides.typ)
            .finish()
    }
}

/// Trusts every issuer that matches: a template with one tenant segment, or a predicate.
///
/// Issuers that match are discovered on their first token, each with its own key store,
/// up to [`max_discovered_issuers`](super::ValidatorBuilder::max_discovered_issuers).
///
/// A template is strict: scheme, host, port and every other path segment are fixed,
/// and the tenant is one whole path segment of RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`, at most 128), never `.` or `..`. So
/// `https://login.example.com/{tenant}/v2.0` matches
/// `https://login.example.com/contoso/v2.0` but not `https://login.example.com.evil/x/v2.0`,
/// `https://login.example.com/a/b/v2.0` or `https://login.example.com/a%2Fb/v2.0`.
///
/// ```
/// use tower_oauth::Validator;
/// use tower_oauth::validate::IssuerPattern;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tenants = IssuerPattern::template("https://login.example.com/{tenant}/v2.0")?;
/// assert!(tenants.matches("https://login.example.com/contoso/v2.0"));
/// assert!(!tenants.matches("https://login.example.com/../v2.0"));
///
/// let validator = Validator::builder().issuer_pattern(tenants).audience("api").build()?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct IssuerPattern {
    matcher: Matcher,
    overrides: Overrides,
}

#[derive(Clone)]
enum Matcher {
    Template { template: Box<str>, prefix: Box<str>, suffix: Box<str> },
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl IssuerPattern {
    /// A template such as `https://login.example.com/{tenant}/v2.0`: exactly one `{…}`
    /// placeholder, standing for a whole path segment.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidUrl`] when the template has no placeholder or several, the
    /// placeholder is not a whole path segment (in the host, say), or the URL is not in
    /// its canonical form (no userinfo, query, fragment, `%`, `.` segments, default port
    /// or upper-case host); [`BuildError::InsecureUrl`] for plain http off loopback.
    pub fn template(template: &str) -> Result<IssuerPattern, BuildError> {
        let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
            return Err(BuildError::InvalidUrl);
        };
        let (prefix, suffix) = (&template[..open], template.get(close + 1..).unwrap_or(""));
        let name = template.get(open + 1..close).unwrap_or("");
        let fixed_parts_ok = |s: &str| !s.contains(['{', '}', '?', '#', '%', '@', '\\']);
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || !prefix.ends_with('/')
            || !(suffix.is_empty() || suffix.starts_with('/'))
            || !fixed_parts_ok(prefix)
            || !fixed_parts_ok(suffix)
        {
            return Err(BuildError::InvalidUrl);
        }
        let sample = format!("{prefix}tenant{suffix}");
        let url = Url::parse(&sample).map_err(|_| BuildError::InvalidUrl)?;
        if !is_canonical(&url, &sample) {
            return Err(BuildError::InvalidUrl);
        }
        // The placeholder must lie in the path: the host is never a variable.
        let origin_len = sample.len() - url.path().len();
        if prefix.len() <= origin_len {
            return Err(BuildError::InvalidUrl);
        }
        if !fetch::is_allowed(&url) {
            return Err(BuildError::InsecureUrl);
        }
        let matcher = Matcher::Template { template: template.into(), prefix: prefix.into(), suffix: suffix.into() };
        Ok(IssuerPattern { matcher, overrides: Overrides::default() })
    }

    /// Trusts every issuer for which `predicate` returns `true`.
    ///
    /// The predicate sees the unverified `iss` of a token (at most 1 KiB); write it as
    /// strictly as a template (compare whole strings, not prefixes). Whatever it accepts
    /// must still be a canonical https URL (http on loopback) to be discovered.
    pub fn predicate(predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> IssuerPattern {
        IssuerPattern { matcher: Matcher::Predicate(Arc::new(predicate)), overrides: Overrides::default() }
    }

    /// Whether `issuer` matches.
    pub fn matches(&self, issuer: &str) -> bool {
        match &self.matcher {
            Matcher::Template { prefix, suffix, .. } => {
                let Some(tenant) = issuer.strip_prefix(&**prefix).and_then(|rest| rest.strip_suffix(&**suffix)) else {
                    return false;
                };
                is_tenant(tenant)
            }
            Matcher::Predicate(predicate) => issuer.len() <= MAX_PATTERN_ISSUER_LEN && predicate(issuer),
        }
    }

    /// Accepts the matching issuers' tokens for `audience`, in place of the validator's
    /// audiences. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> IssuerPattern {
        self.overrides.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list for the matching issuers, in place of the validator's.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> IssuerPattern {
        self.overrides.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The `typ` policy for the matching issuers, in place of the validator's.
    pub fn typ(mut self, policy: TypPolicy) -> IssuerPattern {
        self.overrides.typ = Some(policy);
        self
    }
}

impl fmt::Debug for IssuerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("IssuerPattern");
        match &self.matcher {
            Matcher::Template { template, .. } => s.field("template", template),
            Matcher::Predicate(_) => s.field("predicate", &".."),
        };
        s.field("audiences", &self.overrides.audiences)
            .field("algorithms", &self.overrides.algorithms)
            .field("typ", &self.overrides.typ)
            .finish()
    }
}

/// One whole path segment of RFC 3986 §2.3 unreserved characters, never a dot segment
/// (RFC 3986 §5.2.4 would resolve it away).
fn is_tenant(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_TENANT_LEN
        && segment != "."
        && segment != ".."
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The URL reads back exactly as written (but for the `/` an empty path gets, as in
/// `https://accounts.example`): nothing for a parser to normalise, and no userinfo,
/// query or fragment.
fn is_canonical(url: &Url, text: &str) -> bool {
    let same = url.as_str() == text || (url.path() == "/" && url.as_str().strip_suffix('/') == Some(text));
    same && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.host_str().is_some()
}

/// An issuer in the live set.
pub(crate) struct TrustedIssuer {
    pub(crate) name: Box<str>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) source: Source,
    /// Created from a pattern: counts towards the bound.
    discovered: bool,
    /// Removed or replaced: whatever was verified with it (say, in a token cache) must
    /// not be trusted any more.
    retired: AtomicBool,
}

pub(crate) enum Source {
    Keys(KeyStore),
    Introspection(Introspector),
    /// Discovery that starts with the first token (lazy discovery).
    Pending,
}

impl TrustedIssuer {
    fn new(name: &str, policy: Arc<Policy>, source: Source, discovered: bool) -> Arc<TrustedIssuer> {
        Arc::new(TrustedIssuer { name: name.into(), policy, source, discovered, retired: AtomicBool::new(false) })
    }

    /// Whether the issuer left the live set (removed or replaced) since.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn key_store(&self) -> Option<&KeyStore> {
        match &self.source {
            Source::Keys(keys) => Some(keys),
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
    defaults: Arc<Policy>,
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
    policy: Arc<Policy>,
}

/// What the validator builder hands over.
pub(crate) struct IssuersConfig {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) patterns: Vec<IssuerPattern>,
    pub(crate) defaults: Arc<Policy>,
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
            IssuerSource::Keys(keys) => Source::Keys(keys),
            IssuerSource::Introspection(introspector) => Source::Introspection(introspector),
            IssuerSource::Discovery if self.lazy => {
                // Checked now so a bad URL fails here, not on the first token.
                fetch::parse_url(&issuer.name).map_err(|e| match e {
                    crate::FetchError::InsecureUrl => BuildError::InsecureUrl,
                    _ => BuildError::InvalidUrl,
                })?;
                Source::Pending
            }
            IssuerSource::Discovery => Source::Keys(self.discovery_store(&issuer.name)?),
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

    pub(crate) fn defaults(&self) -> &Arc<Policy> {
        &self.defaults
    }

    /// The policy for `iss` without starting anything: a named issuer's, or the first
    /// matching pattern's.
    pub(crate) fn policy_for(&self, iss: &str) -> Option<Arc<Policy>> {
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
            (Some(issuer), _) if !matches!(issuer.source, Source::Pending) => return Ok(()),
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
        let (next, old) = current.with(TrustedIssuer::new(iss, policy, Source::Keys(keys), discovered));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_whole_segment_of_unreserved_characters() {
        let p = IssuerPattern::template("https://login.example.com/{tenant}/v2.0").unwrap();
        for ok in [
            "https://login.example.com/contoso/v2.0",
            "https://login.example.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "https://login.example.com/a.b_c~d/v2.0",
        ] {
            assert!(p.matches(ok), "{ok}");
        }
        for bad in [
            "https://login.example.com.evil/contoso/v2.0",
            "https://login.example.com.evil.com/login.example.com/contoso/v2.0",
            "https://evil.example/https://login.example.com/contoso/v2.0",
            "http://login.example.com/contoso/v2.0",
            "https://login.example.com//v2.0",
            "https://login.example.com/a/b/v2.0",
            "https://login.example.com/a%2Fb/v2.0",
            "https://login.example.com/a%2fb/v2.0",
            "https://login.example.com/../v2.0",
            "https://login.example.com/./v2.0",
            "https://login.example.com/a?b/v2.0",
            "https://login.example.com/a#b/v2.0",
            "https://login.example.com/a@b/v2.0",
            "https://login.example.com/a:b/v2.0",
            "https://login.example.com/contoso/v2.0/",
            "https://login.example.com/contoso/v2.0x",
            "https://login.example.com/contoso/v2",
            "https://login.example.com/contoso",
            "https://LOGIN.example.com/contoso/v2.0",
            "https://login.example.com:443/contoso/v2.0",
            "https://login.example.com/con toso/v2.0",
            "https://login.example.com/contosö/v2.0",
            " https://login.example.com/contoso/v2.0",
        ] {
            assert!(!p.matches(bad), "{bad}");
        }
        assert!(!p.matches(&format!("https://login.example.com/{}/v2.0", "a".repeat(129))));
        assert!(p.matches(&format!("https://login.example.com/{}/v2.0", "a".repeat(128))));
    }

    #[test]
    fn a_template_at_the_end_of_the_path_matches_the_last_segment_only() {
        let p = IssuerPattern::template("http://127.0.0.1:8080/realms/{realm}").unwrap();
        assert!(p.matches("http://127.0.0.1:8080/realms/main"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/main/"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/main/x"));
    }

    #[test]
    fn templates_must_keep_scheme_and_host_fixed_and_be_canonical() {
        for bad in [
            "https://{tenant}.example.com/",
            "https://login.example.com{tenant}/v2.0",
            "https://login.example.com/x{tenant}/v2.0",
            "https://login.example.com/{tenant}x/v2.0",
            "https://login.example.com/{tenant}/{other}",
            "https://login.example.com/{}/v2.0",
            "https://login.example.com/{ten ant}/v2.0",
            "https://login.example.com/v2.0",
            "https://login.example.com/{tenant}/v2.0?x=1",
            "https://login.example.com/{tenant}/v2.0#f",
            "https://user@login.example.com/{tenant}",
            "https://LOGIN.example.com/{tenant}",
            "https://login.example.com:443/{tenant}",
            "https://login.example.com/./{tenant}",
            "https://login.example.com/%2e/{tenant}",
            "{tenant}/v2.0",
            "not a url/{tenant}",
        ] {
            assert!(matches!(IssuerPattern::template(bad), Err(BuildError::InvalidUrl)), "{bad}");
        }
        assert!(matches!(IssuerPattern::template("http://login.example.com/{tenant}"), Err(BuildError::InsecureUrl)));
        assert!(IssuerPattern::template("http://localhost:9000/{tenant}").is_ok());
    }

    #[test]
    fn a_predicate_sees_no_issuer_over_a_kilobyte() {
        let p = IssuerPattern::predicate(|_| true);
        assert!(p.matches("https://any.example"));
        assert!(!p.matches(&"a".repeat(1025)));
    }
}
