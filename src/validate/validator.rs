//! The public [`Validator`]: a cheap handle on the pipeline, and its entry points.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use super::ValidationError;
use super::binding::Presentation;
use super::claims::Claims;
use super::issuer_set::Issuers;
use super::pipeline::{Attempt, Pending, Pipeline, Verified};
use crate::telemetry::{self, Outcome, Reason};
use crate::uri::ResourceId;

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
///
/// Built with [`Validator::builder`].
pub struct Validator<C = Claims> {
    pipeline: Arc<Pipeline>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for Validator<C> {
    fn clone(&self) -> Self {
        Validator { pipeline: self.pipeline.clone(), _claims: PhantomData }
    }
}

impl<C> std::fmt::Debug for Validator<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pipeline = &*self.pipeline;
        let defaults = pipeline.issuers.defaults();
        f.debug_struct("Validator")
            .field("issuers", &pipeline.issuers)
            .field("audiences", &defaults.audiences)
            .field("resource", &pipeline.resource.as_ref().map(ResourceId::as_str))
            .field("algorithms", &defaults.algorithms.iter().collect::<Vec<_>>())
            .field("leeway_secs", &pipeline.leeway)
            .field("typ", &defaults.typ)
            .field("dpop", &defaults.dpop)
            .field("max_token_size", &pipeline.max_token_size)
            .field("introspection_fallback", &pipeline.fallback.is_some())
            .finish()
    }
}

impl<C> Validator<C> {
    /// What the builder hands over.
    pub(super) fn from_pipeline(pipeline: Pipeline) -> Self {
        Validator { pipeline: Arc::new(pipeline), _claims: PhantomData }
    }

    /// The live set of trusted issuers: add and remove issuers while requests are
    /// served.
    pub fn issuers(&self) -> &Issuers {
        &self.pipeline.issuers
    }

    /// This server's resource identifier, as configured with
    /// [`ValidatorBuilder::resource`](super::ValidatorBuilder::resource).
    pub fn resource(&self) -> Option<&str> {
        self.pipeline.resource.as_ref().map(ResourceId::as_str)
    }

    pub(crate) fn resource_id(&self) -> Option<&ResourceId> {
        self.pipeline.resource.as_ref()
    }

    /// The DPoP policy of issuers that set none of their own.
    pub(crate) fn default_dpop_mode(&self) -> super::DpopMode {
        self.pipeline.issuers.defaults().dpop
    }
}

impl<C: DeserializeOwned + 'static> Validator<C> {
    /// Validates a token, waiting for one key refresh when its `kid` is unknown (a
    /// rotation) or no keys are loaded yet, and for the introspection endpoint when the
    /// token is to be introspected.
    ///
    /// The refresh is shared with every other request that needs it and happens at
    /// most once per cooldown, so a flood of made-up `kid`s costs the issuer nothing.
    ///
    /// The token is taken as a bearer token: one bound to a key (`cnf`: DPoP or a
    /// client certificate) is refused with [`ValidationError::SenderConstrained`] or
    /// [`ValidationError::CertificateMismatch`], and any token with
    /// [`ValidationError::DpopRequired`] when its issuer requires DPoP. Proofs of
    /// possession are checked by [`BearerAuthLayer`](crate::BearerAuthLayer).
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
            Attempt::Pending(pending) => self.settle(token, pending, now, &span, Presentation::default()).await,
        };
        verified.map(|verified| verified.claims)
    }

    /// Validates a token with the keys loaded now, never waiting for the network.
    ///
    /// An unknown `kid` gives [`ValidationError::UnknownKey`] and no keys at all gives
    /// [`ValidationError::KeysUnavailable`]; neither triggers a refresh. A token that
    /// is to be introspected is judged by the answer its introspector keeps for it, and
    /// without one gives [`ValidationError::IntrospectionRequired`].
    pub fn validate_with_current_keys(&self, token: &str) -> Result<C, ValidationError> {
        match self.attempt(token, SystemTime::now(), &tracing::Span::none()) {
            Attempt::Done(result) => result.map(|verified| verified.claims),
            Attempt::Pending(pending) => Err(pending.unsettled()),
        }
    }

    /// [`attempt_presented`](Self::attempt_presented) for a bearer token.
    pub(crate) fn attempt(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Attempt<C> {
        self.attempt_presented(token, now, span, Presentation::default())
    }

    /// One synchronous pass over the token; see [`Pipeline::attempt`]; then the token's
    /// binding against how it was `presented`. A pass that ends here is counted in the
    /// metrics; a pending one is counted when it settles.
    pub(crate) fn attempt_presented(
        &self,
        token: &str,
        now: SystemTime,
        span: &tracing::Span,
        presented: Presentation,
    ) -> Attempt<C> {
        let timer = telemetry::Timer::sampled();
        let attempt = match self.pipeline.attempt(token, now, span) {
            Attempt::Done(Ok(verified)) => Attempt::Done(verified.presented(presented)),
            other => other,
        };
        if let Attempt::Done(result) = &attempt {
            let (outcome, reason) = labels(result.as_ref().map(|_| ()));
            telemetry::validation(outcome, reason, timer.elapsed());
        }
        attempt
    }

    /// The slow paths; see [`Pipeline::settle`].
    pub(crate) async fn settle(
        &self,
        token: &str,
        pending: Pending,
        now: Option<SystemTime>,
        span: &tracing::Span,
        presented: Presentation,
    ) -> Result<Verified<C>, ValidationError> {
        let timer = telemetry::Timer::start();
        let result = self.pipeline.settle(token, pending, now, span).await.and_then(|v| v.presented(presented));
        let (outcome, reason) = labels(result.as_ref().map(|_| ()));
        telemetry::validation(outcome, reason, timer.elapsed());
        result
    }
}

