//! The token client against an independent IdP: node-oidc-provider (`tests/oidc/idp.mjs`,
//! provisioned by `scripts/test`). Its client `svc:special` has the secret
//! `p@ss:w+rd%/ &=`, which only authenticates when id and secret are form-urlencoded
//! before Basic (RFC 6749 §2.3.1); the endpoint is found by discovery.
#![cfg(feature = "testing")]

use std::time::Duration;

use tower_oauth::Validator;
use tower_oauth::client::{ErrorCode, TokenCache, TokenEndpoint};

use crate::support;
use support::oidc_idp::{API, IdpProcess, SPECIAL_CLIENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_full_of_reserved_characters_authenticates_with_basic() {
    let idp = IdpProcess::start().await.expect("the IdP starts");
    let endpoint = TokenEndpoint::discover(&idp.issuer, SPECIAL_CLIENT.0, SPECIAL_CLIENT.1)
        .resource(API)
        .scope("read admin")
        .build()
        .unwrap();
    let cache = TokenCache::new(endpoint).unwrap();
    let token = cache.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(600));

    let validator = Validator::builder().issuer(&idp.issuer).audience(API).build().unwrap();
    let claims = validator.validate(token.expose()).await.unwrap();
    assert_eq!(claims.client_id(), Some(SPECIAL_CLIENT.0));
    assert!(claims.has_scope("read") && claims.has_scope("admin"));
    assert!(!claims.has_scope("write"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_typed_invalid_client_from_an_independent_server() {
    let idp = IdpProcess::start().await.expect("the IdP starts");
    let mut wrong =
        TokenEndpoint::discover(&idp.issuer, SPECIAL_CLIENT.0, "p@ss:w+rd%/ &").resource(API).build().unwrap();
    let error = wrong.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidClient), "{error:?}");
    assert!(!error.to_string().contains("p@ss"));
}
