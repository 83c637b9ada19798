//! The `gateway` example's contract, run as a real process: a caller's token is
//! exchanged (RFC 8693) for one aimed at the downstream API, which is called with it,
//! and never with the caller's own.
#![cfg(all(feature = "testing", feature = "jwe"))]

use serde_json::{Value, json};
use tokio::process::Child;
use tower_oauth::testing::{GrantType, TestIssuer};

const DOWNSTREAM: &str = "https://orders.example";

/// Runs the `gateway` example with `envs`; returns the process and its base URL.
async fn start_gateway(envs: &[(&str, String)]) -> (Child, String) {
    crate::resource_server::start_example("gateway", envs).await
}

async fn setup(policy: &str) -> (TestIssuer, Child, Child, String) {
    let issuer = TestIssuer::builder()
        .client("gateway", "gateway-secret")
        .exchange_policy("gateway", [policy])
        .start()
        .await
        .unwrap();
    // The downstream API accepts only tokens for its own audience.
    let (downstream, downstream_url) = crate::resource_server::start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", DOWNSTREAM.to_owned()),
    ])
    .await;
    let (gateway, url) = start_gateway(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("OAUTH_CLIENT_ID", "gateway".to_owned()),
        ("OAUTH_CLIENT_SECRET", "gateway-secret".to_owned()),
        ("DOWNSTREAM_URL", format!("{downstream_url}/me")),
        ("DOWNSTREAM_AUDIENCE", DOWNSTREAM.to_owned()),
    ])
    .await;
    (issuer, downstream, gateway, url)
}

#[tokio::test]
async fn the_gateway_calls_downstream_with_an_exchanged_token_once_per_caller_token() {
    let (issuer, _downstream, _gateway, url) = setup(DOWNSTREAM).await;
    let token = issuer.mint().subject("alice").sign();
    let client = reqwest::Client::new();
    // Concurrent requests with one token share one exchange.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        calls.spawn(client.get(format!("{url}/call")).bearer_auth(&token).send());
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(
            body,
            json!({
                "inbound": {"sub": "alice", "aud": issuer.audience()},
                "outbound": {"sub": "alice", "aud": DOWNSTREAM, "act": {"sub": "gateway"}},
                // The downstream API takes only its own audience: the caller's token
                // (for the gateway) would have been refused.
                "downstream_status": 200,
            })
        );
    }
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 1);
    // Another caller, another exchange.
    let bob = issuer.mint().subject("bob").sign();
    let body: Value = client.get(format!("{url}/call")).bearer_auth(&bob).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["outbound"]["sub"], "bob");
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 2);
    // No token: the bearer layer answers, nothing is exchanged.
    assert_eq!(client.get(format!("{url}/call")).send().await.unwrap().status(), 401);
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 2);
}

#[tokio::test]
async fn a_refused_exchange_is_a_403_and_is_not_retried_at_once() {
    // The issuer lets the gateway exchange for another audience only: invalid_target.
    let (issuer, _downstream, _gateway, url) = setup("https://elsewhere.example").await;
    let token = issuer.mint().sign();
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let answer = client.get(format!("{url}/call")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(answer.status(), 403);
    }
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 1, "the refusal is remembered");
}
