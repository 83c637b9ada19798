//! The reqwest-middleware integration over real sockets: the token reaches a validating
//! API, the attach rules, and the 401 retry with a replayed body.
#![cfg(all(feature = "testing", feature = "reqwest-middleware", feature = "axum"))]

use std::time::Duration;

use reqwest::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tower_oauth::BearerAuthLayer;
use tower_oauth::client::{TokenCache, TokenEndpoint, TokenError};
use tower_oauth::reqwest::ClientCredentialsMiddleware;
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};

use crate::support::api::{claims_api, validator};
use crate::support::server::{Canned, Scripted};

fn cache(issuer: &TestIssuer) -> TokenCache {
    let endpoint = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .build()
    .unwrap();
    TokenCache::new(endpoint).unwrap()
}

fn with_middleware(middleware: ClientCredentialsMiddleware, http: reqwest::Client) -> ClientWithMiddleware {
    ClientBuilder::new(http).with(middleware).build()
}

#[tokio::test]
async fn the_middleware_attaches_a_token_the_api_accepts() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = claims_api(BearerAuthLayer::new(validator(&issuer))).await;
    let client = with_middleware(ClientCredentialsMiddleware::new(cache(&issuer)), reqwest::Client::new());
    for _ in 0..3 {
        let response = client.get(&api).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let claims: serde_json::Value = response.json().await.unwrap();
        assert_eq!(claims["client_id"], TestIssuer::DEFAULT_CLIENT_ID);
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn no_token_goes_to_plain_http_off_loopback_and_an_existing_header_stays() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = claims_api(BearerAuthLayer::new(validator(&issuer))).await;
    // `api.example.test` resolves to the local API, but the URL says plain http to a
    // host that is not loopback: no token may be sent there.
    let addr: std::net::SocketAddr = api.trim_start_matches("http://").trim_end_matches("/me").parse().unwrap();
    let http = reqwest::Client::builder().resolve("api.example.test", addr).build().unwrap();
    let client = with_middleware(ClientCredentialsMiddleware::new(cache(&issuer)), http);
    let response = client.get(format!("http://api.example.test:{}/me", addr.port())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.requests(Endpoint::Token), 0);

    let mine = issuer.mint().subject("someone-else").sign();
    let response = client.get(&api).bearer_auth(&mine).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims: serde_json::Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], "someone-else", "the caller's own Authorization header is untouched");
    assert_eq!(issuer.requests(Endpoint::Token), 0);

    // A custom rule can allow that host.
    let http = reqwest::Client::builder().resolve("api.example.test", addr).build().unwrap();
    let trusting = ClientCredentialsMiddleware::new(cache(&issuer))
        .attach_if(|target| target.host() == Some("api.example.test") || target.is_secure());
    let response =
        with_middleware(trusting, http).get(format!("http://api.example.test:{}/me", addr.port())).send().await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_401_replays_the_request_with_its_body_once() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = Scripted::start(Canned::status(200)).await;
    api.push(Canned::status(401));
    let client = with_middleware(ClientCredentialsMiddleware::new(cache(&issuer)), reqwest::Client::new());
    let response = client.post(api.url("/orders")).body("{\"n\":1}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, "{\"n\":1}", "the replay carries the same body");
    assert_ne!(seen[0].header("authorization"), seen[1].header("authorization"));
    assert!(seen[1].headers.get("authorization").unwrap().to_str().unwrap().starts_with("Bearer "));

    // Always 401 (with a fresh cache): one retry, then the 401 is the answer.
    api.set(Canned::status(401));
    let client = with_middleware(ClientCredentialsMiddleware::new(cache(&issuer)), reqwest::Client::new());
    let before = api.count();
    let response = client.get(api.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.count() - before, 2);
}

#[tokio::test]
async fn a_token_endpoint_failure_is_a_middleware_error_carrying_the_token_error() {
    let issuer = TestIssuer::start().await.unwrap();
    issuer.set_fault(Endpoint::Token, Fault::TooManyRequests { retry_after: Some(30) });
    let api = Scripted::start(Canned::status(200)).await;
    let client = with_middleware(ClientCredentialsMiddleware::new(cache(&issuer)), reqwest::Client::new());
    let error = client.get(api.url("/x")).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(error) = error else { panic!("{error:?}") };
    let error = error.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(api.count(), 0);
}
