use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::claims::{ClaimsParts, Registered};
use super::header::{Header, TypPolicy};
use super::jws::{Compact, HeaderBuf, SignatureBuf, checked_algorithm, dots, verify_signature};
use super::{Claims, ValidationError};
use crate::Algorithm;
use crate::error::BuildError;
use crate::jwk::Jwk;
use crate::jwks::KeyStore;

/// The default token size limit: 16 KiB.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 16 * 1024;

/// The default leeway for `exp`, `nbf` and `iat`: 60 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Validates JWS access tokens against a policy and the trusted issuers' keys.
///
/// Cloning is cheap (one `Arc`), and validation with warm keys takes no lock and
/// does no I/O. See the [module docs](crate::validate) for the rules it applies.
///
/// `C` is the claims type handed back: [`Claims`] by default, or any
/// `serde::de::DeserializeOwned` type of the application's.
pub struct Validator<C = Claims> {
    inner: Arc<Inner>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for Validator<C> {
    fn clone(&self) -> Self {
        Validator { inner: self.inner.clone(), _claims: PhantomData }
    }
}

impl<C> std::fmt::Debug for Validator<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("issuers", &self.inner.issuers.iter().map(|i| &*i.issuer).collect::<Vec<_>>())
            .field("audiences", &self.inner.audiences)
            .field("algorithms", &self.inner.algorithms.iter().collect::<Vec<_>>())
            .field("leeway_secs", &self.inner.leeway)
            .field("typ", &self.inner.typ)
            .field("max_token_size", &self.inner.max_token_size)
            .finish()
    }
}

struct Inner {
    issuers: Box<[TrustedIssuer]>,
    audiences: Box<[Box<str>]>,
    algorithms: AlgorithmSet,
    leeway: i64,
    typ: TypPolicy,
    max_token_size: usize,
    require_encryption: bool,
    #[cfg(feature = "jwe")]
    jwe: Option<JweConfig>,
}

#[cfg(feature = "jwe")]
struct JweConfig {
    keys: super::DecryptionKeys,
    policy: super::jwe::JwePolicy,
    accept_unsigned: bool,
}

struct TrustedIssuer {
    issuer: Box<str>,
    keys: KeyStore,
}

/// A small bit set: the allow-list check on the hot path is one AND.
#[derive(Clone, Copy, Default)]
struct AlgorithmSet(u16);

impl AlgorithmSet {
    fn insert(&mut self, alg: Algorithm) {
        self.0 |= 1 << Self::bit(alg);
    }
    fn contains(self, alg: Algorithm) -> bool {
        self.0 & (1 << Self::bit(alg)) != 0
    }
    fn bit(alg: Algorithm) -> usize {
        Algorithm::ALL.iter().position(|a| *a == alg).unwrap_or(15)
    }
    fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

/// What one validation pass found.
pub(crate) enum Attempt<C> {
    Done(Result<Verified<C>, ValidationError>),
    /// The issuer's keys do not (yet) include the token's `kid`, or none were ever
    /// loaded: one refresh of this store may help.
    NeedsKeys(KeyStore),
}

/// A token that passed every check.
#[derive(Debug)]
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    /// `exp`, `nbf` and the leeway, so a cache can repeat the time checks.
    pub(crate) expires_at: i64,
    pub(crate) not_before: Option<i64>,
    pub(crate) leeway: i64,
    /// What verified the signature (none for an allowed unsigned JWE) and the store it
    /// came from, so a cache can forget tokens whose key left the set.
    pub(crate) signer: Option<Signer>,
    pub(crate) keys: KeyStore,
}

/// The algorithm and key a token's signature verified with.
#[derive(Debug)]
pub(crate) struct Signer {
    pub(crate) alg: Algorithm,
    pub(crate) key: Arc<Jwk>,
}

impl Validator<Claims> {
    /// A builder with the defaults: asymmetric algorithms, 60 s leeway, lenient `typ`,
    /// 16 KiB tokens. Issuer and audience must be set.
    pub fn builder() -> ValidatorBuilder<Claims> {
        ValidatorBuilder::new()
    }
}

