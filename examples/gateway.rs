//! An axum service behind `BearerAuthLayer` that calls a downstream API on its caller's
//! behalf, with a token exchanged for the caller's (RFC 8693), never with the caller's
//! own.
//!
//! Run with:
//! `OAUTH_ISSUER=https://idp.example OAUTH_AUDIENCE=https://gateway.example OAUTH_CLIENT_ID=gateway OAUTH_CLIENT_SECRET=s3cret DOWNSTREAM_URL=https://orders.example/v1 DOWNSTREAM_AUDIENCE=https://orders.example cargo run --example gateway`
//!
//! | variable | meaning |
//! |---|---|
//! | `OAUTH_ISSUER` | the trusted issuer (discovery): callers' tokens come from it, and its token endpoint exchanges them |
//! | `OAUTH_AUDIENCE` | this service's audience: callers' tokens must name it |
//! | `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET` | this service's credentials for the exchange (`client_secret_basic`) |
//! | `DOWNSTREAM_URL` | what `GET /call` calls |
//! | `DOWNSTREAM_AUDIENCE` | the `audience` the exchanged token is for |
//! | `LISTEN` | default `127.0.0.1:3001` |
//!
//! It prints `listening on http://ADDR` once it accepts connections. Then:
//! ```text
//! curl -i -H "Authorization: Bearer $TOKEN" localhost:3001/call
//! {"inbound":{"sub":"alice","aud":"https://gateway.example"},
//!  "outbound":{"sub":"alice","aud":"https://orders.example","act":{"sub":"gateway"}},
//!  "downstream_status":200}
//! ```
//! `outbound` shows the exchanged token's claims as the authorization server wrote
//! them (decoded, not verified: the downstream API verifies them), or nulls for an
//! opaque token. A caller whose token cannot be exchanged gets `403` (`503` when the
//! authorization server cannot be reached).

use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use tower_oauth::client::{ExchangedToken, TokenEndpoint, TokenExchangeLayer};
use tower_oauth::{BearerAuthLayer, Claims, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &'static str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is required"))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = required("OAUTH_ISSUER")?;
    let audience = required("OAUTH_AUDIENCE")?;
    let client_id = required("OAUTH_CLIENT_ID")?;
    let client_secret = required("OAUTH_CLIENT_SECRET")?;
    let downstream_url = required("DOWNSTREAM_URL")?;
    let downstream_audience = required("DOWNSTREAM_AUDIENCE")?;

    let validator = Validator::builder().issuer(&issuer).audience(audience).build()?;
    let exchange = TokenEndpoint::discover(&issuer, client_id, client_secret).audience(downstream_audience).build()?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;

    let app = Router::new()
        .route(
            "/call",
            get(move |claims: Claims, token: ExchangedToken| call(http.clone(), downstream_url.clone(), claims, token)),
        )
        .layer(TokenExchangeLayer::new(exchange))
        .layer(BearerAuthLayer::new(validator))
        .route("/healthz", get(|| async { "ok" }));

    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Calls the downstream API with the exchanged token, and says what went where.
async fn call(http: reqwest::Client, url: String, claims: Claims, token: ExchangedToken) -> Json<Value> {
    let status = match http.get(&url).header(http::header::AUTHORIZATION, token.header_value()).send().await {
        Ok(response) => json!(response.status().as_u16()),
        Err(error) => {
            tracing::warn!(%error, "downstream call failed");
            Value::Null
        }
    };
    let outbound = jwt_claims(token.expose());
    Json(json!({
        "inbound": {"sub": claims.subject(), "aud": claims.get::<Value>("aud")},
        "outbound": {"sub": outbound.get("sub"), "aud": outbound.get("aud"), "act": outbound.get("act")},
        "downstream_status": status,
    }))
}

/// The claims of a JWT, decoded without verification; empty for anything else.
fn jwt_claims(token: &str) -> serde_json::Map<String, Value> {
    token
        .split('.')
        .nth(1)
        .and_then(|payload| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}
