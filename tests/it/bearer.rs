//! `BearerAuthLayer` in an axum server on 127.0.0.1, driven by a real HTTP client with
//! tokens from the test issuer. Every rejection checks the status and the exact
//! `WWW-Authenticate`.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tower_oauth::axum::Authenticated;
use tower_oauth::bearer::{RequireScopeLayer, VerifiedTokenCache};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
use tower_oauth::{BearerAuthLayer, Claims, KeyStore, ValidationError, Validator};

use crate::support::api::{serve, validator};

struct Api {
    url: String,
    issuer: TestIssuer,
    /// How many requests reached the handlers.
    reached: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, authorization: &[&str]) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        for value in authorization {
            request = request.header("authorization", *value);
        }
        request.send().await.expect("request is answered")
    }
}

fn challenge(response: &reqwest::Response) -> Option<&str> {
    response.headers().get("www-authenticate").map(|v| v.to_str().unwrap())
}

async fn api_with(issuer: TestIssuer, layer: impl FnOnce(Validator) -> BearerAuthLayer) -> Api {
    let validator = validator(&issuer);
    let reached = Arc::new(AtomicUsize::new(0));
    let (me, admin) = (reached.clone(), reached.clone());
    let app = Router::new()
        .route(
            "/admin",
            get(move || async move {
                admin.fetch_add(1, Ordering::SeqCst);
                "admin"
            }),
        )
        .route_layer(RequireScopeLayer::new(["admin"]))
        .route(
            "/me",
            get(move |claims: Claims| async move {
                me.fetch_add(1, Ordering::SeqCst);
                Json(claims)
            }),
        )
        .layer(layer(validator))
        .route("/open", get(|claims: Option<Claims>| async move { format!("{}", claims.is_some()) }))
        .route("/unwired", get(|claims: Claims| async move { claims.subject().unwrap_or("").to_owned() }));
    Api { url: serve(app).await, issuer, reached, http: reqwest::Client::new() }
}

