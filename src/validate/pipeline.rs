//! The validation pipeline: one synchronous pass over a token (size, segments, JWE,
//! header, issuer, key, signature, claims policy), and the slow paths it may need (one
//! key refresh, or an introspection).

use std::any::{Any, TypeId};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::de::DeserializeOwned;

use super::binding::{Binding, Presentation};
use super::claims::{ClaimsParts, Registered};
use super::header::Header;
use super::header_cache::HeaderCache;
use super::issuer_set::{IssuerSource, Issuers, TrustedIssuer};
#[cfg(feature = "jwe")]
use super::jws::dots;
use super::jws::{Compact, HeaderBuf, SignatureBuf, verify_signature};
use super::policy::Times;
use super::{Claims, ValidationError};
use crate::Algorithm;
use crate::introspect::{Introspected, IntrospectionError, Introspector};
use crate::jwk::Jwk;
use crate::jwks::KeyStore;

/// Everything a validator applies, shared by its clones.
pub(crate) struct Pipeline {
    pub(crate) issuers: Issuers,
    /// This server's resource identifier, when configured.
    pub(crate) resource: Option<crate::uri::ResourceId>,
    /// The JOSE headers of recently verified tokens, checked once.
    pub(crate) headers: HeaderCache,
    pub(crate) leeway: i64,
    pub(crate) max_token_size: usize,
    /// Introspects what cannot be verified locally: opaque tokens, and JWEs no key opens.
    pub(crate) fallback: Option<Introspector>,
    #[cfg(feature = "jwe")]
    pub(crate) jwe: Option<JweConfig>,
}

/// How encrypted tokens are handled.
#[cfg(feature = "jwe")]
pub(crate) struct JweConfig {
    pub(crate) keys: super::DecryptionKeys,
    pub(crate) policy: super::jwe::JwePolicy,
    pub(crate) accept_unsigned: bool,
    /// Plain JWS tokens are refused.
    pub(crate) required: bool,
}

/// What one validation pass found.
pub(crate) enum Attempt<C> {
    Done(Result<Verified<C>, ValidationError>),
    /// The pass cannot finish without the network; see [`Pipeline::settle`].
    Pending(Pending),
}

/// The slow paths, each one await away.
pub(crate) enum Pending {
    /// The issuer's keys do not (yet) include the token's `kid`, or none were ever
    /// loaded: one refresh of this store may help.
    /// The `kid` the token named, if any.
    Keys(KeyStore, Option<Box<str>>),
    /// The token is to be introspected.
    Introspect(Introspection),
}

impl Pending {
    /// The error for a caller that will not wait.
    pub(crate) fn unsettled(&self) -> ValidationError {
        match self {
            Pending::Keys(store, _) => still_missing(store),
            Pending::Introspect(_) => ValidationError::IntrospectionRequired,
        }
    }
}

/// An introspection to make: with whom, and for which issuer (`None`: the fallback
/// for tokens that are not JWTs, whose issuer the answer's `iss` names).
pub(crate) struct Introspection {
    introspector: Introspector,
    pub(super) issuer: Option<Arc<TrustedIssuer>>,
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
    /// The key the token is bound to and its issuer's DPoP policy, to check against how
    /// the request presented it.
    pub(crate) binding: Binding,
}

impl<C> Verified<C> {
    /// The token as `presented`: a sender-constrained one needs its proof (RFC 9449
    /// §7.2, RFC 8705 §3), and the issuer's DPoP policy applies.
    pub(crate) fn presented(self, presented: Presentation) -> Result<Verified<C>, ValidationError> {
        if self.binding.is_plain() && presented.dpop.is_none() {
            return Ok(self);
        }
        self.binding.check(presented).map(|()| self)
    }
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
        self.issuer.key_store()
    }
}

/// Why a pass stopped.
enum Check {
    Invalid(ValidationError),
    /// Not a compact JWS at all (segments, header): an opaque token, perhaps.
    NotJwt(ValidationError),
    NeedsKeys(KeyStore, Option<Box<str>>),
    Introspect(Introspection),
    /// The issuer was started or added just now: look it up again.
    Retry,
}

impl From<ValidationError> for Check {
    fn from(e: ValidationError) -> Self {
        Check::Invalid(e)
    }
}

