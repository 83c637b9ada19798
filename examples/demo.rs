//! The crate's main job, end to end, with no set-up and no network beyond 127.0.0.1.
//!
//! Run with: `cargo run --example demo`
//!
//! It starts the embedded test issuer and an axum API behind `BearerAuthLayer`, then
//! shows, one line a step: a call without a token (401), a call with a token (200 and the
//! claims the handler saw), a call missing a scope (403), and a key rotation picked up
//! without a single failed request. It exits non-zero if any step does not behave.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use tower_oauth::bearer::RequireScopeLayer;
use tower_oauth::testing::{Endpoint, TestIssuer};
use tower_oauth::{BearerAuthLayer, Claims, Validator};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let issuer = TestIssuer::start().await?;
    let validator = Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).build()?;
    let app = Router::new()
        .route("/admin", get(|| async { "welcome, admin" }))
        .route_layer(RequireScopeLayer::new(["admin"]))
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .layer(BearerAuthLayer::new(validator).realm("demo"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("test issuer at {}, API at {api}", issuer.issuer());

    let http = reqwest::Client::new();
    let token = client_credentials(&http, &issuer, "read").await?;

    // 1. No token.
    let response = http.get(format!("{api}/me")).send().await?;
    expect(response.status(), StatusCode::UNAUTHORIZED)?;
    println!("1. no token          -> {} with `www-authenticate: {}`", response.status(), challenge(&response));

    // 2. A token from the issuer's token endpoint (client_credentials).
    let response = http.get(format!("{api}/me")).bearer_auth(&token).send().await?;
    expect(response.status(), StatusCode::OK)?;
    let claims: serde_json::Value = response.json().await?;
    println!(
        "2. with a token      -> 200 OK; the handler saw sub={} client_id={} scope={}",
        claims["sub"], claims["client_id"], claims["scope"]
    );

    // 3. The token lacks the scope /admin requires.
    let response = http.get(format!("{api}/admin")).bearer_auth(&token).send().await?;
    expect(response.status(), StatusCode::FORBIDDEN)?;
    println!("3. missing a scope   -> {} with `www-authenticate: {}`", response.status(), challenge(&response));

    // 4. Rotate the issuer's keys under steady traffic; new tokens carry a kid the API
    //    has never seen, and the request that sees it waits for one JWKS fetch.
    let (ok, failed, fetches) = traffic_across_rotation(&http, &issuer, &api).await?;
    println!(
        "4. key rotation      -> {ok} requests across the rotation, {failed} failed; the new key took {fetches} JWKS fetch"
    );
    if failed > 0 {
        return Err(format!("{failed} requests failed across the key rotation").into());
    }
    Ok(())
}

async fn client_credentials(http: &reqwest::Client, issuer: &TestIssuer, scope: &str) -> Result<String, Error> {
    let response = http
        .post(issuer.token_endpoint())
        .basic_auth(TestIssuer::DEFAULT_CLIENT_ID, Some(TestIssuer::DEFAULT_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await?
        .error_for_status()?;
    let body: serde_json::Value = response.json().await?;
    body["access_token"].as_str().map(str::to_owned).ok_or_else(|| "no access_token in the response".into())
}

async fn traffic_across_rotation(
    http: &reqwest::Client,
    issuer: &TestIssuer,
    api: &str,
) -> Result<(u64, u64, u64), Error> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let before = issuer.requests(Endpoint::Jwks);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, issuer, api, ok, failed) =
            (http.clone(), issuer.clone(), api.to_owned(), ok.clone(), failed.clone());
        workers.spawn(async move {
            for _ in 0..50 {
                // A fresh token each time: after the rotation it is signed with the new key.
                let status = match client_credentials(&http, &issuer, "read").await {
                    Ok(token) => http.get(format!("{api}/me")).bearer_auth(token).send().await.map(|r| r.status()),
                    Err(_) => Ok(StatusCode::BAD_GATEWAY),
                };
                let counter = if matches!(status, Ok(StatusCode::OK)) { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    issuer.rotate_keys();
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let fetches = issuer.requests(Endpoint::Jwks) - before;
    Ok((ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), fetches))
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn expect(got: StatusCode, want: StatusCode) -> Result<(), Error> {
    if got == want { Ok(()) } else { Err(format!("expected {want}, got {got}").into()) }
}
