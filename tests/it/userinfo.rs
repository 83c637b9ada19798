//! OIDC userinfo enrichment behind `BearerAuthLayer`, against the embedded test issuer:
//! the handler's `UserinfoClaims`, the cache, single flight, the `sub` check, and failures.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
use tower_oauth::userinfo::{FailurePolicy, UserinfoClaims, UserinfoLayer, UserinfoLayerBuilder};
use tower_oauth::{BearerAuthLayer, KeyStore, Validator};

use crate::support;
use crate::support::api::{serve, validator};
use support::backoff::most_discoveries;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What `/me` answers: the userinfo the handler saw, or `null`.
async fn me(user: Option<UserinfoClaims>) -> Json<Value> {
    Json(match user {
        Some(user) => json!({ "sub": user.subject(), "name": user.name(), "email": user.email() }),
        None => Value::Null,
    })
}

async fn api(issuer: &TestIssuer, userinfo: UserinfoLayer) -> String {
    let validator = validator(issuer);
    api_with(validator, userinfo).await
}

/// The same API, with its own validator.
async fn api_with(validator: Validator, userinfo: UserinfoLayer) -> String {
    let app = Router::new()
        .route("/me", get(me))
        .route("/strict", get(|user: UserinfoClaims| async move { user.subject().to_owned() }))
        .layer(userinfo)
        .layer(BearerAuthLayer::new(validator));
    serve(app).await
}

fn layer(issuer: &TestIssuer) -> UserinfoLayerBuilder {
    UserinfoLayer::builder(issuer.userinfo_endpoint())
}

async fn call(url: &str, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{url}{path}")).bearer_auth(token).send().await.expect("an answer")
}

#[tokio::test]
async fn the_handler_gets_the_users_claims_fetched_once_per_token() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_user_claims("alice", json!({ "name": "Alice Liddell", "email": "alice@example.test" }));
    let userinfo = layer(&issuer).build()?;
    let url = api(&issuer, userinfo.clone()).await;
    let token = issuer.mint().subject("alice").sign();
    for _ in 0..3 {
        let response = call(&url, "/me", &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        assert_eq!(body, json!({ "sub": "alice", "name": "Alice Liddell", "email": "alice@example.test" }));
    }
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1, "cached by token");
    assert_eq!((userinfo.requests(), userinfo.cached()), (1, 1));

    // Another token is another entry, with its own subject.
    let bob = issuer.mint().subject("bob").sign();
    let body: Value = call(&url, "/me", &bob).await.json().await?;
    assert_eq!(body["sub"], "bob");
    assert_eq!(issuer.requests(Endpoint::Userinfo), 2);
    Ok(())
}

#[tokio::test]
async fn an_answer_is_reused_no_longer_than_the_tokens_exp() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let url = api(&issuer, layer(&issuer).build()?).await;
    let token = issuer.mint().expires_in(Duration::from_secs(1)).sign();
    assert_eq!(call(&url, "/me", &token).await.status(), StatusCode::OK);
    assert_eq!(call(&url, "/me", &token).await.status(), StatusCode::OK);
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The validator's 60 s leeway still accepts the token after `exp`, but the cached
    // answer has ended: the endpoint is asked again, and now refuses the expired token.
    assert_eq!(call(&url, "/me", &token).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(issuer.requests(Endpoint::Userinfo), 2);

    let uncached = TestIssuer::start().await?;
    let url = api(&uncached, layer(&uncached).max_ttl(Duration::ZERO).build()?).await;
    let token = uncached.mint().sign();
    call(&url, "/me", &token).await;
    call(&url, "/me", &token).await;
    assert_eq!(uncached.requests(Endpoint::Userinfo), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_with_one_token_make_one_userinfo_request() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Userinfo, Fault::Delay(Duration::from_millis(300)));
    let url: Arc<str> = api(&issuer, layer(&issuer).build()?).await.into();
    let token: Arc<str> = issuer.mint().subject("alice").sign().into();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move { call(&url, "/strict", &token).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await?, StatusCode::OK);
    }
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1);
    Ok(())
}

#[tokio::test]
async fn an_answer_about_another_subject_is_never_used() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_user_claims("alice", json!({ "sub": "mallory", "name": "Mallory" }));
    let token = issuer.mint().subject("alice").sign();

    let strict = api(&issuer, layer(&issuer).build()?).await;
    let response = call(&strict, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let lenient = api(&issuer, layer(&issuer).on_failure(FailurePolicy::Continue).build()?).await;
    let response = call(&lenient, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await?, Value::Null, "the handler saw no userinfo");
    Ok(())
}