fn still_missing(store: &KeyStore) -> ValidationError {
    if store.is_loaded() { ValidationError::UnknownKey } else { ValidationError::KeysUnavailable }
}

impl Pipeline {
    /// The slow paths: one (shared, rate-limited) key refresh then one more try, or the
    /// introspection. `now: None` reads the clock after waiting.
    pub(crate) async fn settle<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        pending: Pending,
        now: Option<SystemTime>,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        let introspection = match pending {
            Pending::Keys(store, kid) => {
                store.refresh_for_unknown_kid(kid.as_deref()).await;
                match self.attempt(token, now.unwrap_or_else(SystemTime::now), span) {
                    Attempt::Done(result) => return result,
                    Attempt::Pending(Pending::Keys(store, _)) => return Err(still_missing(&store)),
                    // The set changed meanwhile and the issuer is introspected now.
                    Attempt::Pending(Pending::Introspect(introspection)) => introspection,
                }
            }
            Pending::Introspect(introspection) => introspection,
        };
        self.introspect(token, introspection, now, span).await
    }

    /// One synchronous pass over the token: no I/O, no locks (but for the first token
    /// of an issuer that is yet to be discovered).
    pub(crate) fn attempt<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Attempt<C> {
        let mut result = self.check(token, now, span);
        if let Err(Check::Retry) = result {
            // The issuer was just started or added: look again, once.
            result = self.check(token, now, span);
        }
        match result {
            Ok(verified) => Attempt::Done(Ok(verified)),
            Err(Check::Invalid(e) | Check::NotJwt(e)) => Attempt::Done(Err(e)),
            Err(Check::NeedsKeys(store, kid)) => Attempt::Pending(Pending::Keys(store, kid)),
            Err(Check::Introspect(introspection)) => self.introspect_kept(token, introspection, now, span),
            Err(Check::Retry) => Attempt::Done(Err(ValidationError::KeysUnavailable)),
        }
    }

    fn check<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Result<Verified<C>, Check> {
        if token.len() > self.max_token_size {
            return Err(ValidationError::TokenTooLarge.into());
        }
        // RFC 7516 §7.1: five segments make a JWE. One scan finds the dots of a JWS.
        let compact = match Compact::split(token) {
            Err(ValidationError::EncryptedToken) => return self.check_encrypted(token, now, span),
            compact => compact,
        };
        #[cfg(feature = "jwe")]
        if self.jwe.as_ref().is_some_and(|jwe| jwe.required) {
            // An opaque token is not a plain JWS: it may still be introspected.
            return Err(if compact.is_ok() {
                ValidationError::EncryptionRequired.into()
            } else {
                self.not_a_jwt(None)
            });
        }
        let compact = compact.map_err(|error| self.not_a_jwt(Some(error)))?;
        match self.check_signed(compact, now, span) {
            Err(Check::NotJwt(error)) => Err(self.not_a_jwt(Some(error))),
            other => other,
        }
    }

    /// A token this server cannot read: introspected when a fallback is configured.
    fn not_a_jwt(&self, error: Option<ValidationError>) -> Check {
        match &self.fallback {
            Some(introspector) => Check::Introspect(Introspection { introspector: introspector.clone(), issuer: None }),
            None => Check::Invalid(error.unwrap_or(ValidationError::EncryptionRequired)),
        }
    }

    #[cfg(not(feature = "jwe"))]
    fn check_encrypted<C>(&self, _token: &str, _now: SystemTime, _span: &tracing::Span) -> Result<Verified<C>, Check> {
        Err(self.not_a_jwt(Some(ValidationError::EncryptedToken)))
    }

    /// Decrypt, then verify the inner JWS exactly like a plain token (RFC 9068 §4,
    /// RFC 7519 §5.2); a JWE with claims directly inside passes only when allowed, and
    /// only for symmetric key management. A JWE that no configured key opens goes to
    /// the introspection fallback, if any: its issuer can read it.
    #[cfg(feature = "jwe")]
    fn check_encrypted<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Result<Verified<C>, Check> {
        let Some(jwe) = &self.jwe else { return Err(self.not_a_jwt(Some(ValidationError::EncryptedToken))) };
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
            let compact = Compact::split(signed).map_err(Check::Invalid)?;
            return match self.check_signed(compact, now, span) {
                Err(Check::NotJwt(error)) => Err(Check::Invalid(error)),
                other => other,
            };
        }
        if !(jwe.accept_unsigned && symmetric) {
            return Err(ValidationError::UnsignedEncryptedToken.into());
        }
        let registered = Registered::parse(&payload)?;
        let iss = registered.iss.as_deref().ok_or(ValidationError::MissingClaim("iss"))?;
        let snapshot = self.issuers.load();
        let Some(issuer) = snapshot.get(iss) else { return Err(self.start_issuer(iss)) };
        let times = issuer.policy.check_claims(&registered, now, self.leeway)?;
        let binding = Binding::new(issuer.policy.dpop, registered.cnf.as_ref());
        let parts = parts_for::<C>(&registered, &payload);
        drop(registered);
        self.finish(Payload::Bytes(payload), parts, (times, binding), None)
    }

    /// A compact JWS: header rules, the issuer's key, the signature, then the claims.
    fn check_signed<C: DeserializeOwned + 'static>(
        &self,
        compact: Compact<'_>,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Result<Verified<C>, Check> {
        // A header seen on a verified token before passed these same checks: the
        // issuer's own rules below are applied to every token.
        let cached = self.headers.get(compact.header_b64);
        let (mut header_buf, parsed);
        let (alg, kid, typ) = match cached.as_deref().and_then(Option::as_deref) {
            Some(known) => (known.alg, known.kid.as_deref(), known.typ.as_deref()),
            None => {
                header_buf = HeaderBuf::new();
                parsed =
                    Header::parse(compact.header(&mut header_buf).map_err(Check::NotJwt)?).map_err(Check::NotJwt)?;
                let alg = parsed.algorithm()?;
                parsed.check_extensions()?;
                (alg, parsed.kid.as_deref(), parsed.typ.as_deref())
            }
        };
        let payload = compact.payload()?;
        let mut buf = SignatureBuf::new();
        let signature = compact.signature(&mut buf)?;
        // Checked for UTF-8 once, here: the claims keep the text.
        let payload = Payload::new(payload);
        let registered = payload.registered()?;

        // The issuer is picked by the unverified `iss`; nothing is trusted until the
        // signature verifies with that issuer's own keys. One lock-free load.
        let iss = registered.iss.as_deref().ok_or(ValidationError::MissingClaim("iss"))?;
        let snapshot = self.issuers.load();
        let Some(issuer) = snapshot.get(iss) else { return Err(self.start_issuer(iss)) };
        let keys = match &issuer.source {
            IssuerSource::Keys(keys) => keys,
            IssuerSource::Introspection(introspector) => {
                let introspector = introspector.clone();
                return Err(Check::Introspect(Introspection { introspector, issuer: Some(issuer.clone()) }));
            }
            IssuerSource::Undiscovered => return Err(self.start_issuer(iss)),
        };
        let policy = &*issuer.policy;
        if !policy.algorithms.contains(alg) {
            return Err(ValidationError::AlgorithmNotAllowed(alg).into());
        }
        policy.typ.check(typ)?;

        let guard = keys.load();
        let Some(key_set) = guard.as_deref() else {
            return Err(Check::NeedsKeys(keys.clone(), kid.map(Into::into)));
        };
        let key = verify_signature(key_set, kid, alg, compact.signing_input, signature).map_err(|e| match e {
            ValidationError::UnknownKey => Check::NeedsKeys(keys.clone(), kid.map(Into::into)),
            other => Check::Invalid(other),
        })?;
        drop(guard);
        if cached.is_none() {
            self.headers.insert(compact.header_b64, alg, kid, typ);
        }
        if !span.is_disabled() {
            span.record("iss", &*issuer.name);
            span.record("kid", kid);
            span.record("sub", registered.sub.as_deref());
            span.record("client_id", registered.client_id.as_deref());
            tracing::trace!(parent: span, %alg, "signature verified");
        }
        let times = policy.check_claims(&registered, now, self.leeway)?;
        let binding = Binding::new(policy.dpop, registered.cnf.as_ref());
        let parts = parts_for::<C>(&registered, payload.as_bytes());
        drop(registered);
        let signer = Signer { alg, key, issuer: issuer.clone() };
        self.finish(payload, parts, (times, binding), Some(signer))
    }

    /// The cold path of an issuer the live set has not ready: untrusted (refused with no
    /// network request), or to be started.
    #[cold]
    fn start_issuer(&self, iss: &str) -> Check {
        match self.issuers.start(iss) {
            Ok(()) => Check::Retry,
            Err(error) => Check::Invalid(error),
        }
    }

    /// Asks the introspection endpoint, then applies the same claims policy as to a
    /// JWT; see [`Pipeline::settle_answer`].
    async fn introspect<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        introspection: Introspection,
        now: Option<SystemTime>,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        let answer = introspection.introspector.introspect(token).await;
        self.settle_answer(answer, introspection.issuer.as_ref(), now.unwrap_or_else(SystemTime::now), span)
    }

    /// The application's claims, and what a cache needs to know about the token.
    fn finish<C: DeserializeOwned + 'static>(
        &self,
        payload: Payload,
        parts: Option<ClaimsParts>,
        (times, binding): (Times, Binding),
        signer: Option<Signer>,
    ) -> Result<Verified<C>, Check> {
        Ok(Verified {
            claims: claims_from(payload, parts)?,
            expires_at: times.expires_at,
            not_before: times.not_before,
            leeway: self.leeway,
            signer,
            binding,
        })
    }
}

