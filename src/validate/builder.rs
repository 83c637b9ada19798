//! [`ValidatorBuilder`]: the configuration of a [`Validator`], checked once at
//! [`build`](ValidatorBuilder::build), and the [`Dangerous`] switches.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::binding::DpopMode;
use super::claims::Claims;
use super::header::TypPolicy;
use super::header_cache::HeaderCache;
use super::issuer::Issuer;
use super::issuer_set::{DEFAULT_MAX_DISCOVERED_ISSUERS, Issuers, IssuersConfig};
use super::patterns::IssuerPattern;
use super::pipeline::Pipeline;
use super::policy::{AlgorithmSet, IssuerPolicy};
use super::validator::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_SIZE, Validator};
use crate::Algorithm;
use crate::error::BuildError;
use crate::introspect::Introspector;
use crate::jwks::KeyStore;
use crate::uri::ResourceId;

impl Validator<Claims> {
    /// A builder with the defaults: asymmetric algorithms, 60 s leeway, lenient `typ`,
    /// 16 KiB tokens. Issuer and audience must be set.
    pub fn builder() -> ValidatorBuilder<Claims> {
        ValidatorBuilder::new()
    }
}

/// Builds a [`Validator`]. Nothing is accepted until it is configured: an issuer (or an
/// issuer pattern) and an audience are required.
#[must_use]
pub struct ValidatorBuilder<C = Claims> {
    issuers: Vec<Issuer>,
    patterns: Vec<IssuerPattern>,
    lazy_discovery: bool,
    max_discovered: usize,
    fallback: Option<Introspector>,
    audiences: Vec<String>,
    resource: Option<String>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Duration,
    typ: TypPolicy,
    dpop: DpopMode,
    max_token_size: usize,
    http_client: Option<reqwest::Client>,
    #[cfg(feature = "jwe")]
    require_encryption: bool,
    #[cfg(feature = "jwe")]
    decryption_keys: Option<super::DecryptionKeys>,
    dangerous: Dangerous,
    _claims: PhantomData<fn() -> C>,
}

/// Switches that weaken validation, each for a known reason; set them through
/// [`ValidatorBuilder::dangerous`] so they stand out in review.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
#[cfg_attr(not(feature = "jwe"), allow(dead_code))]
pub struct Dangerous {
    allow_rsa1_5: bool,
    accept_unsigned_encrypted_claims: bool,
}

impl Dangerous {
    /// Accepts JWE tokens with `alg: RSA1_5` (RSAES-PKCS1-v1_5), which is open to
    /// Bleichenbacher's padding-oracle attack (RFC 8725 §3.2). Only for an issuer that
    /// cannot do better, and never together with verbose errors.
    pub fn allow_rsa1_5(&mut self) -> &mut Self {
        self.allow_rsa1_5 = true;
        self
    }

    /// Accepts a JWE that carries claims directly, without an inner signature, when it
    /// was encrypted with a symmetric key (`dir`, AES key wrap): the sender must then
    /// hold the same secret as this server. Never for asymmetric key management, where
    /// anyone with the public key could mint such a token.
    pub fn accept_unsigned_encrypted_claims(&mut self) -> &mut Self {
        self.accept_unsigned_encrypted_claims = true;
        self
    }
}

impl<C> std::fmt::Debug for ValidatorBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorBuilder")
            .field("issuers", &self.issuers)
            .field("patterns", &self.patterns)
            .field("lazy_discovery", &self.lazy_discovery)
            .field("introspection_fallback", &self.fallback.is_some())
            .field("audiences", &self.audiences)
            .field("resource", &self.resource)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("typ", &self.typ)
            .field("dpop", &self.dpop)
            .field("max_token_size", &self.max_token_size)
            .finish_non_exhaustive()
    }
}

