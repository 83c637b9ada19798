use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::claims::{ClaimsParts, Registered};
use super::header::{Header, TypPolicy};
use super::issuers::{
    DEFAULT_MAX_DISCOVERED_ISSUERS, Issuer, IssuerPattern, Issuers, IssuersConfig, Policy, Source, TrustedIssuer,
};
use super::jws::{Compact, HeaderBuf, SignatureBuf, dots, verify_signature};
use super::{Claims, ValidationError};
use crate::Algorithm;
use crate::error::BuildError;
use crate::introspect::Introspector;
use crate::jwk::Jwk;
use crate::jwks::KeyStore;

pub use crate::idp::fetch::DEFAULT_MAX_TOKEN_SIZE;

/// The default leeway for `exp`, `nbf` and `iat`: 60 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Validates access tokens against a policy and the trusted issuers' keys (or their
/// introspection endpoints).
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
        let defaults = self.inner.issuers.defaults();
        f.debug_struct("Validator")
            .field("issuers", &self.inner.issuers)
            .field("audiences", &defaults.audiences)
            .field("algorithms", &defaults.algorithms.iter().collect::<Vec<_>>())
            .field("leeway_secs", &self.inner.leeway)
            .field("typ", &defaults.typ)
            .field("max_token_size", &self.inner.max_token_size)
            .field("introspection_fallback", &self.inner.fallback.is_some())
            .finish()
    }
}

struct Inner {
    issuers: Issuers,
    leeway: i64,
    max_token_size: usize,
    require_encryption: bool,
    /// Introspects what cannot be verified locally: opaque tokens, and JWEs no key opens.
    fallback: Option<Introspector>,
    #[cfg(feature = "jwe")]
    jwe: Option<JweConfig>,
}

#[cfg(feature = "jwe")]
struct JweConfig {
    keys: super::DecryptionKeys,
    policy: super::jwe::JwePolicy,
    accept_unsigned: bool,
}

/// A small bit set: the allow-list check on the hot path is one AND.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// The set of `list`, or `None` when it is empty.
    pub(crate) fn from_list(list: &[Algorithm]) -> Option<AlgorithmSet> {
        let mut set = AlgorithmSet::default();
        for alg in list {
            set.0 |= 1 << Self::bit(*alg);
        }
        (set.0 != 0).then_some(set)
    }
    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & (1 << Self::bit(alg)) != 0
    }
    /// The declaration order, which `Algorithm::ALL` follows (a unit test pins it).
    fn bit(alg: Algorithm) -> usize {
        alg as usize
    }
    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

/// What one validation pass found.
pub(crate) enum Attempt<C> {
    Done(Result<Verified<C>, ValidationError>),
    /// The pass cannot finish without the network; see [`Validator::settle`].
    Pending(Pending),
}

/// The slow paths, each one await away.
pub(crate) enum Pending {
    /// The issuer's keys do not (yet) include the token's `kid`, or none were ever
    /// loaded: one refresh of this store may help.
    Keys(KeyStore),
    /// The token is to be introspected.
    Introspect(Introspection),
}

/// An introspection to make: with whom, and for which issuer (`None`: the fallback
/// for tokens that are not JWTs, whose issuer the answer's `iss` names).
pub(crate) struct Introspection {
    introspector: Introspector,
    issuer: Option<Arc<TrustedIssuer>>,
}

/// A token that passed every check.
#[derive(Debug)]
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    /// `exp`, `nbf` and the leeway, so a cache can repeat the time checks.
    pub(crate) expires_at: i64,
    pub(crate) not_before: Option<i64>,
    pub(crate) leeway: i64,
    /// What verified the signature: none for an allowed unsigned JWE or an introspected
    /// token, which no cache may then keep.
    pub(crate) signer: Option<Signer>,
}

/// The algorithm and key a token's signature verified with, and the issuer (whose key
/// store it came from), so a cache can forget tokens whose key left the set or whose
/// issuer is no longer trusted.
pub(crate) struct Signer {
    pub(crate) alg: Algorithm,
    pub(crate) key: Arc<Jwk>,
    pub(crate) issuer: Arc<TrustedIssuer>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).field("kid", &self.key.kid()).finish_non_exhaustive()
    }
}

