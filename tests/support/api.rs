//! The API under test on 127.0.0.1, and the small helpers every suite needs.
#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_oauth::client::{TokenEndpoint, TokenEndpointBuilder};
use tower_oauth::testing::TestIssuer;
use tower_oauth::{BearerAuthLayer, Claims, Validator};

/// A listener on a free port of 127.0.0.1 and its base URL, `http://127.0.0.1:PORT`,
/// for a server the test runs itself (a tonic server, say).
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
    (listener, url)
}

/// Serves `app` on 127.0.0.1; returns its base URL, `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let (listener, url) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Serves an API behind `layer` whose `/me` answers with the validated claims; returns
/// the URL of `/me`.
pub async fn claims_api(layer: BearerAuthLayer) -> String {
    let app = Router::new().route("/me", get(|claims: Claims| async move { Json(claims) })).layer(layer);
    format!("{}/me", serve(app).await)
}

/// Serves an API behind a validator that trusts `issuer`, whose `/me` answers `ok`;
/// returns the URL of `/me`.
pub async fn ok_api(issuer: &TestIssuer) -> String {
    let app = Router::new().route("/me", get(|| async { "ok" })).layer(BearerAuthLayer::new(validator(issuer)));
    format!("{}/me", serve(app).await)
}

/// The time now, in seconds since the epoch, as JWT claims count it.
pub fn now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
}

/// A validator that trusts `issuer` (through discovery) for its default audience.
pub fn validator(issuer: &TestIssuer) -> Validator {
    Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).build().expect("valid configuration")
}

/// The token endpoint of `issuer`, for its default client.
pub fn endpoint(issuer: &TestIssuer) -> TokenEndpointBuilder {
    client_endpoint(issuer, TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
}

/// The token endpoint of `issuer`, for the client `client_id`.
pub fn client_endpoint(issuer: &TestIssuer, client_id: &str, secret: &str) -> TokenEndpointBuilder {
    TokenEndpoint::builder(issuer.token_endpoint(), client_id, secret)
}