#[tokio::test]
async fn a_failing_endpoint_gives_503_or_no_userinfo_and_is_not_cached() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let strict = layer(&issuer).timeout(Duration::from_millis(500)).build()?;
    let strict_url = api(&issuer, strict).await;
    let lenient_url =
        api(&issuer, layer(&issuer).timeout(Duration::from_millis(500)).on_failure(FailurePolicy::Continue).build()?)
            .await;
    let token = issuer.mint().sign();
    for fault in [Fault::Down, Fault::Status(500), Fault::Status(401), Fault::Garbage, Fault::Stall] {
        issuer.set_fault(Endpoint::Userinfo, fault.clone());
        let response = call(&strict_url, "/me", &token).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
        assert!(response.headers().contains_key("retry-after"), "{fault:?}");
        let response = call(&lenient_url, "/me", &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{fault:?}");
        assert_eq!(response.json::<Value>().await?, Value::Null, "{fault:?}");
    }
    issuer.clear_fault(Endpoint::Userinfo);
    let body: Value = call(&strict_url, "/me", &token).await.json().await?;
    assert_eq!(body["sub"], "test-subject", "the outage left nothing behind");
    Ok(())
}

#[tokio::test]
async fn the_endpoint_can_be_discovered_and_the_layer_needs_the_bearer_layer() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let url = api(&issuer, UserinfoLayer::discover(issuer.issuer()).build()?).await;
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 0);
    let token = issuer.mint().sign();
    assert_eq!(call(&url, "/strict", &token).await.text().await?, "test-subject");
    // The bearer layer discovered the keys, the userinfo layer its endpoint.
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1);

    // Without the bearer layer in front there are no validated claims: a wiring bug.
    let unwired = serve(Router::new().route("/me", get(me)).layer(layer(&issuer).build()?)).await;
    assert_eq!(call(&unwired, "/me", &token).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_outage_costs_the_issuer_a_few_discoveries_not_one_per_request() -> TestResult {
    let issuer = TestIssuer::start().await?;
    // Keys straight from the JWKS, loaded before the outage: every metadata request
    // counted below is the userinfo layer's.
    let keys = KeyStore::builder().jwks_uri(issuer.jwks_uri()).build()?;
    let validator = Validator::builder().issuer_with_keys(issuer.issuer(), keys).audience(issuer.audience()).build()?;
    // A token per request, as from many users: their userinfo cannot share a flight.
    let tokens: Vec<String> = (0..200).map(|i| issuer.mint().subject(&format!("user-{i}")).sign()).collect();
    validator.validate(&tokens[0]).await?;
    let url: Arc<str> = api_with(validator, UserinfoLayer::discover(issuer.issuer()).build()?).await.into();
    let client = reqwest::Client::new();
    for endpoint in [Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata] {
        issuer.set_fault(endpoint, Fault::Status(503));
    }

    // 200 requests, one every 5 ms.
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for token in &tokens {
        ticks.tick().await;
        let request = client.get(format!("{url}/strict")).bearer_auth(token);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.expect("an answer");
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
            (response.status(), retry_after)
        }));
    }
    let mut retry_afters = Vec::new();
    for task in tasks {
        let (status, retry_after) = task.await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        retry_afters.push(retry_after.expect("a Retry-After").parse::<u64>()?);
    }
    let elapsed = started.elapsed();

    let discoveries = issuer.requests(Endpoint::OpenIdConfiguration);
    assert!((1..=most_discoveries(elapsed)).contains(&discoveries), "{discoveries} in {elapsed:?}");
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), discoveries, "each tries both documents");
    assert_eq!(issuer.requests(Endpoint::Userinfo), 0);
    // The time left is never more than the longest backoff these failures allow (the
    // first at most 1.2 s, doubling).
    let longest = 1.2 * 2f64.powi(discoveries as i32 - 1);
    assert!(retry_afters.iter().all(|&secs| (1..=longest.ceil() as u64).contains(&secs)), "{retry_afters:?}");

    // The outage is over; once the last answer's Retry-After has passed, the next
    // request discovers the endpoint and gets through.
    issuer.clear_faults();
    tokio::time::sleep(Duration::from_secs(*retry_afters.last().expect("200 answers"))).await;
    assert_eq!(call(&url, "/strict", &tokens[7]).await.text().await?, "user-7");
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), discoveries + 1);
    assert_eq!(issuer.requests(Endpoint::Userinfo), 1);
    Ok(())
}

/// The bearer layer (query tokens off, the default) takes the header and ignores an
/// `access_token` query parameter; the userinfo layer must find the same token.
#[tokio::test]
async fn a_query_parameter_beside_the_header_does_not_hide_the_token() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_user_claims("alice", json!({ "name": "Alice Liddell" }));
    let url = api(&issuer, layer(&issuer).build()?).await;
    let token = issuer.mint().subject("alice").sign();
    let response = call(&url, "/strict?access_token=something-else", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await?, "alice");
    Ok(())
}