impl Signer {
    /// The key store the key came from.
    pub(crate) fn keys(&self) -> Option<&KeyStore> {
        match &self.issuer.source {
            Source::Keys(keys) => Some(keys),
            _ => None,
        }
    }
}

impl Validator<Claims> {
    /// A builder with the defaults: asymmetric algorithms, 60 s leeway, lenient `typ`,
    /// 16 KiB tokens. Issuer and audience must be set.
    pub fn builder() -> ValidatorBuilder<Claims> {
        ValidatorBuilder::new()
    }
}

impl<C> Validator<C> {
    /// The live set of trusted issuers: add and remove issuers while requests are
    /// served.
    pub fn issuers(&self) -> &Issuers {
        &self.inner.issuers
    }
}

impl<C: DeserializeOwned + 'static> Validator<C> {
    /// Validates a token, waiting for one key refresh when its `kid` is unknown (a
    /// rotation) or no keys are loaded yet, and for the introspection endpoint when the
    /// token is to be introspected.
    ///
    /// The refresh is shared with every other request that needs it and happens at
    /// most once per cooldown, so a flood of made-up `kid`s costs the issuer nothing.
    pub async fn validate(&self, token: &str) -> Result<C, ValidationError> {
        self.validate_inner(token, None).await
    }

    /// Like [`validate`](Self::validate), with the time checks made as of `now`: for
    /// replaying a recorded token, or for tests.
    pub async fn validate_at(&self, token: &str, now: SystemTime) -> Result<C, ValidationError> {
        self.validate_inner(token, Some(now)).await
    }

    async fn validate_inner(&self, token: &str, now: Option<SystemTime>) -> Result<C, ValidationError> {
        let span = tracing::Span::none();
        let verified = match self.attempt(token, now.unwrap_or_else(SystemTime::now), &span) {
            Attempt::Done(result) => result,
            Attempt::Pending(pending) => self.settle(token, pending, now, &span).await,
        };
        verified.map(|v| v.claims)
    }

    /// Validates a token with the keys loaded now, never waiting for the network.
    ///
    /// An unknown `kid` gives [`ValidationError::UnknownKey`] and no keys at all gives
    /// [`ValidationError::KeysUnavailable`]; neither triggers a refresh. A token that
    /// is to be introspected gives [`ValidationError::IntrospectionRequired`].
    pub fn validate_with_current_keys(&self, token: &str) -> Result<C, ValidationError> {
        match self.attempt(token, SystemTime::now(), &tracing::Span::none()) {
            Attempt::Done(result) => result.map(|v| v.claims),
            Attempt::Pending(Pending::Keys(store)) => Err(Self::still_missing(&store)),
            Attempt::Pending(Pending::Introspect(_)) => Err(ValidationError::IntrospectionRequired),
        }
    }

    /// The slow paths: one (shared, rate-limited) key refresh then one more try, or the
    /// introspection. `now: None` reads the clock after waiting.
    pub(crate) async fn settle(
        &self,
        token: &str,
        pending: Pending,
        now: Option<SystemTime>,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        let introspection = match pending {
            Pending::Keys(store) => {
                store.refresh_for_unknown_kid().await;
                match self.attempt(token, now.unwrap_or_else(SystemTime::now), span) {
                    Attempt::Done(result) => return result,
                    Attempt::Pending(Pending::Keys(store)) => return Err(Self::still_missing(&store)),
                    // The set changed meanwhile and the issuer is introspected now.
                    Attempt::Pending(Pending::Introspect(introspection)) => introspection,
                }
            }
            Pending::Introspect(introspection) => introspection,
        };
        self.introspect(token, introspection, now, span).await
    }

    fn still_missing(store: &KeyStore) -> ValidationError {
        if store.is_loaded() { ValidationError::UnknownKey } else { ValidationError::KeysUnavailable }
    }

    /// One synchronous pass over the token: no I/O, no locks (but for the first token
    /// of an issuer that is yet to be discovered).
    pub(crate) fn attempt(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Attempt<C> {
        let mut result = self.check(token, now, span);
        if let Err(Check::Retry) = result {
            // The issuer was just started or added: look again, once.
            result = self.check(token, now, span);
        }
        match result {
            Ok(verified) => Attempt::Done(Ok(verified)),
            Err(Check::Invalid(e) | Check::NotJwt(e)) => Attempt::Done(Err(e)),
            Err(Check::NeedsKeys(store)) => Attempt::Pending(Pending::Keys(store)),
            Err(Check::Introspect(introspection)) => Attempt::Pending(Pending::Introspect(introspection)),
            Err(Check::Retry) => Attempt::Done(Err(ValidationError::KeysUnavailable)),
        }
    }

    fn check(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_size {
            return Err(ValidationError::TokenTooLarge.into());
        }
        // RFC 7516 §7.1: five segments make a JWE.
        let dots = dots(token.as_bytes());
        if dots == 4 {
            return self.check_encrypted(token, now, span);
        }
        if inner.require_encryption {
            // An opaque token is not a plain JWS: it may still be introspected.
            return Err(if dots == 2 { ValidationError::EncryptionRequired.into() } else { self.not_a_jwt(None) });
        }
        match self.check_signed(token, now, span) {
            Err(Check::NotJwt(error)) => Err(self.not_a_jwt(Some(error))),
            other => other,
        }
    }

    /// A token this server cannot read: introspected when a fallback is configured.
    fn not_a_jwt(&self, error: Option<ValidationError>) -> Check {
        match &self.inner.fallback {
            Some(introspector) => Check::Introspect(Introspection { introspector: introspector.clone(), issuer: None }),
            None => Check::Invalid(error.unwrap_or(ValidationError::EncryptionRequired)),
        }
    }

    #[cfg(not(feature = "jwe"))]
    fn check_encrypted(&self, _token: &str, _now: SystemTime, _span: &tracing::Span) -> Result<Verified<C>, Check> {
        Err(self.not_a_jwt(Some(ValidationError::EncryptedToken)))
    }

    /// Decrypt, then verify the inner JWS exactly like a plain token (RFC 9068 §4,
    /// RFC 7519 §5.2); a JWE with claims directly inside passes only when allowed, and
    /// only for symmetric key management. A JWE that no configured key opens goes to
    /// the introspection fallback, if any: its issuer can read it.
    #[cfg(feature = "jwe")]
    fn check_encrypted(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let Some(jwe) = &self.inner.jwe else { return Err(self.not_a_jwt(Some(ValidationError::EncryptedToken))) };
        let decrypted = match jwe.keys.decrypt_with(token, jwe.policy) {
            Ok(decrypted) => decrypted,
            Err(ValidationError::NoDecryptionKey) => return Err(self.not_a_jwt(Some(ValidationError::NoDecryptionKey))),
            Err(error) => return Err(error.into()),
        };
        let (nested, symmetric) = (decrypted.is_nested(), decrypted.was_symmetric());
        let payload = decrypted.into_payload();
        if nested {
            let signed = std::str::from_utf8(&payload).map_err(|_| ValidationError::Malformed("nested token"))?;
            if dots(signed.as_bytes()) != 2 {
                // Never a JWE inside a JWE, and never an unsecured inner token.
                return Err(ValidationError::Malformed("nested token is not a JWS").into());
            }
            return match self.check_signed(signed, now, span) {
                Err(Check::NotJwt(error)) => Err(Check::Invalid(error)),
                other => other,
            };
        }
        if !(jwe.accept_unsigned && symmetric) {
            return Err(ValidationError::UnsignedEncryptedToken.into());
        }
        let registered = Registered::parse(&payload)?;
        let iss = registered.iss.as_deref().ok_or(ValidationError::MissingClaim("iss"))?;
        let snapshot = self.inner.issuers.load();
        let Some(issuer) = snapshot.get(iss) else { return Err(self.start_issuer(iss)) };
        let times = self.check_times(&issuer.policy, &registered, now)?;
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        self.finish(payload, parts, times, None)
    }

    /// A compact JWS: header rules, the issuer's key, the signature, then the claims.
    fn check_signed(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Result<Verified<C>, Check> {
        let compact = Compact::split(token).map_err(Check::NotJwt)?;
        let mut header_buf = HeaderBuf::new();
        let header = Header::parse(compact.header(&mut header_buf).map_err(Check::NotJwt)?).map_err(Check::NotJwt)?;
        let alg = header.algorithm()?;
        header.check_extensions()?;
        let payload = compact.payload()?;
        let mut buf = SignatureBuf::new();
        let signature = compact.signature(&mut buf)?;
        let registered = Registered::parse(&payload)?;

        // The issuer is picked by the unverified `iss`; nothing is trusted until the
        // signature verifies with that issuer's own keys. One lock-free load.
        let iss = registered.iss.as_deref().ok_or(ValidationError::MissingClaim("iss"))?;
        let snapshot = self.inner.issuers.load();
        let Some(issuer) = snapshot.get(iss) else { return Err(self.start_issuer(iss)) };
        let keys = match &issuer.source {
            Source::Keys(keys) => keys,
            Source::Introspection(introspector) => {
                let introspector = introspector.clone();
                return Err(Check::Introspect(Introspection { introspector, issuer: Some(issuer.clone()) }));
            }
            Source::Pending => return Err(self.start_issuer(iss)),
        };
        let policy = &*issuer.policy;
        if !policy.algorithms.contains(alg) {
            return Err(ValidationError::AlgorithmNotAllowed(alg).into());
        }
        policy.typ.check(header.typ.as_deref())?;

        let guard = keys.load();
        let Some(key_set) = guard.as_deref() else {
            return Err(Check::NeedsKeys(keys.clone()));
        };
        let key = verify_signature(key_set, header.kid.as_deref(), alg, compact.signing_input, signature).map_err(
            |e| match e {
                ValidationError::UnknownKey => Check::NeedsKeys(keys.clone()),
                other => Check::Invalid(other),
            },
        )?;
        drop(guard);
        if !span.is_disabled() {
            span.record("iss", &*issuer.name);
            span.record("kid", header.kid.as_deref());
            span.record("sub", registered.sub.as_deref());
            span.record("client_id", registered.client_id.as_deref());
            tracing::trace!(parent: span, %alg, "signature verified");
        }
        let times = self.check_times(policy, &registered, now)?;
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        let signer = Signer { alg, key, issuer: issuer.clone() };
        self.finish(payload, parts, times, Some(signer))
    }

    /// The cold path of an issuer the live set has not ready: untrusted (refused with no
    /// network request), or to be started.
    #[cold]
    fn start_issuer(&self, iss: &str) -> Check {
        match self.inner.issuers.start(iss) {
            Ok(()) => Check::Retry,
            Err(error) => Check::Invalid(error),
        }
    }

    /// Asks the introspection endpoint, then applies the same claims policy as to a
    /// JWT: `iss` (the issuer's, or any trusted one for the fallback), `aud`, `exp`,
    /// `nbf`, `iat`.
    async fn introspect(
        &self,
        token: &str,
        introspection: Introspection,
        now: Option<SystemTime>,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        let answer = introspection.introspector.introspect(token).await?;
        let payload = answer.claims_json().as_bytes().to_vec();
        drop(answer);
        let registered = Registered::parse(&payload)?;
        let policy = match (&introspection.issuer, registered.iss.as_deref()) {
            (Some(issuer), Some(iss)) if *issuer.name != *iss => return Err(ValidationError::UntrustedIssuer),
            (Some(issuer), _) => issuer.policy.clone(),
            (None, Some(iss)) => self.inner.issuers.policy_for(iss).ok_or(ValidationError::UntrustedIssuer)?,
            // RFC 7662 §2.2: `iss` is optional; the endpoint we were configured with
            // vouches for the token.
            (None, None) => self.inner.issuers.defaults().clone(),
        };
        let times = self.check_times(&policy, &registered, now.unwrap_or_else(SystemTime::now))?;
        if !span.is_disabled() {
            span.record("iss", registered.iss.as_deref());
            span.record("sub", registered.sub.as_deref());
            span.record("client_id", registered.client_id.as_deref());
            tracing::trace!(parent: span, "token introspected");
        }
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        match self.finish(payload, parts, times, None) {
            Ok(verified) => Ok(verified),
            Err(Check::Invalid(error)) => Err(error),
            Err(_) => Err(ValidationError::ClaimsType),
        }
    }

    /// The claims policy: `aud`, `exp`, `nbf`, `iat`.
    fn check_times(
        &self,
        policy: &Policy,
        registered: &Registered<'_>,
        now: SystemTime,
    ) -> Result<Times, ValidationError> {
        let leeway = self.inner.leeway;
        // RFC 7519 §4.1.3: `aud` is a string or an array; one match is enough.
        let aud = registered.aud.as_ref().ok_or(ValidationError::MissingClaim("aud"))?;
        if !aud.iter().any(|a| policy.audiences.iter().any(|ok| **ok == **a)) {
            return Err(ValidationError::InvalidAudience);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let exp = registered.exp.ok_or(ValidationError::MissingClaim("exp"))?;
        if now.saturating_sub(leeway) >= exp {
            return Err(ValidationError::Expired);
        }
        if registered.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(ValidationError::NotYetValid);
        }
        if registered.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
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
        signer: Option<Signer>,
    ) -> Result<Verified<C>, Check> {
        Ok(Verified {
            claims: claims_from(payload, parts)?,
            expires_at: times.expires_at,
            not_before: times.not_before,
            leeway: self.inner.leeway,
            signer,
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
    /// Not a compact JWS at all (segments, header): an opaque token, perhaps.
    NotJwt(ValidationError),
    NeedsKeys(KeyStore),
    Introspect(Introspection),
    /// The issuer was started or added just now: look it up again.
    Retry,
}

impl From<ValidationError> for Check {
    fn from(e: ValidationError) -> Self {
        Check::Invalid(e)
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
            .field("issuers", &self.issuers)
            .field("patterns", &self.patterns)
            .field("lazy_discovery", &self.lazy_discovery)
            .field("introspection_fallback", &self.fallback.is_some())
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
            patterns: Vec::new(),
            lazy_discovery: false,
            max_discovered: DEFAULT_MAX_DISCOVERED_ISSUERS,
            fallback: None,
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
    /// [`ValidationError::IssuerLimit`] (503), so a pattern cannot be used to make the
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
            patterns: self.patterns,
            lazy_discovery: self.lazy_discovery,
            max_discovered: self.max_discovered,
            fallback: self.fallback,
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
        if self.issuers.is_empty() && self.patterns.is_empty() {
            return Err(BuildError::MissingIssuer);
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::MissingAudience);
        }
        let algorithms = self.algorithms.unwrap_or_else(|| Algorithm::ASYMMETRIC.to_vec());
        let algorithms = AlgorithmSet::from_list(&algorithms).ok_or(BuildError::NoAlgorithms)?;
        #[cfg(feature = "jwe")]
        let has_decryption_keys = self.decryption_keys.is_some();
        #[cfg(not(feature = "jwe"))]
        let has_decryption_keys = false;
        if self.require_encryption && !has_decryption_keys {
            return Err(BuildError::NoDecryptionKeys);
        }
        // Issuers may bring their own audiences; the validator's own are needed by any
        // issuer that does not, and by introspection answers that name no issuer.
        if self.audiences.is_empty() && self.fallback.is_some() {
            return Err(BuildError::MissingAudience);
        }
        let defaults = Arc::new(Policy {
            audiences: self.audiences.into_iter().map(Into::into).collect(),
            algorithms,
            typ: self.typ,
        });
        let issuers = Issuers::new(IssuersConfig {
            issuers: self.issuers,
            patterns: self.patterns,
            defaults,
            http_client: self.http_client,
            lazy: self.lazy_discovery,
            max_discovered: self.max_discovered,
        })?;
        Ok(Validator {
            inner: Arc::new(Inner {
                issuers,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                max_token_size: self.max_token_size,
                require_encryption: self.require_encryption,
                fallback: self.fallback,
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