async fn api() -> Api {
    api_with(TestIssuer::start().await.unwrap(), |v| BearerAuthLayer::new(v).realm("api")).await
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_claims() {
    let api = api().await;
    let token = api.issuer.mint().subject("alice").scope("read write").sign();
    let response = api.get("/me", &[&format!("Bearer {token}")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let claims: serde_json::Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(api.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_credentials_get_a_bare_challenge() {
    let api = api().await;
    for authorization in [&[][..], &["Basic dXNlcjpwYXNz"][..]] {
        let response = api.get("/me", authorization).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api""#));
        assert_eq!(response.text().await.unwrap(), "", "terse by default");
    }
    assert_eq!(api.reached.load(Ordering::SeqCst), 0, "the inner service is not called");
}

#[tokio::test]
async fn bad_tokens_get_invalid_token() {
    let api = api().await;
    let stranger = tower_oauth::testing::TestKey::generate(tower_oauth::Algorithm::RS256);
    let cases = [
        "not-a-jwt".to_owned(),
        api.issuer.mint().expired().sign(),
        api.issuer.mint().tampered_signature(),
        api.issuer.mint().unsigned(),
        api.issuer.mint().audience("someone-else").sign(),
        api.issuer.mint().sign_with(&stranger),
    ];
    for token in cases {
        let response = api.get("/me", &[&format!("Bearer {token}")]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api", error="invalid_token""#));
    }
    assert_eq!(api.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = api().await;
    let token = api.issuer.mint().sign();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let response = api.get("/me", &[&format!("{scheme} {token}")]).await;
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn malformed_requests_get_invalid_request() {
    let api = api().await;
    let token = api.issuer.mint().sign();
    let cases: [&[&str]; 4] = [
        &["Bearer"],
        &[&format!("Bearer {token} {token}")],
        &[&format!("Bearer {token}, Bearer {token}")],
        &[&format!("Bearer {token}"), &format!("Bearer {token}")],
    ];
    for authorization in cases {
        let response = api.get("/me", authorization).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{authorization:?}");
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api", error="invalid_request""#));
    }
    assert_eq!(api.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_scope_gets_insufficient_scope_with_the_scope() {
    let api = api().await;
    let read_only = api.issuer.mint().scope("read").sign();
    let response = api.get("/admin", &[&format!("Bearer {read_only}")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&response), Some(r#"Bearer realm="api", error="insufficient_scope", scope="admin""#));
    assert_eq!(api.reached.load(Ordering::SeqCst), 0);
    let admin = api.issuer.mint().scope("read admin").sign();
    assert_eq!(api.get("/admin", &[&format!("Bearer {admin}")]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn verbose_errors_add_a_description_and_a_json_body() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = api_with(issuer, |v| BearerAuthLayer::new(v).realm("api").verbose_errors(true)).await;
    let response = api.get("/me", &[&format!("Bearer {}", api.issuer.mint().expired().sign())]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&response),
        Some(r#"Bearer realm="api", error="invalid_token", error_description="token has expired""#)
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "invalid_token", "error_description": "token has expired"}));
}

#[tokio::test]
async fn the_realm_is_optional() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = api_with(issuer, BearerAuthLayer::new).await;
    assert_eq!(challenge(&api.get("/me", &[]).await), Some("Bearer"));
    let response = api.get("/me", &["Bearer x.y.z"]).await;
    assert_eq!(challenge(&response), Some(r#"Bearer error="invalid_token""#));
}

#[tokio::test]
async fn no_keys_ever_loaded_gives_503_not_401() {
    let issuer = TestIssuer::start().await.unwrap();
    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    let api = api_with(issuer, |v| BearerAuthLayer::new(v).realm("api")).await;
    let token = api.issuer.mint().sign();
    let response = api.get("/me", &[&format!("Bearer {token}")]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge(&response), None);
    assert_eq!(response.text().await.unwrap(), "", "no details");
    // Once the issuer is back, the same token passes.
    api.issuer.clear_faults();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = api.get("/me", &[&format!("Bearer {token}")]).await.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_query_parameter_is_accepted_only_when_enabled() {
    let issuer = TestIssuer::start().await.unwrap();
    let token = issuer.mint().sign();
    let off = api_with(issuer.clone(), |v| BearerAuthLayer::new(v).realm("api")).await;
    let response = off.get(&format!("/me?access_token={token}"), &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), Some(r#"Bearer realm="api""#));
    let on = api_with(issuer, |v| BearerAuthLayer::new(v).realm("api").allow_query_token()).await;
    assert_eq!(on.get(&format!("/me?access_token={token}"), &[]).await.status(), StatusCode::OK);
    let both = on.get(&format!("/me?access_token={token}"), &[&format!("Bearer {token}")]).await;
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn extractors_say_when_the_layer_is_missing() {
    let api = api().await;
    let open = api.get("/open", &[]).await;
    assert_eq!(open.text().await.unwrap(), "false", "Option<Claims> is None without the layer");
    let unwired = api.get("/unwired", &[]).await;
    assert_eq!(unwired.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(unwired.text().await.unwrap().contains("forgot to add BearerAuthLayer"));
}

#[tokio::test]
async fn the_applications_own_claims_type_reaches_handlers() {
    #[derive(Clone, Deserialize)]
    struct Tenant {
        tenant: String,
    }
    let issuer = TestIssuer::start().await.unwrap();
    let validator =
        Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).claims::<Tenant>().build().unwrap();
    let app = Router::new()
        .route("/tenant", get(|Authenticated(t): Authenticated<Tenant>| async move { t.tenant }))
        .layer(BearerAuthLayer::new(validator));
    let url = serve(app).await;
    let token = issuer.mint().claim("tenant", "acme").sign();
    let response = reqwest::Client::new().get(format!("{url}/tenant")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "acme");
}

#[tokio::test]
async fn a_key_rotation_causes_no_401() {
    let api = api().await;
    assert_eq!(api.get("/me", &[&format!("Bearer {}", api.issuer.mint().sign())]).await.status(), StatusCode::OK);
    let fetches = api.issuer.requests(Endpoint::Jwks);
    api.issuer.rotate_keys();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (token, url, http) = (api.issuer.mint().sign(), api.url.clone(), api.http.clone());
        tasks.spawn(async move { http.get(format!("{url}/me")).bearer_auth(token).send().await.unwrap().status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(api.issuer.requests(Endpoint::Jwks) - fetches, 1, "one shared fetch for the new kid");
}

#[tokio::test]
async fn the_verified_token_cache_still_checks_time_and_forgets_retired_keys() {
    let issuer = TestIssuer::start().await.unwrap();
    let keys = KeyStore::builder().issuer(issuer.issuer()).unknown_kid_cooldown(Duration::ZERO).build().unwrap();
    let validator = Validator::builder()
        .issuer_with_keys(issuer.issuer(), keys.clone())
        .audience(issuer.audience())
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .layer(BearerAuthLayer::new(validator).cache(VerifiedTokenCache::with_capacity(1 << 20)));
    let url = serve(app).await;
    let http = reqwest::Client::new();
    let status = async |token: String| http.get(format!("{url}/me")).bearer_auth(token).send().await.unwrap().status();

    // Cached, then expired: the cache does not outlive `exp`.
    let short = issuer.mint().expires_in(Duration::from_secs(2)).sign();
    assert_eq!(status(short.clone()).await, StatusCode::OK);
    assert_eq!(status(short.clone()).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(status(short).await, StatusCode::UNAUTHORIZED);

    // Cached, then its key retired at the issuer and the store refreshed: rejected.
    let old = issuer.mint().sign();
    assert_eq!(status(old.clone()).await, StatusCode::OK);
    issuer.rotate_keys();
    issuer.retire_old_keys();
    assert!(keys.refresh().await);
    assert_eq!(status(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(issuer.mint().sign()).await, StatusCode::OK);
}

/// A token bound to a key (`cnf`, RFC 7800: DPoP's `jkt`, mTLS's `x5t#S256`) is never
/// accepted as a bearer token (RFC 9449 §7.2, RFC 8705 §3); an empty `cnf` binds nothing.
#[tokio::test]
async fn a_sender_constrained_token_is_refused_as_a_bearer_token() {
    let api = api().await;
    let bound = [
        (serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}), ValidationError::SenderConstrained),
        // Without a client certificate, which this request has not.
        (
            serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            ValidationError::CertificateMismatch,
        ),
        (
            serde_json::json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}),
            ValidationError::SenderConstrained,
        ),
    ];
    for (cnf, expected) in bound {
        let token = api.issuer.mint().claim("cnf", cnf.clone()).sign();
        let response = api.get("/me", &[&format!("Bearer {token}")]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cnf}");
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api", error="invalid_token""#), "{cnf}");
        let direct = validator(&api.issuer).validate(&token).await.map(|_: Claims| ());
        assert_eq!(direct, Err(expected), "{cnf}");
    }
    assert_eq!(api.reached.load(Ordering::SeqCst), 0);
    let unbound = api.issuer.mint().claim("cnf", serde_json::json!({})).sign();
    assert_eq!(api.get("/me", &[&format!("Bearer {unbound}")]).await.status(), StatusCode::OK);
}