/// The metric labels of a validation's result.
fn labels(result: Result<(), &ValidationError>) -> (Outcome, Reason) {
    use ValidationError as E;
    let Err(error) = result else { return (Outcome::Accepted, Reason::None) };
    let outcome = if error.is_server_error() { Outcome::Unavailable } else { Outcome::Rejected };
    let reason = match error {
        E::TokenTooLarge | E::Malformed(_) | E::EncryptedToken | E::UnencodedPayload => Reason::Malformed,
        E::AlgorithmNone
        | E::UnsupportedAlgorithm
        | E::AlgorithmNotAllowed(_)
        | E::UnsupportedCriticalHeader
        | E::InvalidType => Reason::Header,
        E::UnknownKey => Reason::UnknownKey,
        E::KeyAlgorithmMismatch | E::InvalidSignature => Reason::Signature,
        E::UntrustedIssuer => Reason::Issuer,
        E::InvalidAudience => Reason::Audience,
        E::MissingClaim(_) | E::InvalidClaim(_) | E::ClaimsType => Reason::Claims,
        E::Expired | E::NotYetValid | E::IssuedInFuture => Reason::Time,
        E::UnsupportedEncryption(_)
        | E::NoDecryptionKey
        | E::DecryptionFailed
        | E::UnsignedEncryptedToken
        | E::EncryptionRequired => Reason::Encryption,
        E::KeysUnavailable => Reason::KeysUnavailable,
        E::IssuerLimit => Reason::IssuerLimit,
        E::Introspection(_) | E::IntrospectionRequired => Reason::Introspection,
        E::SenderConstrained | E::ProofKeyMismatch | E::CertificateMismatch | E::DpopRequired | E::DpopNotAllowed => {
            Reason::SenderConstrained
        }
    };
    (outcome, reason)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use aws_lc_rs::hmac;
    use base64::Engine as _;

    use super::*;
    use crate::introspect::Introspector;
    use crate::jwk::B64;
    use crate::jwks::KeyStore;
    use crate::validate::pipeline::Pending;
    use crate::validate::{Claims, Issuer, IssuerPattern, TypPolicy};
    use crate::{Algorithm, Jwk, KeySet, Secret};

    pub(crate) const ISSUER: &str = "https://idp.example";
    pub(crate) const AUDIENCE: &str = "api";
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";
    /// 2100-01-01.
    const EXP: i64 = 4_102_444_800;

    /// An HS256 token: `header` and `claims` as JSON, signed with `secret`.
    pub(crate) fn sign(secret: &[u8], header: &str, claims: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    }

    /// A token from `ISSUER` for `AUDIENCE`, kid `k1`, signed with the test secret.
    pub(crate) fn token() -> String {
        token_from(ISSUER, r#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#)
    }

    fn token_from(iss: &str, header: &str) -> String {
        let claims = format!(r#"{{"iss":"{iss}","sub":"alice","aud":"{AUDIENCE}","exp":{EXP},"scope":"read"}}"#);
        sign(SECRET, header, &claims)
    }

    pub(crate) fn keys(secret: &[u8], kid: &str) -> KeyStore {
        let jwk = Jwk::hmac(Algorithm::HS256, &Secret::new(secret), Some(kid)).unwrap();
        KeyStore::from_key_set(KeySet::from_keys([jwk]))
    }

    /// Trusts `ISSUER` with the test secret (kid `k1`), HS256 only.
    pub(crate) fn validator() -> Validator {
        Validator::builder()
            .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap()
    }

    fn attempt(validator: &Validator, token: &str) -> Attempt<Claims> {
        validator.attempt(token, SystemTime::now(), &tracing::Span::none())
    }

    fn error(validator: &Validator, token: &str) -> ValidationError {
        match attempt(validator, token) {
            Attempt::Done(Err(e)) => e,
            Attempt::Done(Ok(_)) => panic!("accepted"),
            Attempt::Pending(_) => panic!("pending"),
        }
    }

    fn introspector() -> Introspector {
        Introspector::builder("http://127.0.0.1:9/introspect", "rs", "secret").build().unwrap()
    }

    #[test]
    fn a_valid_token_is_done_with_its_claims_times_and_signer() {
        let Attempt::Done(Ok(verified)) = attempt(&validator(), &token()) else { panic!("not accepted") };
        assert_eq!(verified.claims.subject(), Some("alice"));
        assert!(verified.claims.has_scope("read"));
        assert_eq!((verified.expires_at, verified.not_before, verified.leeway), (EXP, None, 60));
        let signer = verified.signer.expect("signed");
        assert_eq!((signer.alg, signer.key.kid()), (Algorithm::HS256, Some("k1")));
        assert_eq!(&*signer.issuer.name, ISSUER);
        assert!(signer.keys().is_some());
    }

    #[test]
    fn an_unknown_kid_is_pending_on_that_issuers_keys() {
        let validator = validator();
        let token = token_from(ISSUER, r#"{"alg":"HS256","kid":"new"}"#);
        let Attempt::Pending(Pending::Keys(store, _)) = attempt(&validator, &token) else {
            panic!("not pending on keys")
        };
        assert!(store.is_loaded());
        assert_eq!(validator.validate_with_current_keys(&token).unwrap_err(), ValidationError::UnknownKey);
    }

    #[test]
    fn the_issuer_is_chosen_by_iss_and_verifies_with_its_own_keys() {
        let validator = Validator::builder()
            .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
            .issuer_with_keys("https://other.example", keys(OTHER_SECRET, "k1"))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap();
        assert!(matches!(attempt(&validator, &token()), Attempt::Done(Ok(_))));
        // Same kid, but signed with the first issuer's secret while naming the other.
        let forged = token_from("https://other.example", r#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(error(&validator, &forged), ValidationError::InvalidSignature);
        // Neither named nor matching a pattern: refused before any network request.
        let stranger = token_from("https://stranger.example", r#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(error(&validator, &stranger), ValidationError::UntrustedIssuer);
        let no_iss = sign(SECRET, r#"{"alg":"HS256","kid":"k1"}"#, r#"{"aud":"api","exp":4102444800}"#);
        assert_eq!(error(&validator, &no_iss), ValidationError::MissingClaim("iss"));
        assert!(!validator.issuers().contains("https://stranger.example"));
    }

    #[test]
    fn the_algorithm_must_be_in_the_issuers_allow_list() {
        let validator = Validator::builder()
            .issuer(Issuer::new(ISSUER).keys(keys(SECRET, "k1")).algorithms([Algorithm::HS384]))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap();
        assert_eq!(error(&validator, &token()), ValidationError::AlgorithmNotAllowed(Algorithm::HS256));
        // Asymmetric by default: HS256 is not allowed without being listed.
        let default =
            Validator::builder().issuer_with_keys(ISSUER, keys(SECRET, "k1")).audience(AUDIENCE).build().unwrap();
        assert_eq!(error(&default, &token()), ValidationError::AlgorithmNotAllowed(Algorithm::HS256));
        let none = token_from(ISSUER, r#"{"alg":"none"}"#);
        assert_eq!(error(&self::validator(), &none), ValidationError::AlgorithmNone);
    }

    #[test]
    fn the_typ_policy_is_the_issuers() {
        let jwt = token_from(ISSUER, r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#);
        assert!(matches!(attempt(&validator(), &jwt), Attempt::Done(Ok(_))));
        let strict = Validator::builder()
            .issuer(Issuer::new(ISSUER).keys(keys(SECRET, "k1")).typ(TypPolicy::Rfc9068))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap();
        assert_eq!(error(&strict, &jwt), ValidationError::InvalidType);
        assert!(matches!(attempt(&strict, &token()), Attempt::Done(Ok(_))));
        let dpop = token_from(ISSUER, r#"{"alg":"HS256","kid":"k1","typ":"dpop+jwt"}"#);
        assert_eq!(error(&validator(), &dpop), ValidationError::InvalidType);
    }

    #[test]
    fn an_introspected_issuer_or_an_opaque_token_is_pending_on_introspection() {
        let validator = Validator::builder()
            .issuer(Issuer::new(ISSUER).introspection(introspector()))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap();
        let Attempt::Pending(Pending::Introspect(introspection)) = attempt(&validator, &token()) else {
            panic!("not pending on introspection")
        };
        assert_eq!(introspection.issuer.as_deref().map(|i| &*i.name), Some(ISSUER));
        assert_eq!(validator.validate_with_current_keys(&token()).unwrap_err(), ValidationError::IntrospectionRequired);

        // Opaque tokens: introspected with a fallback, malformed without.
        assert!(matches!(error(&self::validator(), "opaque"), ValidationError::Malformed(_)));
        let fallback = Validator::builder()
            .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .introspection_fallback(introspector())
            .build()
            .unwrap();
        let Attempt::Pending(Pending::Introspect(introspection)) = attempt(&fallback, "opaque") else {
            panic!("not pending on introspection")
        };
        assert!(introspection.issuer.is_none());
        // A JWT with a bad signature is not handed to the fallback.
        let bad = token_from(ISSUER, r#"{"alg":"HS256","kid":"k1"}"#).replace(".", ".x");
        assert!(matches!(attempt(&fallback, &bad), Attempt::Done(Err(_))));
    }

    #[tokio::test]
    async fn a_matching_issuer_is_started_then_pending_on_its_first_keys() {
        let validator = Validator::builder()
            .issuer_pattern(IssuerPattern::template("http://127.0.0.1:9/{tenant}").unwrap())
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .build()
            .unwrap();
        let token = token_from("http://127.0.0.1:9/acme", r#"{"alg":"HS256","kid":"k1"}"#);
        let Attempt::Pending(Pending::Keys(store, _)) = attempt(&validator, &token) else { panic!("not pending") };
        assert!(!store.is_loaded());
        assert_eq!(validator.issuers().discovered(), 1);
        assert_eq!(validator.validate_with_current_keys(&token).unwrap_err(), ValidationError::KeysUnavailable);
        let elsewhere = token_from("http://127.0.0.1:9/a/b", r#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(error(&validator, &elsewhere), ValidationError::UntrustedIssuer);
    }

    #[test]
    fn size_and_time_checks_come_before_and_after_the_signature() {
        let small = Validator::builder()
            .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .max_token_size(10)
            .build()
            .unwrap();
        assert_eq!(error(&small, &token()), ValidationError::TokenTooLarge);
        let validator = validator();
        let later = UNIX_EPOCH + Duration::from_secs(EXP as u64 + 60);
        let Attempt::Done(Err(e)) = validator.attempt(&token(), later, &tracing::Span::none()) else {
            panic!("not refused")
        };
        assert_eq!(e, ValidationError::Expired);
        let other_aud =
            sign(SECRET, r#"{"alg":"HS256","kid":"k1"}"#, &format!(r#"{{"iss":"{ISSUER}","aud":"else","exp":{EXP}}}"#));
        assert_eq!(error(&validator, &other_aud), ValidationError::InvalidAudience);
    }

    #[test]
    fn the_resource_is_the_audience_after_normalisation_unless_audiences_are_set() {
        // Each builder is started here: naming the builder's type would tie this file to it.
        macro_rules! resource {
            ($builder:expr) => {
                $builder.issuer_with_keys(ISSUER, keys(SECRET, "k1")).algorithms([Algorithm::HS256]).build().unwrap()
            };
        }
        let for_aud = |aud: &str| {
            let claims = format!(
                r#"{{"iss":"{ISSUER}","sub":"alice","aud":{aud},"exp":{EXP},"acr":"gold","auth_time":1700000000}}"#
            );
            sign(SECRET, r#"{"alg":"HS256","kid":"k1"}"#, &claims)
        };
        let mcp = resource!(Validator::builder().resource("https://API.example.com:443/mcp"));
        assert_eq!(mcp.resource(), Some("https://API.example.com:443/mcp"));
        for ok in [
            r#""https://api.example.com/mcp""#,
            r#"["other","HTTPS://api.EXAMPLE.com/mcp"]"#,
            r#""https://API.example.com:443/mcp""#,
        ] {
            let claims = mcp.validate_with_current_keys(&for_aud(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!((claims.acr(), claims.auth_time()), (Some("gold"), Some(1_700_000_000)));
        }
        for refused in [
            r#""https://api.example.com/mcp/""#,
            r#""https://api.example.com/MCP""#,
            r#""https://api.example.com""#,
            r#""http://api.example.com/mcp""#,
            r#""https://api.example.com/mcp?x""#,
            r#""api""#,
        ] {
            assert_eq!(error(&mcp, &for_aud(refused)), ValidationError::InvalidAudience, "{refused}");
        }
        let root = resource!(Validator::builder().resource("https://api.example.com"));
        assert!(root.validate_with_current_keys(&for_aud(r#""https://api.example.com/""#)).is_ok());
        // Audiences set: they alone are accepted, and the resource is still described.
        let both = resource!(Validator::builder().resource("https://api.example.com/mcp").audience("api"));
        assert_eq!(both.resource(), Some("https://api.example.com/mcp"));
        assert!(both.validate_with_current_keys(&for_aud(r#""api""#)).is_ok());
        assert_eq!(error(&both, &for_aud(r#""https://api.example.com/mcp""#)), ValidationError::InvalidAudience);
        // Unusable resources fail the build.
        for (bad, want) in
            [("http://api.example.com/mcp", "unusable url"), ("https://api.example.com/#a", "invalid url")]
        {
            let error =
                Validator::builder().issuer_with_keys(ISSUER, keys(SECRET, "k1")).resource(bad).build().unwrap_err();
            assert_eq!(error.to_string(), want, "{bad}");
        }
    }

    #[test]
    fn acr_and_auth_time_are_read_strictly() {
        let validator = validator();
        let with = |extra: &str| {
            let claims = format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{EXP}{extra}}}"#);
            sign(SECRET, r#"{"alg":"HS256","kid":"k1"}"#, &claims)
        };
        let claims = validator.validate_with_current_keys(&with("")).unwrap();
        assert_eq!((claims.acr(), claims.auth_time()), (None, None));
        for (extra, claim) in [
            (r#","acr":1"#, "acr"),
            (r#","acr":"a","acr":"b""#, "acr"),
            (r#","auth_time":"1700000000""#, "auth_time"),
            (r#","auth_time":1,"auth_time":2"#, "auth_time"),
        ] {
            assert_eq!(error(&validator, &with(extra)), ValidationError::InvalidClaim(claim), "{extra}");
        }
    }

    #[test]
    fn claims_of_another_type_go_through_serde_with_the_same_checks() {
        #[derive(Debug, serde::Deserialize)]
        struct Mine {
            sub: String,
            scope: String,
        }
        let validator = Validator::builder()
            .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .claims::<Mine>()
            .build()
            .unwrap();
        let mine = validator.validate_with_current_keys(&token()).unwrap();
        assert_eq!((mine.sub.as_str(), mine.scope.as_str()), ("alice", "read"));
        let no_scope = sign(
            SECRET,
            r#"{"alg":"HS256","kid":"k1"}"#,
            &format!(r#"{{"iss":"{ISSUER}","aud":"api","exp":{EXP},"sub":"bob"}}"#),
        );
        assert_eq!(validator.validate_with_current_keys(&no_scope).unwrap_err(), ValidationError::ClaimsType);
    }
}
