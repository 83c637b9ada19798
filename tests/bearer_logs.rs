//! What `BearerAuthLayer` logs: a span per validation with `sub`, `client_id`, `iss` and
//! `kid`; rejections at debug with their reason; never the token.
#![cfg(feature = "testing")]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, ServiceExt, service_fn};
use tower_oauth::BearerAuthLayer;
use tower_oauth::testing::TestIssuer;

use crate::support::api::validator;
use crate::support::logs::Captured;

#[tokio::test]
async fn spans_carry_the_callers_identity_and_logs_never_carry_the_token() {
    let captured = Captured::default();
    let _guard = captured.install("tower_oauth=trace");

    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let service = BearerAuthLayer::new(validator).layer(inner);
    let good = issuer.mint().subject("alice").sign();
    let expired = issuer.mint().subject("bob").expired().sign();
    let garbage = "secret-looking-garbage-token-value";

    let mut statuses = Vec::new();
    for token in [&good, &expired, &garbage.to_owned()] {
        let request = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
        statuses.push(service.clone().oneshot(request).await.unwrap().status());
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED]);

    let logs = captured.text();
    let kid = issuer.current_key(tower_oauth::Algorithm::RS256).kid().to_owned();
    assert!(logs.contains("sub=\"alice\""), "{logs}");
    assert!(logs.contains("client_id=\"test-client\""), "{logs}");
    assert!(logs.contains(&format!("iss=\"{}\"", issuer.issuer())), "{logs}");
    assert!(logs.contains(&format!("kid=\"{kid}\"")), "{logs}");
    assert!(logs.contains("request rejected") && logs.contains("token has expired"), "{logs}");
    assert!(logs.contains("malformed token"), "{logs}");
    for token in [&good, &expired] {
        for segment in token.split('.') {
            assert!(!logs.contains(segment), "a token segment leaked into the logs");
        }
    }
    assert!(!logs.contains(garbage), "the raw header value leaked into the logs");
}