impl<C: DeserializeOwned + 'static> Validator<C> {
    /// Validates a token, waiting for one key refresh when its `kid` is unknown (a
    /// rotation) or no keys are loaded yet.
    ///
    /// The refresh is shared with every other request that needs it and happens at
    /// most once per cooldown, so a flood of made-up `kid`s costs the issuer nothing.
    pub async fn validate(&self, token: &str) -> Result<C, ValidationError> {
        self.validate_at(token, SystemTime::now()).await
    }

    /// Like [`validate`](Self::validate), with the time checks made as of `now`: for
    /// replaying a recorded token, or for tests.
    pub async fn validate_at(&self, token: &str, now: SystemTime) -> Result<C, ValidationError> {
        let span = tracing::Span::none();
        let verified = match self.attempt(token, now, &span) {
            Attempt::Done(result) => result,
            Attempt::NeedsKeys(store) => {
                store.refresh_for_unknown_kid().await;
                match self.attempt(token, now, &span) {
                    Attempt::Done(result) => result,
                    Attempt::NeedsKeys(store) => Err(Self::still_missing(&store)),
                }
            }
        };
        verified.map(|v| v.claims)
    }

    /// Validates a token with the keys loaded now, never waiting for the network.
    ///
    /// An unknown `kid` gives [`ValidationError::UnknownKey`] and no keys at all gives
    /// [`ValidationError::KeysUnavailable`]; neither triggers a refresh.
    pub fn validate_with_current_keys(&self, token: &str) -> Result<C, ValidationError> {
        match self.attempt(token, SystemTime::now(), &tracing::Span::none()) {
            Attempt::Done(result) => result.map(|v| v.claims),
            Attempt::NeedsKeys(store) => Err(Self::still_missing(&store)),
        }
    }

    /// The slow path: one (shared, rate-limited) refresh, then one more try.
    pub(crate) async fn validate_after_refresh(
        &self,
        token: &str,
        store: KeyStore,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        store.refresh_for_unknown_kid().await;
        match self.attempt(token, SystemTime::now(), span) {
            Attempt::Done(result) => result,
            Attempt::NeedsKeys(store) => Err(Self::still_missing(&store)),
        }
    }

    fn still_missing(store: &KeyStore) -> ValidationError {
        if store.is_loaded() { ValidationError::UnknownKey } else { ValidationError::KeysUnavailable }
    }

    /// One synchronous pass over the token: no I/O, no locks.
    pub(crate) fn attempt(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Attempt<C> {
        match self.check(token, now, span) {
            Ok(verified) => Attempt::Done(Ok(verified)),
            Err(Check::Invalid(e)) => Attempt::Done(Err(e)),
            Err(Check::NeedsKeys(store)) => Attempt::NeedsKeys(store),
        }
    }

    fn check(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_size {
            return Err(ValidationError::TokenTooLarge.into());
        }
        // RFC 7516 §7.1: five segments make a JWE.
        if dots(token.as_bytes()) == 4 {
            return self.check_encrypted(token, now, span);
        }
        if inner.require_encryption {
            return Err(ValidationError::EncryptionRequired.into());
        }
        self.check_signed(token, now, span)
    }

    #[cfg(not(feature = "jwe"))]
    fn check_encrypted(&self, _token: &str, _now: SystemTime, _span: &tracing::Span) -> Result<Verified<C>, Check> {
        Err(ValidationError::EncryptedToken.into())
    }

    /// Decrypt, then verify the inner JWS exactly like a plain token (RFC 9068 §4,
    /// RFC 7519 §5.2); a JWE with claims directly inside passes only when allowed, and
    /// only for symmetric key management.
    #[cfg(feature = "jwe")]
    fn check_encrypted(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let Some(jwe) = &self.inner.jwe else { return Err(ValidationError::EncryptedToken.into()) };
        let decrypted = jwe.keys.decrypt_with(token, jwe.policy)?;
        let (nested, symmetric) = (decrypted.is_nested(), decrypted.was_symmetric());
        let payload = decrypted.into_payload();
        if nested {
            let signed = std::str::from_utf8(&payload).map_err(|_| ValidationError::Malformed("nested token"))?;
            if dots(signed.as_bytes()) != 2 {
                // Never a JWE inside a JWE, and never an unsecured inner token.
                return Err(ValidationError::Malformed("nested token is not a JWS").into());
            }
            return self.check_signed(signed, now, span);
        }
        if !(jwe.accept_unsigned && symmetric) {
            return Err(ValidationError::UnsignedEncryptedToken.into());
        }
        let registered = Registered::parse(&payload)?;
        let issuer = self.trusted_issuer(&registered)?;
        let times = self.check_times(&registered, now)?;
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        self.finish(payload, parts, times, issuer, None)
    }

    /// A compact JWS: header rules, the issuer's key, the signature, then the claims.
    fn check_signed(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let inner = &*self.inner;
        let compact = Compact::split(token)?;
        let mut header_buf = HeaderBuf::new();
        let header = Header::parse(compact.header(&mut header_buf)?)?;
        let alg = checked_algorithm(&header, |alg| inner.algorithms.contains(alg))?;
        inner.typ.check(header.typ.as_deref())?;
        let payload = compact.payload()?;
        let mut buf = SignatureBuf::new();
        let signature = compact.signature(&mut buf)?;
        let registered = Registered::parse(&payload)?;
        let issuer = self.trusted_issuer(&registered)?;

        let guard = issuer.keys.load();
        let Some(keys) = guard.as_deref() else {
            return Err(Check::NeedsKeys(issuer.keys.clone()));
        };
        let key = verify_signature(keys, header.kid.as_deref(), alg, compact.signing_input, signature).map_err(
            |e| match e {
                ValidationError::UnknownKey => Check::NeedsKeys(issuer.keys.clone()),
                other => Check::Invalid(other),
            },
        )?;
        drop(guard);
        if !span.is_disabled() {
            span.record("iss", &*issuer.issuer);
            span.record("kid", header.kid.as_deref());
            span.record("sub", registered.sub.as_deref());
            span.record("client_id", registered.client_id.as_deref());
            tracing::trace!(parent: span, %alg, "signature verified");
        }
        let times = self.check_times(&registered, now)?;
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        self.finish(payload, parts, times, issuer, Some(Signer { alg, key }))
    }

    /// Picks the issuer by the unverified `iss`; nothing is trusted until the signature
    /// verifies with that issuer's own keys.
    fn trusted_issuer(&self, registered: &Registered<'_>) -> Result<&TrustedIssuer, ValidationError> {
        let iss = registered.iss.as_deref().ok_or(ValidationError::MissingClaim("iss"))?;
        self.inner.issuers.iter().find(|i| *i.issuer == *iss).ok_or(ValidationError::UntrustedIssuer)
    }

    /// The claims policy: `aud`, `exp`, `nbf`, `iat`.
    fn check_times(&self, registered: &Registered<'_>, now: SystemTime) -> Result<Times, ValidationError> {
        let inner = &*self.inner;
        // RFC 7519 §4.1.3: `aud` is a string or an array; one match is enough.
        let aud = registered.aud.as_ref().ok_or(ValidationError::MissingClaim("aud"))?;
        if !aud.iter().any(|a| inner.audiences.iter().any(|ok| **ok == **a)) {
            return Err(ValidationError::InvalidAudience);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let exp = registered.exp.ok_or(ValidationError::MissingClaim("exp"))?;
        if now.saturating_sub(inner.leeway) >= exp {
            return Err(ValidationError::Expired);
        }
        if registered.nbf.is_some_and(|nbf| nbf > now.saturating_add(inner.leeway)) {
            return Err(ValidationError::NotYetValid);
        }
        if registered.iat.is_some_and(|iat| iat > now.saturating_add(inner.leeway)) {
            return Err(ValidationError::IssuedInFuture);
        }
        Ok(Times { expires_at: exp, not_before: registered.nbf })
    }

    /// The application's claims, and what a cache needs to know about the token.
    fn finish(
        &self,
        payload: Vec<u8>,
        parts: Option<ClaimsParts>,
        times: Times,
        issuer: &TrustedIssuer,
        signer: Option<Signer>,
    ) -> Result<Verified<C>, Check> {
        Ok(Verified {
            claims: claims_from(payload, parts)?,
            expires_at: times.expires_at,
            not_before: times.not_before,
            leeway: self.inner.leeway,
            signer,
            keys: issuer.keys.clone(),
        })
    }
}

#[derive(Clone, Copy)]
struct Times {
    expires_at: i64,
    not_before: Option<i64>,
}

/// The application's claims type. The crate's own [`Claims`] is built from the pass
/// the policy already made, with the payload moved in: one parse and no copy. Any other
/// type goes through serde.
fn claims_from<C: DeserializeOwned + 'static>(
    payload: Vec<u8>,
    parts: Option<ClaimsParts>,
) -> Result<C, ValidationError> {
    if let Some(parts) = parts {
        let raw = String::from_utf8(payload).map_err(|_| ValidationError::Malformed("payload is not UTF-8"))?;
        let mut slot = Some(parts.with_raw(raw));
        let claims = (&mut slot as &mut dyn Any).downcast_mut::<Option<C>>().and_then(Option::take);
        return claims.ok_or(ValidationError::ClaimsType);
    }
    serde_json::from_slice(&payload).map_err(|_| ValidationError::ClaimsType)
}

