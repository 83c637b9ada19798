//! Shared by `benches/validate.rs` and `benches/jwe.rs`: the token's claims, and the bearer
//! layer driven one request at a time with no runtime.

use std::convert::Infallible;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use criterion::{BenchmarkGroup, measurement::WallTime};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Empty;
use serde_json::json;
use tower::{Layer as _, Service};
use tower_oauth::BearerAuthLayer;

pub(crate) const ISSUER: &str = "https://login.example.com/realms/main";
pub(crate) const AUDIENCE: &str = "https://api.example.com";
/// 2100-01-01T00:00:00Z: the tokens never expire during a run.
pub(crate) const EXP: u64 = 4_102_444_800;
pub(crate) const SCOPE: &str = "orders:read orders:write profile";

pub(crate) fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// A payload shaped like a real access token (~400 bytes).
pub(crate) fn payload() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    json!({
        "iss": ISSUER,
        "sub": "f3b2c1d0-8e7a-4b6c-9d5e-1a2b3c4d5e6f",
        "aud": [AUDIENCE, "account"],
        "exp": EXP,
        "iat": now - 10,
        "nbf": now - 10,
        "auth_time": now - 20,
        "jti": "0b8f6a1e-3c5d-4e7f-8a9b-0c1d2e3f4a5b",
        "client_id": "orders-frontend",
        "azp": "orders-frontend",
        "scope": SCOPE,
        "sid": "6d2f1c9e-4a3b-4c8d-9e7f-5a6b7c8d9e0f",
        "acr": "1",
        "preferred_username": "service-account-orders-frontend",
    })
    .to_string()
}

/// The Tower service under test: the bearer layer over an inner service that is
/// ready at once and answers an empty 200.
pub(crate) fn service(
    layer: BearerAuthLayer,
) -> impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible> + Clone + Send + 'static {
    let inner =
        tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    layer.layer(inner)
}

/// One request through the service: `poll_ready`, `call`, and one poll of the
/// response future with a no-op waker (the inner future is ready at once).
pub(crate) fn one_request<S, B>(svc: &mut S, auth: &HeaderValue) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else { panic!("service not ready") };
    let mut request = Request::new(());
    request.headers_mut().insert(header::AUTHORIZATION, auth.clone());
    let future = pin!(svc.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status(),
        Poll::Pending => panic!("response future pending"),
    }
}

/// Like [`one_request`], with a request made by the caller.
#[allow(dead_code)] // Not every bench sends its own requests.
pub(crate) fn one_call<S, B>(svc: &mut S, request: Request<()>) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else { panic!("service not ready") };
    let future = pin!(svc.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status(),
        Poll::Pending => panic!("response future pending"),
    }
}

pub(crate) fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header value")
}

pub(crate) fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
}