/// The application's claims type. The crate's own [`Claims`] is built from the pass
/// the policy already made, with the payload moved in: one parse and no copy. Any other
/// type goes through serde.
fn claims_from<C: DeserializeOwned + 'static>(
    payload: Payload,
    parts: Option<ClaimsParts>,
) -> Result<C, ValidationError> {
    if let Some(parts) = parts {
        let raw = match payload {
            Payload::Text(text) => text,
            Payload::Bytes(bytes) => {
                String::from_utf8(bytes).map_err(|_| ValidationError::Malformed("payload is not UTF-8"))?
            }
        };
        let mut slot = Some(parts.with_raw(raw));
        let claims = (&mut slot as &mut dyn Any).downcast_mut::<Option<C>>().and_then(Option::take);
        return claims.ok_or(ValidationError::ClaimsType);
    }
    serde_json::from_slice(payload.as_bytes()).map_err(|_| ValidationError::ClaimsType)
}

/// A payload, as text when it is UTF-8 (checked once for both the policy's pass and
/// the claims that keep it).
enum Payload {
    Text(String),
    Bytes(Vec<u8>),
}

impl Payload {
    fn new(bytes: Vec<u8>) -> Payload {
        match String::from_utf8(bytes) {
            Ok(text) => Payload::Text(text),
            Err(error) => Payload::Bytes(error.into_bytes()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(text) => text.as_bytes(),
            Payload::Bytes(bytes) => bytes,
        }
    }

    fn registered(&self) -> Result<Registered<'_>, ValidationError> {
        match self {
            Payload::Text(text) => Registered::parse_text(text),
            Payload::Bytes(bytes) => Registered::parse(bytes),
        }
    }
}