/// The parts of [`Claims`] when `C` is `Claims`, taken before the payload is released.
fn parts_for<C: 'static>(registered: &Registered<'_>, payload: &[u8]) -> Option<ClaimsParts> {
    (TypeId::of::<C>() == TypeId::of::<Claims>()).then(|| ClaimsParts::new(registered, payload.as_ptr()))
}

enum Check {
    Invalid(ValidationError),
    NeedsKeys(KeyStore),
}

impl From<ValidationError> for Check {
    fn from(e: ValidationError) -> Self {
        Check::Invalid(e)
    }
}

/// Builds a [`Validator`]. Nothing is accepted until it is configured: an issuer and
/// an audience are required.
#[must_use]
pub struct ValidatorBuilder<C = Claims> {
    issuers: Vec<(String, Option<KeyStore>)>,
    audiences: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Duration,
    typ: TypPolicy,
    max_token_size: usize,
    http_client: Option<reqwest::Client>,
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
            .field("issuers", &self.issuers.iter().map(|(i, _)| i).collect::<Vec<_>>())
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("typ", &self.typ)
            .field("max_token_size", &self.max_token_size)
            .finish_non_exhaustive()
    }
}

impl<C> ValidatorBuilder<C> {
    fn new() -> Self {
        ValidatorBuilder {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: None,
            leeway: DEFAULT_LEEWAY,
            typ: TypPolicy::default(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            http_client: None,
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
    /// not be readable by clients (RFC 9068 §4 allows encrypting them).
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

    /// Trusts an issuer whose keys are found through discovery
    /// (`{issuer}/.well-known/openid-configuration`, then RFC 8414 metadata).
    ///
    /// `iss` must equal this string exactly. Call again to trust several issuers, each
    /// with its own keys.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push((issuer.into(), None));
        self
    }

    /// Trusts an issuer whose keys come from `keys`: a [`KeyStore`] built with its own
    /// settings, or a fixed set ([`KeyStore::from_key_set`], the way to configure HMAC
    /// secrets).
    pub fn issuer_with_keys(mut self, issuer: impl Into<String>, keys: KeyStore) -> Self {
        self.issuers.push((issuer.into(), Some(keys)));
        self
    }

    /// Accepts tokens whose `aud` contains this value. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
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
            audiences: self.audiences,
            algorithms: self.algorithms,
            leeway: self.leeway,
            typ: self.typ,
            max_token_size: self.max_token_size,
            http_client: self.http_client,
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
        if self.issuers.is_empty() {
            return Err(BuildError::MissingIssuer);
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::MissingAudience);
        }
        let mut algorithms = AlgorithmSet::default();
        for alg in self.algorithms.unwrap_or_else(|| Algorithm::ASYMMETRIC.to_vec()) {
            algorithms.insert(alg);
        }
        if algorithms.0 == 0 {
            return Err(BuildError::NoAlgorithms);
        }
        #[cfg(feature = "jwe")]
        let has_decryption_keys = self.decryption_keys.is_some();
        #[cfg(not(feature = "jwe"))]
        let has_decryption_keys = false;
        if self.require_encryption && !has_decryption_keys {
            return Err(BuildError::NoDecryptionKeys);
        }
        let mut issuers: Vec<TrustedIssuer> = Vec::with_capacity(self.issuers.len());
        for (issuer, keys) in self.issuers {
            if issuer.is_empty() {
                return Err(BuildError::MissingIssuer);
            }
            if issuers.iter().any(|i| *i.issuer == *issuer) {
                return Err(BuildError::DuplicateIssuer);
            }
            let keys = match keys {
                Some(keys) => keys,
                None => {
                    let mut builder = KeyStore::builder().issuer(&issuer);
                    if let Some(client) = &self.http_client {
                        builder = builder.http_client(client.clone());
                    }
                    builder.build()?
                }
            };
            issuers.push(TrustedIssuer { issuer: issuer.into(), keys });
        }
        Ok(Validator {
            inner: Arc::new(Inner {
                issuers: issuers.into(),
                audiences: self.audiences.into_iter().map(Into::into).collect(),
                algorithms,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                typ: self.typ,
                max_token_size: self.max_token_size,
                require_encryption: self.require_encryption,
                #[cfg(feature = "jwe")]
                jwe: self.decryption_keys.map(|keys| JweConfig {
                    keys,
                    policy: super::jwe::JwePolicy { allow_rsa1_5: self.dangerous.allow_rsa1_5 },
                    accept_unsigned: self.dangerous.accept_unsigned_encrypted_claims,
                }),
            }),
            _claims: PhantomData,
        })
    }
}