impl<C> ValidatorBuilder<C> {
    fn new() -> Self {
        ValidatorBuilder {
            issuers: Vec::new(),
            patterns: Vec::new(),
            lazy_discovery: false,
            max_discovered: DEFAULT_MAX_DISCOVERED_ISSUERS,
            fallback: None,
            audiences: Vec::new(),
            resource: None,
            algorithms: None,
            leeway: DEFAULT_LEEWAY,
            typ: TypPolicy::default(),
            dpop: DpopMode::default(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            http_client: None,
            #[cfg(feature = "jwe")]
            require_encryption: false,
            #[cfg(feature = "jwe")]
            decryption_keys: None,
            dangerous: Dangerous::default(),
            _claims: PhantomData,
        }
    }

    /// Accepts JWE access tokens encrypted to one of `keys`: they are decrypted, and the
    /// inner JWS is validated exactly like a plain token.
    #[cfg(feature = "jwe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
    pub fn decryption_keys(mut self, keys: super::DecryptionKeys) -> Self {
        self.decryption_keys = Some(keys);
        self
    }

    /// Rejects plain (unencrypted) JWS tokens: for deployments where access tokens must
    /// not be readable by clients (RFC 9068 §4 allows encrypting them). Needs
    /// [`decryption_keys`](Self::decryption_keys).
    #[cfg(feature = "jwe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
    pub fn require_encryption(mut self) -> Self {
        self.require_encryption = true;
        self
    }

    /// Weakens the defaults for a known reason; see [`Dangerous`].
    ///
    /// ```
    /// # use tower_oauth::Validator;
    /// let builder = Validator::builder().dangerous(|d| {
    ///     d.allow_rsa1_5();
    /// });
    /// ```
    pub fn dangerous(mut self, configure: impl FnOnce(&mut Dangerous)) -> Self {
        configure(&mut self.dangerous);
        self
    }

    /// Trusts an issuer: a URL, whose keys are found through discovery
    /// (`{issuer}/.well-known/openid-configuration`, then RFC 8414 metadata), or an
    /// [`Issuer`] with its own key source and policy.
    ///
    /// `iss` must equal the issuer exactly. Call again to trust several issuers, each
    /// with its own keys; more can be added later through [`Validator::issuers`].
    pub fn issuer(mut self, issuer: impl Into<Issuer>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Trusts an issuer whose keys come from `keys`: a [`KeyStore`] built with its own
    /// settings, or a fixed set ([`KeyStore::from_key_set`], the way to configure HMAC
    /// secrets). Shorthand for `.issuer(Issuer::new(issuer).keys(keys))`.
    pub fn issuer_with_keys(self, issuer: impl Into<String>, keys: KeyStore) -> Self {
        self.issuer(Issuer::new(issuer).keys(keys))
    }

    /// Trusts every issuer that matches `pattern` (multi-tenant issuers such as
    /// `https://login.example.com/{tenant}/v2.0`). Each is discovered on its first
    /// token, with its own key store, up to
    /// [`max_discovered_issuers`](Self::max_discovered_issuers). A token whose `iss`
    /// neither names a trusted issuer nor matches is refused before any network request.
    pub fn issuer_pattern(mut self, pattern: IssuerPattern) -> Self {
        self.patterns.push(pattern);
        self
    }

    /// The most issuers discovered through patterns that are kept at once. Default
    /// 1,000. Beyond it, a new matching issuer's tokens are refused with
    /// [`ValidationError::IssuerLimit`](super::ValidationError::IssuerLimit) (503), so a pattern cannot be used to make the
    /// validator hold unbounded key stores.
    pub fn max_discovered_issuers(mut self, max: usize) -> Self {
        self.max_discovered = max;
        self
    }

    /// Starts discovery for each issuer given by URL on its first token, not at
    /// [`build`](Self::build): for many tenants, most of which may send no traffic.
    /// The first token of an issuer then waits for its discovery.
    pub fn lazy_discovery(mut self) -> Self {
        self.lazy_discovery = true;
        self
    }

    /// Introspects (RFC 7662) the tokens that cannot be verified here: opaque tokens
    /// (not a compact JWS or JWE), and JWEs that no configured decryption key matches
    /// (their issuer can read them; a JWE that a configured key fails to decrypt is
    /// refused).
    ///
    /// The answer goes through the same claims policy as a JWT: when it has an `iss`,
    /// that must be a trusted issuer (named or matching a pattern), whose policy then
    /// applies; without one, the validator's policy applies. `aud` and `exp` are
    /// required, as for JWTs.
    pub fn introspection_fallback(mut self, introspector: Introspector) -> Self {
        self.fallback = Some(introspector);
        self
    }

    /// Accepts tokens whose `aud` contains this value. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// This server's resource identifier (RFC 9728 §1.2, RFC 8707 §2): the absolute
    /// URL clients call it by, https (or http on loopback), without a fragment.
    ///
    /// - Without any [`audience`](Self::audience), it is the audience: a token whose
    ///   `aud` does not name it is refused. The comparison is RFC 3986 normalised:
    ///   scheme and host case-insensitive, default ports dropped, and an empty path the
    ///   same as `/`; `https://api.example.com/mcp/` and `https://api.example.com/MCP`
    ///   are other resources. An [`Issuer`] with audiences of its own accepts those
    ///   instead.
    /// - A [`BearerAuthLayer`](crate::BearerAuthLayer) then points clients at the
    ///   resource's metadata in every challenge (`resource_metadata`, RFC 9728 §5.1),
    ///   and [`ProtectedResourceMetadata::from_layer`](crate::resource::ProtectedResourceMetadata::from_layer)
    ///   describes it.
    ///
    /// [`build`](Self::build) fails with [`BuildError::Url`] for a URL that is not
    /// https off loopback, and [`BuildError::InvalidUrl`] for one with a fragment.
    ///
    /// ```
    /// # use tower_oauth::Validator;
    /// # async fn run() -> Result<(), tower_oauth::BuildError> {
    /// let validator = Validator::builder()
    ///     .issuer("https://login.example.com")
    ///     .resource("https://api.example.com/mcp")
    ///     .build()?;
    /// assert_eq!(validator.resource(), Some("https://api.example.com/mcp"));
    /// # Ok(()) }
    /// ```
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The algorithm allow-list. Default: [`Algorithm::ASYMMETRIC`]. HMAC algorithms
    /// must be listed here *and* have configured secrets to verify anything.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Clock skew allowed for `exp`, `nbf` and `iat`. Default 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The `typ` header policy. Default [`TypPolicy::Lenient`].
    pub fn typ(mut self, policy: TypPolicy) -> Self {
        self.typ = policy;
        self
    }

    /// Whether tokens may, or must, come with a DPoP proof (RFC 9449); see [`DpopMode`].
    /// Default [`DpopMode::Allowed`]: proofs are checked only by a
    /// [`BearerAuthLayer`](crate::BearerAuthLayer) given a
    /// [`DpopVerifier`](crate::validate::dpop::DpopVerifier).
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop = mode;
        self
    }

    /// Strict RFC 9068: `typ` must be `at+jwt`. Shorthand for `.typ(TypPolicy::Rfc9068)`.
    pub fn require_at_jwt(self) -> Self {
        self.typ(TypPolicy::Rfc9068)
    }

    /// The largest token accepted, in bytes. Default 16 KiB.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// The HTTP client for the key stores that [`issuer`](Self::issuer) creates
    /// (custom CA, mTLS, proxy). Default: a client with https-only redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Deserializes claims into `T` instead.
    pub fn claims<T>(self) -> ValidatorBuilder<T> {
        ValidatorBuilder {
            issuers: self.issuers,
            patterns: self.patterns,
            lazy_discovery: self.lazy_discovery,
            max_discovered: self.max_discovered,
            fallback: self.fallback,
            audiences: self.audiences,
            resource: self.resource,
            algorithms: self.algorithms,
            leeway: self.leeway,
            typ: self.typ,
            dpop: self.dpop,
            max_token_size: self.max_token_size,
            http_client: self.http_client,
            #[cfg(feature = "jwe")]
            require_encryption: self.require_encryption,
            #[cfg(feature = "jwe")]
            decryption_keys: self.decryption_keys,
            dangerous: self.dangerous,
            _claims: PhantomData,
        }
    }

    /// Checks the configuration and starts the key stores it needs.
    ///
    /// Must be called inside a Tokio runtime when any issuer uses discovery.
    pub fn build(self) -> Result<Validator<C>, BuildError> {
        if self.issuers.is_empty() && self.patterns.is_empty() {
            return Err(BuildError::MissingIssuer);
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::MissingAudience);
        }
        let algorithms = self.algorithms.unwrap_or_else(|| Algorithm::ASYMMETRIC.to_vec());
        let algorithms = AlgorithmSet::from_list(&algorithms).ok_or(BuildError::NoAlgorithms)?;
        #[cfg(feature = "jwe")]
        if self.require_encryption && self.decryption_keys.is_none() {
            return Err(BuildError::NoDecryptionKeys);
        }
        // Issuers may bring their own audiences; the validator's own are needed by any
        // issuer that does not, and by introspection answers that name no issuer.
        let resource = self.resource.as_deref().map(ResourceId::parse).transpose()?;
        if self.audiences.is_empty() && resource.is_none() && self.fallback.is_some() {
            return Err(BuildError::MissingAudience);
        }
        let defaults = Arc::new(IssuerPolicy {
            resource: resource.clone().filter(|_| self.audiences.is_empty()),
            audiences: self.audiences.into_iter().map(Into::into).collect(),
            algorithms,
            typ: self.typ,
            dpop: self.dpop,
        });
        let issuers = Issuers::new(IssuersConfig {
            issuers: self.issuers,
            patterns: self.patterns,
            defaults,
            http_client: self.http_client,
            lazy: self.lazy_discovery,
            max_discovered: self.max_discovered,
        })?;
        Ok(Validator::from_pipeline(Pipeline {
            issuers,
            resource,
            headers: HeaderCache::new(),
            leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            max_token_size: self.max_token_size,
            fallback: self.fallback,
            #[cfg(feature = "jwe")]
            jwe: self.decryption_keys.map(|keys| super::pipeline::JweConfig {
                keys,
                policy: super::jwe::JwePolicy { allow_rsa1_5: self.dangerous.allow_rsa1_5 },
                accept_unsigned: self.dangerous.accept_unsigned_encrypted_claims,
                required: self.require_encryption,
            }),
        }))
    }
}
