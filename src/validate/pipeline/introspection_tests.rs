//! The introspection path: a kept answer settled at once, like an awaited one.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::introspect::{IntrospectionError, Introspector};
use crate::validate::validator::tests::{AUDIENCE, ISSUER, keys};
use crate::{Algorithm, Validator};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// 2100-01-01.
const EXP: i64 = 4_102_444_800;

fn fallback<C>(introspector: &Introspector, builder: crate::validate::ValidatorBuilder<C>) -> Validator<C> {
    builder
        .issuer_with_keys(ISSUER, keys(SECRET, "k1"))
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .introspection_fallback(introspector.clone())
        .build()
        .unwrap()
}

fn answer(iss: &str) -> Result<Introspected, IntrospectionError> {
    Introspector::answer(&format!(
        r#"{{"active":true,"iss":"{iss}","sub":"alice","aud":"{AUDIENCE}","exp":{EXP},"scope":"read"}}"#
    ))
}

/// The [`Claims`] kept with an answer.
fn kept_claims(answer: &Result<Introspected, IntrospectionError>) -> Option<Claims> {
    let parsed = answer.as_ref().unwrap().derived::<Parsed>()?;
    parsed.claims.get().cloned()
}

#[tokio::test]
async fn a_kept_answer_is_settled_at_once_exactly_like_an_awaited_one() {
    let introspector = Introspector::builder("http://127.0.0.1:9/introspect", "rs", "secret").build().unwrap();
    let validator = fallback(&introspector, Validator::builder());
    let (span, now) = (tracing::Span::none(), SystemTime::now());
    let Attempt::Pending(awaited) = validator.attempt("opaque", now, &span) else { panic!("nothing is kept yet") };

    let active = answer(ISSUER);
    introspector.keep("opaque", active.clone()).await;
    let Attempt::Done(Ok(first)) = validator.attempt("opaque", now, &span) else { panic!("not settled at once") };
    assert!(first.signer.is_none(), "no cache may keep an introspected token");
    assert_eq!((first.claims.subject(), first.expires_at, first.not_before), (Some("alice"), EXP, None));
    assert!(first.claims.has_scope("read"));
    // The parsed claims are kept with the answer, and served again.
    assert!(kept_claims(&active).is_some());
    let Attempt::Done(Ok(again)) = validator.attempt("opaque", now, &span) else { panic!("not settled at once") };
    assert_eq!(serde_json::to_string(&again.claims).unwrap(), serde_json::to_string(&first.claims).unwrap());
    // The awaited path gives the same.
    let settled = validator.settle("opaque", awaited, Some(now), &span, Presentation::default()).await.unwrap();
    assert_eq!(serde_json::to_string(&settled.claims).unwrap(), serde_json::to_string(&first.claims).unwrap());
    assert_eq!((settled.expires_at, settled.not_before), (first.expires_at, first.not_before));

    // The policy runs on every hit: time moves.
    let later = UNIX_EPOCH + Duration::from_secs(EXP as u64 + 3600);
    assert!(matches!(validator.attempt("opaque", later, &span), Attempt::Done(Err(ValidationError::Expired))));
    assert_eq!(validator.validate_at("opaque", later).await.unwrap_err(), ValidationError::Expired);

    // An answer naming an untrusted issuer, and a kept inactive answer: the same
    // errors as the awaited path.
    introspector.keep("other", answer("https://other.example")).await;
    assert!(matches!(validator.attempt("other", now, &span), Attempt::Done(Err(ValidationError::UntrustedIssuer))));
    let Attempt::Pending(awaited) = validator.attempt("revoked", now, &span) else { panic!("nothing is kept yet") };
    introspector.keep("revoked", Err(IntrospectionError::Inactive)).await;
    let Attempt::Done(Err(at_once)) = validator.attempt("revoked", now, &span) else { panic!("not settled") };
    let awaited = validator.settle("revoked", awaited, Some(now), &span, Presentation::default()).await.unwrap_err();
    assert_eq!(at_once, awaited);
    assert_eq!(at_once, ValidationError::from(IntrospectionError::Inactive));

    // A forgotten answer is asked for again.
    introspector.forget("opaque");
    assert!(matches!(validator.attempt("opaque", now, &span), Attempt::Pending(Pending::Introspect(_))));
    assert_eq!(introspector.requests(), 0);
}

#[tokio::test]
async fn other_claims_types_are_parsed_from_a_kept_answer_each_time() {
    let introspector = Introspector::builder("http://127.0.0.1:9/introspect", "rs", "secret").build().unwrap();
    let validator = fallback(&introspector, Validator::builder().claims::<serde_json::Value>());
    let active = answer(ISSUER);
    introspector.keep("opaque", active.clone()).await;
    let Attempt::Done(Ok(verified)) = validator.attempt("opaque", SystemTime::now(), &tracing::Span::none()) else {
        panic!("not settled at once")
    };
    assert_eq!(verified.claims["sub"], "alice");
    // The registered claims are kept; the claims of another type are not.
    assert!(kept_claims(&active).is_none());
    // A validator of `Claims` sharing the introspector keeps its own parse.
    let claims = fallback(&introspector, Validator::builder());
    assert!(matches!(claims.attempt("opaque", SystemTime::now(), &tracing::Span::none()), Attempt::Done(Ok(_))));
    assert!(kept_claims(&active).is_some());
    let Attempt::Done(Ok(again)) = validator.attempt("opaque", SystemTime::now(), &tracing::Span::none()) else {
        panic!("not settled at once")
    };
    assert_eq!(again.claims["sub"], "alice");
}

#[tokio::test]
async fn an_introspected_token_bound_to_a_key_is_not_a_bearer_token() {
    let introspector = Introspector::builder("http://127.0.0.1:9/introspect", "rs", "secret").build().unwrap();
    let validator = fallback(&introspector, Validator::builder());
    let bound = Introspector::answer(&format!(
        r#"{{"active":true,"iss":"{ISSUER}","sub":"alice","aud":"{AUDIENCE}","exp":{EXP},"cnf":{{"jkt":"abc"}}}}"#
    ));
    introspector.keep("bound", bound).await;
    let (span, now) = (tracing::Span::none(), SystemTime::now());
    assert!(matches!(validator.attempt("bound", now, &span), Attempt::Done(Err(ValidationError::SenderConstrained))));
}
