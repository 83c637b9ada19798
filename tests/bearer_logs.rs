//! What `BearerAuthLayer` logs: a span per validation with `sub`, `client_id`, `iss` and
//! `kid`; rejections at debug with their reason; never the token.
#![cfg(feature = "testing")]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, ServiceExt, service_fn};
use tower_oauth::BearerAuthLayer;
use tower_oauth::testing::TestIssuer;

use crate::support::api::validator;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn spans_carry_the_callers_identity_and_logs_never_carry_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tower_oauth=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