/// The parts of [`Claims`] when `C` is `Claims`, taken before the payload is released.
fn parts_for<C: 'static>(registered: &Registered<'_>, payload: &[u8]) -> Option<ClaimsParts> {
    (TypeId::of::<C>() == TypeId::of::<Claims>()).then(|| ClaimsParts::new(registered, payload.as_ptr()))
}

impl Pipeline {
    /// A token to be introspected whose answer the introspector keeps is settled here,
    /// with no future: the same checks as [`Pipeline::introspect`] once the answer
    /// arrives. Without a kept answer, the introspection is pending.
    fn introspect_kept<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
        introspection: Introspection,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Attempt<C> {
        match introspection.introspector.cached_answer(token) {
            Some(answer) => Attempt::Done(self.settle_answer(answer, introspection.issuer.as_ref(), now, span)),
            None => Attempt::Pending(Pending::Introspect(introspection)),
        }
    }

    /// An introspection's answer, checked with the same claims policy as a JWT: `iss`
    /// (the issuer's, or any trusted one for the fallback), `aud`, `exp`, `nbf`, `iat`,
    /// as of `now`. The policy runs on every call (issuer sets are live and time moves);
    /// the application's claims are parsed once per answer when they are the crate's
    /// [`Claims`], and kept with it.
    fn settle_answer<C: DeserializeOwned + 'static>(
        &self,
        answer: Result<Introspected, IntrospectionError>,
        issuer: Option<&Arc<TrustedIssuer>>,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Result<Verified<C>, ValidationError> {
        let answer = answer?;
        let parsed = match answer.derived::<Parsed>() {
            Some(parsed) => parsed,
            None => {
                // A concurrent first use may have kept an equal parse already.
                answer.keep_derived(Parsed::new::<C>(answer.claims_json())?);
                answer.derived::<Parsed>().ok_or(ValidationError::ClaimsType)?
            }
        };
        let registered = &parsed.registered;
        let policy = match (issuer, registered.iss.as_deref()) {
            (Some(issuer), Some(iss)) if *issuer.name != *iss => return Err(ValidationError::UntrustedIssuer),
            (Some(issuer), _) => issuer.policy.clone(),
            (None, Some(iss)) => self.issuers.policy_for(iss).ok_or(ValidationError::UntrustedIssuer)?,
            // RFC 7662 §2.2: `iss` is optional; the endpoint we were configured with
            // vouches for the token.
            (None, None) => self.issuers.defaults().clone(),
        };
        let times = policy.check_claims(registered, now, self.leeway)?;
        let binding = Binding::new(policy.dpop, registered.cnf.as_ref());
        if !span.is_disabled() {
            span.record("iss", registered.iss.as_deref());
            span.record("sub", registered.sub.as_deref());
            span.record("client_id", registered.client_id.as_deref());
            tracing::trace!(parent: span, "token introspected");
        }
        let claims = match parsed.claims::<C>() {
            Some(claims) => claims,
            None => {
                let payload = answer.claims_json().as_bytes();
                let parsed_again = Registered::parse(payload)?;
                let parts = parts_for::<C>(&parsed_again, payload);
                drop(parsed_again);
                let claims = claims_from::<C>(Payload::Text(answer.claims_json().to_owned()), parts)?;
                parsed.keep_claims(&claims);
                claims
            }
        };
        Ok(Verified {
            claims,
            expires_at: times.expires_at,
            not_before: times.not_before,
            leeway: self.leeway,
            signer: None,
            binding,
        })
    }
}

