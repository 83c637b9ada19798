//! Opaque access tokens from an independent IdP, node-oidc-provider in its opaque mode
//! (`IDP_OPAQUE=1` for `tests/oidc/idp.mjs`), accepted end to end by `BearerAuthLayer`
//! through RFC 7662 introspection at the discovered endpoint.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(feature = "testing", feature = "axum"))]

use reqwest::StatusCode;

use crate::support;
use crate::support::api::claims_api;
use support::oidc_idp::{
    API, API_OPAQUE, CLIENT, Error, INTROSPECT_CLIENT, INTROSPECT_POST_CLIENT, Idp, Mode, TestResult, call, http_client,
};
use tower_oauth::introspect::{AuthMethod, IntrospectionError, Introspector};
use tower_oauth::{BearerAuthLayer, Validator};

fn introspector(idp: &Idp, client: (&str, &str), method: AuthMethod) -> Result<Introspector, Error> {
    Ok(Introspector::discover(&idp.issuer, client.0, client.1).auth_method(method).build()?)
}

async fn introspections(idp: &Idp) -> Result<u64, Error> {
    Ok(idp.stats().await?["introspection"].as_u64().ok_or("no introspection count")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_opaque_tokens_introspect_with_basic_and_post() -> TestResult {
    let idp = Idp::start_in(Mode::Opaque).await?;
    let token = idp.token(CLIENT, API_OPAQUE, "read write").await?;
    assert!(!token.contains('.'), "an opaque token: {token}");
    for (client, method) in
        [(INTROSPECT_CLIENT, AuthMethod::ClientSecretBasic), (INTROSPECT_POST_CLIENT, AuthMethod::ClientSecretPost)]
    {
        let introspected = introspector(&idp, client, method)?.introspect(&token).await?;
        let claims: serde_json::Value = serde_json::from_str(introspected.claims_json())?;
        assert_eq!(claims["active"], true, "{claims}");
        assert_eq!(claims["iss"], idp.issuer.as_str(), "{claims}");
        assert_eq!(claims["aud"], API_OPAQUE, "{claims}");
        assert_eq!(claims["client_id"], CLIENT.0, "{claims}");
        assert_eq!(claims["scope"], "read write", "{claims}");
        assert_eq!(claims["exp"], introspected.expires_at().ok_or("an exp")?);
    }
    let unknown = introspector(&idp, INTROSPECT_CLIENT, AuthMethod::ClientSecretBasic)?;
    assert_eq!(unknown.introspect("not-a-token-this-idp-issued").await, Err(IntrospectionError::Inactive));

    let wrong = Introspector::discover(&idp.issuer, INTROSPECT_CLIENT.0, "wrong-secret").build()?;
    let error = wrong.introspect(&token).await.unwrap_err();
    assert!(matches!(error, IntrospectionError::Rejected { status, .. } if status == 401), "{error:?}");
    assert!(!error.to_string().contains("wrong-secret") && !error.to_string().contains(&token));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_layer_accepts_opaque_tokens_through_introspection_and_jwts_locally() -> TestResult {
    let idp = Idp::start_in(Mode::Opaque).await?;
    let validator = Validator::builder()
        .issuer(idp.issuer.as_str())
        .audience(API)
        .audience(API_OPAQUE)
        .introspection_fallback(introspector(&idp, INTROSPECT_CLIENT, AuthMethod::ClientSecretBasic)?)
        .build()?;
    let url = claims_api(BearerAuthLayer::new(validator)).await;
    let http = http_client();

    let opaque = idp.token(CLIENT, API_OPAQUE, "read").await?;
    for _ in 0..3 {
        let reply = call(&http, &url, Some(&opaque)).await?;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
        assert_eq!(reply.json["client_id"], CLIENT.0, "{}", reply.json);
        assert_eq!(reply.json["scope"], "read", "{}", reply.json);
        assert_eq!(reply.json["iss"], idp.issuer.as_str(), "{}", reply.json);
    }
    assert_eq!(introspections(&idp).await?, 1, "one introspection, then the cache");

    // A JWT of the same IdP is verified locally: no introspection.
    let jwt = idp.token(CLIENT, API, "read").await?;
    assert_eq!(call(&http, &url, Some(&jwt)).await?.status, StatusCode::OK);
    assert_eq!(introspections(&idp).await?, 1);

    // An opaque token the IdP does not know: 401 invalid_token, not 503.
    let reply = call(&http, &url, Some("made-up-opaque-token")).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.challenge.as_deref().is_some_and(|c| c.contains("invalid_token")), "{:?}", reply.challenge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspected_claims_meet_the_same_audience_policy_and_bad_credentials_give_503() -> TestResult {
    let idp = Idp::start_in(Mode::Opaque).await?;
    let opaque = idp.token(CLIENT, API_OPAQUE, "read").await?;
    let http = http_client();

    // Active at the IdP, but for another API than this one.
    let other_api = Validator::builder()
        .issuer(idp.issuer.as_str())
        .audience(API)
        .introspection_fallback(introspector(&idp, INTROSPECT_CLIENT, AuthMethod::ClientSecretBasic)?)
        .build()?;
    let reply = call(&http, &claims_api(BearerAuthLayer::new(other_api)).await, Some(&opaque)).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.challenge);

    // The resource server's own credentials are wrong: its fault, so 503, never 401.
    let misconfigured = Validator::builder()
        .issuer(idp.issuer.as_str())
        .audience(API_OPAQUE)
        .introspection_fallback(Introspector::discover(&idp.issuer, INTROSPECT_CLIENT.0, "wrong-secret").build()?)
        .build()?;
    let reply = call(&http, &claims_api(BearerAuthLayer::new(misconfigured)).await, Some(&opaque)).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}