/// What an introspection answer parses to, whatever the policy or the time: kept with
/// the answer, so that a hit parses nothing.
struct Parsed {
    /// The registered claims, owned: `iss`, `aud`, `exp`, `nbf`, `iat`, and `sub` and
    /// `client_id` for the span.
    registered: Registered<'static>,
    /// The application's claims when they are the crate's [`Claims`] (cheap to clone);
    /// other types are parsed on each use.
    claims: OnceLock<Claims>,
}

impl Parsed {
    fn new<C: 'static>(json: &str) -> Result<Parsed, ValidationError> {
        let borrowed = Registered::parse(json.as_bytes())?;
        let parsed = Parsed { registered: borrowed.to_static(), claims: OnceLock::new() };
        if TypeId::of::<C>() == TypeId::of::<Claims>() {
            let parts = ClaimsParts::new(&borrowed, json.as_ptr());
            drop(borrowed);
            if let Ok(claims) = claims_from::<Claims>(Payload::Text(json.to_owned()), Some(parts)) {
                let _ = parsed.claims.set(claims);
            }
        }
        Ok(parsed)
    }

    /// The kept [`Claims`], when `C` is `Claims`.
    fn claims<C: 'static>(&self) -> Option<C> {
        let mut slot = Some(self.claims.get()?.clone());
        (&mut slot as &mut dyn Any).downcast_mut::<Option<C>>().and_then(Option::take)
    }

    /// Keeps `claims` when they are [`Claims`].
    fn keep_claims<C: 'static>(&self, claims: &C) {
        if let Some(claims) = (claims as &dyn Any).downcast_ref::<Claims>() {
            let _ = self.claims.set(claims.clone());
        }
    }
}

#[cfg(test)]
mod introspection_tests;
