//! R3 under fault injection, outbound: a token endpoint that is down, fails with 5xx,
//! rate limits with and without `Retry-After`, stalls for 30 s, sends a body that never
//! ends or one of 100 MB, answers garbage, malformed or non-Bearer tokens, or redirects.
//!
//! Each fault must come back as its own `TokenError` variant within the configured
//! timeout, showing neither the client secret nor any token; a `TokenCache` must retry
//! no more often than its backoff (or `Retry-After`) allows, counted at the server over
//! a time window, and keep attaching its cached token through `ClientCredentialsLayer`
//! until the token's real expiry. Run with `--nocapture` to see the measured numbers.
#![cfg(feature = "testing")]

use std::convert::Infallible;
use std::error::Error as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use serde_json::json;
use tokio::task::JoinSet;
use tower::{Layer as _, Service, ServiceExt as _, service_fn};
use tower_oauth::Validator;
use tower_oauth::client::{
    ClientCredentialsLayer, DEFAULT_MAX_BODY_SIZE, InvalidResponse, TokenCache, TokenEndpoint, TokenError,
};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};

use crate::observe::{HEAVY, MIB, PeakRss, mib, socket_buffer_ceiling};
use crate::support::api::validator;
use crate::support::server::{Behaviour, Scripted, json, redirect, response};

const ID: &str = "faults-client";
/// A client secret that no error may show.
const SECRET: &str = "faults-secret-7Qv2Lr9x";
/// The timeout of the exchanges that fault by stalling.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its bound an exchange may be seen to end on a loaded machine.
const MARGIN: Duration = Duration::from_millis(1500);
/// What the process's peak memory may grow by during a 100 MB response.
const RSS_BOUND: u64 = 64 * MIB;

/// Whether an error is the variant a fault must produce.
type Expected = fn(&TokenError) -> bool;

/// An issuer that knows this suite's client.
async fn issuer() -> TestIssuer {
    TestIssuer::builder().client(ID, SECRET).start().await.expect("an issuer")
}

fn endpoint(url: &str, timeout: Duration) -> TokenEndpoint {
    TokenEndpoint::builder(url, ID, SECRET).timeout(timeout).build().expect("a loopback token url")
}

/// A Bearer token response carrying `token`, valid for `expires_in` seconds.
fn token_response(token: &str, expires_in: u64) -> Vec<u8> {
    json(&json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}))
}

/// Neither the error's `Display` nor its `Debug`, nor those of its sources, show the
/// secret, the Basic credentials made from it, or `token`.
fn assert_reveals_nothing(name: &str, error: &TokenError, token: &str) {
    let basic = STANDARD.encode(format!("{ID}:{SECRET}"));
    let mut shown = vec![error.to_string(), format!("{error:?}")];
    let mut source = error.source();
    while let Some(inner) = source {
        shown.extend([inner.to_string(), format!("{inner:?}")]);
        source = inner.source();
    }
    for text in shown {
        for secret in [SECRET, basic.as_str(), token].into_iter().filter(|s| !s.is_empty()) {
            assert!(!text.contains(secret), "{name}: an error shows a secret or a token: {text}");
        }
    }
}

/// Requests a token from `url` once; the fault must make it fail, within `timeout`.
async fn failing_request(name: &str, url: &str, timeout: Duration, token: &str) -> (TokenError, Duration) {
    let mut endpoint = endpoint(url, timeout);
    let started = Instant::now();
    let error = endpoint.request_token().await.expect_err(name);
    let took = started.elapsed();
    assert!(took <= timeout + MARGIN, "{name}: took {took:?} with a {timeout:?} timeout");
    assert_reveals_nothing(name, &error, token);
    println!("{name}: {error:?} (\"{error}\") in {took:?}");
    (error, took)
}

/// Runs `failing_request` against a hostile server that behaves so.
async fn hostile_request(name: &str, behaviour: Behaviour, timeout: Duration) -> (TokenError, Duration, Scripted) {
    let server = Scripted::start(behaviour).await;
    let (error, took) = failing_request(name, &server.url("/token"), timeout, "").await;
    (error, took, server)
}

/// Runs `failing_request` against the test issuer with this fault on its token endpoint.
async fn issuer_request(name: &str, fault: Fault, timeout: Duration) -> (TokenError, Duration) {
    let issuer = issuer().await;
    issuer.set_fault(Endpoint::Token, fault);
    let result = failing_request(name, &issuer.token_endpoint(), timeout, "").await;
    assert_eq!(issuer.requests(Endpoint::Token), 1, "{name}: one exchange, one request");
    result
}

// ---------------------------------------------------------------------------------
// Typed errors, one exchange at a time
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_and_rate_limits_are_typed() {
    let timeout = Duration::from_secs(5);
    for status in [500, 502, 503] {
        let (error, _) = issuer_request(&format!("{status}"), Fault::Status(status), timeout).await;
        assert!(
            matches!(&error, TokenError::ServerError { status: s, retry_after: None } if s.as_u16() == status),
            "{status}: {error:?}"
        );
        assert!(error.is_transient());
    }
    let (error, _, _) = hostile_request(
        "503 with Retry-After: 7",
        Behaviour::Respond(response(503, &[("retry-after", "7")], b"")),
        timeout,
    )
    .await;
    assert!(matches!(error, TokenError::ServerError { retry_after: Some(d), .. } if d == Duration::from_secs(7)));
    let (error, _) = issuer_request("429", Fault::TooManyRequests { retry_after: None }, timeout).await;
    assert!(matches!(error, TokenError::RateLimited { retry_after: None }), "{error:?}");
    let (error, _) =
        issuer_request("429 with Retry-After: 2", Fault::TooManyRequests { retry_after: Some(2) }, timeout).await;
    assert!(matches!(error, TokenError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)));
}

#[tokio::test]
async fn a_dead_or_garbled_endpoint_is_a_transport_error() {
    let timeout = Duration::from_secs(5);
    let port = crate::support::server::closed_port().await;
    let (error, _) = failing_request("connection refused", &format!("http://{port}/token"), timeout, "").await;
    assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
    let (error, _) = issuer_request("connection dropped", Fault::Down, timeout).await;
    assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
    let (error, _, _) = hostile_request("closed without an answer", Behaviour::Respond(Vec::new()), timeout).await;
    assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (error, _, _) = hostile_request("not HTTP", Behaviour::Respond(junk), timeout).await;
    assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn malformed_success_responses_are_typed_and_never_show_the_token() {
    let timeout = Duration::from_secs(5);
    let token = "canary-access-token-4b1d";
    let (error, _) = issuer_request("garbage", Fault::Garbage, timeout).await;
    assert!(matches!(error, TokenError::InvalidResponse(InvalidResponse::NotJson)), "{error:?}");
    let cases: [(&str, serde_json::Value, Expected); 7] = [
        ("no access_token", json!({"token_type": "Bearer", "expires_in": 60}), |e| {
            matches!(e, TokenError::InvalidResponse(InvalidResponse::MissingAccessToken))
        }),
        ("empty access_token", json!({"access_token": "", "token_type": "Bearer"}), |e| {
            matches!(e, TokenError::InvalidResponse(InvalidResponse::MissingAccessToken))
        }),
        ("no token_type", json!({"access_token": token, "expires_in": 60}), |e| {
            matches!(e, TokenError::InvalidResponse(InvalidResponse::MissingTokenType))
        }),
        (
            "token_type DPoP",
            json!({"access_token": token, "token_type": "DPoP", "expires_in": 60}),
            |e| matches!(e, TokenError::UnsupportedTokenType(kind) if kind == "DPoP"),
        ),
        (
            "token_type mac",
            json!({"access_token": token, "token_type": "mac"}),
            |e| matches!(e, TokenError::UnsupportedTokenType(kind) if kind == "mac"),
        ),
        (
            "expires_in not a number",
            json!({"access_token": token, "token_type": "Bearer", "expires_in": "soon"}),
            |e| matches!(e, TokenError::InvalidResponse(InvalidResponse::InvalidExpiresIn)),
        ),
        ("an array, not an object", json!([{"access_token": token, "token_type": "Bearer"}]), |e| {
            matches!(e, TokenError::InvalidResponse(InvalidResponse::NotJson))
        }),
    ];
    for (name, body, expected) in cases {
        let server = Scripted::start(Behaviour::Respond(json(&body))).await;
        let (error, _) = failing_request(name, &server.url("/token"), timeout, token).await;
        assert!(expected(&error), "{name}: {error:?}");
        assert!(!error.is_transient(), "{name}: a malformed answer is not retried as if transient");
    }
    let body = b"\x00\xff{\"access_token\": \"canary-access-token-4b1d\", \"token_type\": ";
    let server =
        Scripted::start(Behaviour::Respond(response(200, &[("content-type", "application/json")], body))).await;
    let (error, _) = failing_request("not JSON", &server.url("/token"), timeout, token).await;
    assert!(matches!(error, TokenError::InvalidResponse(InvalidResponse::NotJson)), "{error:?}");
}

/// Accept, read the request, then sleep 30 s: with a 2 s timeout the exchange fails as
/// a timeout after 2 s, and the server sees the client close then.
#[tokio::test]
async fn a_30_second_stall_is_cut_off_as_a_timeout() {
    let name = "30 s stall";
    let stall = Behaviour::Stall { hold: Duration::from_secs(30), then: token_response("late", 60) };
    let (error, took, server) = hostile_request(name, stall, TIMEOUT).await;
    assert!(matches!(error, TokenError::Timeout), "{error:?}");
    assert!(took >= TIMEOUT.mul_f64(0.9), "{name}: ended after {took:?}, before the timeout");
    let stalled = server.wait_ended(0, Duration::from_secs(5)).await;
    let held = stalled.client_gone_at.expect("the client closed").duration_since(stalled.accepted_at);
    println!("{name}: the client closed the stalled connection after {held:?}");
    assert!(held < TIMEOUT + MARGIN, "{name}: held {held:?}");
    assert_eq!(stalled.written, 0, "{name}: nothing was answered");
}

#[tokio::test]
async fn bodies_that_never_end_and_servers_that_never_read_are_cut_off_as_timeouts() {
    let (error, took, server) = hostile_request("1 byte per second, forever", Behaviour::Dribble, TIMEOUT).await;
    assert!(matches!(error, TokenError::Timeout) && took >= TIMEOUT.mul_f64(0.9), "{error:?} after {took:?}");
    let dribble = server.wait_ended(0, Duration::from_secs(5)).await;
    let held = dribble.client_gone_at.expect("the client left").duration_since(dribble.accepted_at);
    assert!(held < TIMEOUT + MARGIN, "the endless body was read for {held:?}");

    let (error, took) = issuer_request("stalled body (test issuer)", Fault::Stall, TIMEOUT).await;
    assert!(matches!(error, TokenError::Timeout) && took >= TIMEOUT.mul_f64(0.9), "{error:?} after {took:?}");

    let (error, took, server) = hostile_request("accepts, never reads", Behaviour::NeverRead, TIMEOUT).await;
    assert!(matches!(error, TokenError::Timeout) && took >= TIMEOUT.mul_f64(0.9), "{error:?} after {took:?}");
    assert!(server.connections()[0].request.is_none());
}

/// 100 MB without `content-length`, as a success and as an error: the client stops at
/// the 64 KiB cap and closes, the server can hand the socket no more than the cap plus
/// what the kernel buffers, and peak memory barely moves. Announced with
/// `content-length`, it is refused before the body is read.
#[tokio::test]
async fn a_100_mb_body_is_read_no_further_than_the_cap() {
    let _heavy = HEAVY.lock().await;
    let rss = PeakRss::start();
    let ceiling = DEFAULT_MAX_BODY_SIZE as u64 + socket_buffer_ceiling() + MIB;
    let timeout = Duration::from_secs(10);
    for (name, status) in [("100 MB chunked 200", 200), ("100 MB chunked 400", 400)] {
        let flood = Behaviour::Flood { status, len: 100_000_000, chunked: true };
        let (error, _, server) = hostile_request(name, flood, timeout).await;
        if status == 200 {
            assert!(matches!(error, TokenError::BodyTooLarge { limit } if limit == DEFAULT_MAX_BODY_SIZE), "{error:?}");
        } else {
            // An error body over the cap leaves the status to speak.
            assert!(matches!(error, TokenError::BadRequest), "{error:?}");
        }
        let flooded = server.wait_ended(0, Duration::from_secs(10)).await;
        println!(
            "{name}: the server wrote {} before the client went away (ceiling {})",
            mib(flooded.written),
            mib(ceiling)
        );
        assert!(flooded.client_gone_at.is_some(), "{name}: the client closed the connection");
        assert!(flooded.written <= ceiling, "{name}: {} bytes written", flooded.written);
    }
    let (error, took) = issuer_request("100 MB with content-length", Fault::Oversized(100_000_000), timeout).await;
    assert!(matches!(error, TokenError::BodyTooLarge { .. }), "{error:?}");
    assert!(took < timeout / 2, "refused unread, took {took:?}");
    if let Some(rss) = rss {
        let (peak, growth) = rss.growth();
        println!("100 MB bodies: peak RSS {} (+{} over the start)", mib(peak), mib(growth));
        assert!(growth < RSS_BOUND, "peak RSS grew by {}", mib(growth));
    }
}

/// Token requests never follow redirects (they would carry the credentials elsewhere):
/// the target, a working token endpoint on loopback, is never contacted, and a redirect
/// off loopback fails as fast.
#[tokio::test]
async fn redirects_are_typed_and_never_followed() {
    let timeout = Duration::from_secs(5);
    let target = Scripted::start(Behaviour::Respond(token_response("redirected-token", 60))).await;
    for status in [301, 302, 303, 307, 308] {
        let name = format!("{status} to a loopback token endpoint");
        let server = Scripted::start(Behaviour::Respond(redirect(status, &target.url("/token")))).await;
        let (error, _) = failing_request(&name, &server.url("/token"), timeout, "").await;
        assert!(matches!(&error, TokenError::UnexpectedStatus(s) if s.as_u16() == status), "{name}: {error:?}");
        assert!(!error.is_transient());
    }
    for location in ["http://10.255.255.1/token", "http://example.invalid/token"] {
        let name = format!("307 to {location}");
        let server = Scripted::start(Behaviour::Respond(redirect(307, location))).await;
        let (error, took) = failing_request(&name, &server.url("/token"), timeout, "").await;
        assert!(matches!(&error, TokenError::UnexpectedStatus(s) if s.as_u16() == 307), "{name}: {error:?}");
        // Well within the 5 s timeout: nothing waited on a connection to that host.
        assert!(took < timeout / 2, "{name}: took {took:?}");
    }
    assert_eq!(target.accepted(), 0, "a redirect was followed");
}

// ---------------------------------------------------------------------------------
// The cache: bounded retries
// ---------------------------------------------------------------------------------

/// The most requests a cache backing off from `initial`, doubling up to `max`, can make
/// within `window` after a first failed one (the jitter shortens a delay by 20 % at most).
fn max_attempts(window: Duration, initial: Duration, max: Duration) -> usize {
    let (mut at, mut attempts, mut delay) = (Duration::ZERO, 1, initial);
    loop {
        at += delay.mul_f64(0.8);
        if at > window {
            return attempts;
        }
        attempts += 1;
        delay = (delay * 2).min(max);
    }
}

/// Waits until `server` has accepted `count` connections; panics after `deadline`.
async fn wait_for_requests(server: &Scripted, count: usize, deadline: Duration) -> Vec<Instant> {
    let started = Instant::now();
    while server.accepted() < count {
        assert!(started.elapsed() < deadline, "{} of {count} requests after {deadline:?}", server.accepted());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.connections().iter().map(|c| c.accepted_at).collect()
}

/// 429 with `Retry-After: 2` while the backoff alone would retry every 50–100 ms: the
/// cache waits 2 s between requests, and callers meanwhile (whose wait bound, 1 s here,
/// ends before the retry) get the typed error at once without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_not_retried_before_it_elapses() {
    let server = Scripted::start(Behaviour::Respond(response(429, &[("retry-after", "2")], b""))).await;
    let cache = TokenCache::builder(endpoint(&server.url("/token"), Duration::from_secs(5)))
        .backoff(Duration::from_millis(50), Duration::from_millis(100))
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let error = cache.token().await.expect_err("rate limited");
    assert!(matches!(error, TokenError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)));
    assert_reveals_nothing("429 cache", &error, "");
    for _ in 0..100 {
        let again = cache.token().await.expect_err("still backing off");
        assert!(matches!(again, TokenError::RateLimited { .. }), "{again:?}");
    }
    assert_eq!(server.accepted(), 1, "callers during Retry-After make no request");
    let times = wait_for_requests(&server, 3, Duration::from_secs(15)).await;
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("429 with Retry-After: 2: gaps between requests {gaps:?}");
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(1995), "retried after {gap:?}, before Retry-After");
    }
    server.set(Behaviour::Respond(token_response("fresh", 60)));
    let started = Instant::now();
    let token = loop {
        if let Ok(token) = cache.token().await {
            break token;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(token.expose(), "fresh");
}

/// Without `Retry-After`, 429 and 5xx back off exponentially: 100 ms doubling to 800 ms,
/// each gap at least 80 % of its step, and over 3 s no more requests than that allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retry_after_429_and_5xx_back_off_exponentially() {
    let (initial, max) = (Duration::from_millis(100), Duration::from_millis(800));
    let mut cases = JoinSet::new();
    for status in [429, 500, 502, 503] {
        cases.spawn(async move {
            let server = Scripted::start(Behaviour::Respond(response(status, &[], b""))).await;
            // A caller waits out the retries due within its bound (1 s here), then gets
            // the last error.
            let cache = TokenCache::builder(endpoint(&server.url("/token"), Duration::from_secs(5)))
                .backoff(initial, max)
                .max_wait(Duration::from_secs(1))
                .build()
                .unwrap();
            let error = cache.token().await.expect_err("the endpoint fails");
            assert_eq!(error.status().map(|s| s.as_u16()), Some(status), "{error:?}");
            assert!(error.is_transient());
            tokio::time::sleep(Duration::from_secs(3)).await;
            // Counted first, so the window (from the first request) covers every one counted.
            let in_window = server.accepted();
            let window = server.connections()[0].accepted_at.elapsed();
            let allowed = max_attempts(window, initial, max);
            let times = wait_for_requests(&server, 6, Duration::from_secs(20)).await;
            let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).take(5).collect();
            let mut step = initial;
            for (i, gap) in gaps.iter().enumerate() {
                assert!(*gap >= step.mul_f64(0.8), "{status}: retry {} after {gap:?}; step {step:?}", i + 1);
                step = (step * 2).min(max);
            }
            assert!(in_window <= allowed, "{status}: {in_window} requests in {window:?}; at most {allowed}");
            println!("{status}: {in_window} requests in {window:.2?} (at most {allowed}); first gaps {gaps:?}");
        });
    }
    while let Some(case) = cases.join_next().await {
        case.expect("no case panics");
    }
}

/// A thousand requests through `ClientCredentialsLayer` on a cold cache whose endpoint
/// fails slowly: one token request, and every caller gets the typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_on_a_failing_cold_cache_share_one_request() {
    let failing = response(503, &[], b"");
    let server = Scripted::start(Behaviour::Stall { hold: Duration::from_millis(300), then: failing }).await;
    // A backoff beyond the callers' wait bound (10 s): every caller gets the error, and
    // none causes a second request.
    let cache = TokenCache::builder(endpoint(&server.url("/token"), Duration::from_secs(5)))
        .backoff(Duration::from_secs(30), Duration::from_secs(30))
        .build()
        .unwrap();
    let api =
        service_fn(|_: Request<Empty<Bytes>>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let client = ClientCredentialsLayer::new(cache.clone()).layer(api);
    let mut callers = JoinSet::new();
    for _ in 0..1000 {
        let client = client.clone();
        callers.spawn(async move {
            client.oneshot(Request::get("http://127.0.0.1:9/api").body(Empty::new()).unwrap()).await
        });
    }
    while let Some(caller) = callers.join_next().await {
        let error = caller.expect("no caller panics").expect_err("no token, no call");
        let error = error.downcast_ref::<TokenError>().expect("the layer's error is the cache's TokenError");
        assert!(matches!(error, TokenError::ServerError { status, .. } if status.as_u16() == 503), "{error:?}");
    }
    assert_eq!(server.accepted(), 1, "1,000 callers, one token request");
    assert_eq!(cache.fetch_attempts(), 1);
}

// ---------------------------------------------------------------------------------
// The cache: the token serves until its real expiry
// ---------------------------------------------------------------------------------

/// How long the hostile servers' tokens live: refreshed at half that, 1.5 s.
const LIFETIME: u64 = 3;
/// The exchange timeout of the caches here.
const CACHE_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(400));

/// An API that accepts only requests whose bearer token the issuer signed.
fn validating_api(
    validator: Validator,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone + Send
{
    service_fn(move |request: Request<Empty<Bytes>>| {
        let validator = validator.clone();
        async move {
            let bearer = request.headers().get("authorization").and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "));
            let valid = match bearer {
                Some(token) => validator.validate(token).await.is_ok(),
                None => false,
            };
            let mut response = Response::new(Empty::new());
            if !valid {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok(response)
        }
    })
}

/// One token endpoint fault for the cache, set up: the parts whose construction does
/// blocking work (HTTP clients load their TLS roots) are built before any case runs, so
/// that no case's exchange waits for another's set-up.
struct CacheCase {
    name: &'static str,
    fault: Behaviour,
    expected: Expected,
    /// The token the server hands out while healthy.
    token: String,
    server: Scripted,
    cache: TokenCache,
    validator: Validator,
}

async fn cache_case(name: &'static str, issuer: &TestIssuer, fault: Behaviour, expected: Expected) -> CacheCase {
    let token = issuer.mint().sign();
    let server = Scripted::start(Behaviour::Respond(token_response(&token, LIFETIME))).await;
    // Callers wait for retries no longer than one exchange may take.
    let cache = TokenCache::builder(endpoint(&server.url("/token"), CACHE_TIMEOUT))
        .backoff(BACKOFF.0, BACKOFF.1)
        .max_wait(CACHE_TIMEOUT)
        .build()
        .unwrap();
    let validator = validator(issuer);
    CacheCase { name, fault, expected, token, server, cache, validator }
}

/// One token endpoint fault, from a good token to the endpoint's recovery.
async fn serves_until_expiry(case: CacheCase) -> String {
    let CacheCase { name, fault, expected, token, server, cache, validator } = case;
    let client = ClientCredentialsLayer::new(cache.clone()).layer(validating_api(validator));
    let call = || client.clone().oneshot(Request::get("http://127.0.0.1:9/api").body(Empty::<Bytes>::new()).unwrap());

    let first = cache.token().await.unwrap_or_else(|e| panic!("{name}: no token before the fault: {e:?}"));
    assert_eq!(first.generation(), 1);
    let fault_at = Instant::now();
    let before_fault = server.accepted();
    server.set(fault);

    // Until its real expiry the cached token is attached, and the API accepts it.
    let mut calls = 0;
    while Instant::now() + Duration::from_millis(300) < first.expires_at() {
        let response = call().await.unwrap_or_else(|e| panic!("{name}: call #{calls} failed: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{name}: call #{calls}");
        assert_eq!(cache.cached().map(|t| t.generation()), Some(1), "{name}: the cached token serves");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep_until((first.expires_at() + Duration::from_millis(50)).into()).await;
    assert!(cache.cached().is_none(), "{name}: an expired token is never served");
    assert!(server.accepted() > before_fault, "{name}: the refresh met the fault");

    // After expiry, the layer and the cache fail with the typed error, within the timeout.
    let started = Instant::now();
    let error = call().await.expect_err("no valid token after expiry");
    let error = error.downcast::<TokenError>().expect("the layer's error is the cache's TokenError");
    assert!(expected(&error), "{name}: {error:?}");
    let cached_error = cache.token().await.expect_err("no valid token after expiry");
    assert!(expected(&cached_error), "{name}: {cached_error:?}");
    assert!(started.elapsed() <= CACHE_TIMEOUT * 2 + MARGIN, "{name}: the errors took {:?}", started.elapsed());
    for shown in [&*error, &cached_error] {
        assert_reveals_nothing(name, shown, &token);
    }
    assert!(!format!("{cache:?}").contains(&token), "{name}: the cache's Debug shows the token");

    // Retries stayed within the backoff.
    let requests = server.accepted() - before_fault;
    let window = fault_at.elapsed();
    let allowed = max_attempts(window, BACKOFF.0, BACKOFF.1);
    assert!(requests <= allowed, "{name}: {requests} token requests in {window:?}; at most {allowed}");

    // The cache recovers by itself once the endpoint does.
    server.set(Behaviour::Respond(token_response(&token, LIFETIME)));
    let recovering = Instant::now();
    loop {
        if let Ok(response) = call().await {
            assert_eq!(response.status(), StatusCode::OK);
            break;
        }
        assert!(recovering.elapsed() < Duration::from_secs(5), "{name}: no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache.cached().is_some_and(|t| t.generation() >= 2), "{name}: a new token after recovery");
    format!(
        "{name}: {calls} calls with the cached token until expiry, all 200; then {error:?}; \
         {requests} token requests in {window:.1?} (at most {allowed}); recovered in {:?}",
        recovering.elapsed()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_token_is_attached_until_its_real_expiry_through_every_fault() {
    let issuer = issuer().await;
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let status = |code: u16| Behaviour::Respond(response(code, &[], b""));
    let cases: Vec<(&'static str, Behaviour, Expected)> = vec![
        ("500", status(500), |e| matches!(e, TokenError::ServerError { status, .. } if *status == 500)),
        ("502", status(502), |e| matches!(e, TokenError::ServerError { status, .. } if *status == 502)),
        ("503", status(503), |e| matches!(e, TokenError::ServerError { status, .. } if *status == 503)),
        ("429", status(429), |e| matches!(e, TokenError::RateLimited { retry_after: None })),
        ("closed without an answer", Behaviour::Respond(Vec::new()), |e| matches!(e, TokenError::Transport(_))),
        ("not HTTP", Behaviour::Respond(junk), |e| matches!(e, TokenError::Transport(_))),
        (
            "not JSON",
            Behaviour::Respond(response(200, &[("content-type", "application/json")], b"<html>502</html>")),
            |e| matches!(e, TokenError::InvalidResponse(InvalidResponse::NotJson)),
        ),
        ("no access_token", Behaviour::Respond(json(&json!({"token_type": "Bearer"}))), |e| {
            matches!(e, TokenError::InvalidResponse(InvalidResponse::MissingAccessToken))
        }),
        (
            "token_type DPoP",
            Behaviour::Respond(json(&json!({"access_token": "canary-dpop-token", "token_type": "DPoP"}))),
            |e| matches!(e, TokenError::UnsupportedTokenType(_)),
        ),
        ("30 s stall", Behaviour::Stall { hold: Duration::from_secs(30), then: token_response("late", 60) }, |e| {
            matches!(e, TokenError::Timeout)
        }),
        ("1 byte per second, forever", Behaviour::Dribble, |e| matches!(e, TokenError::Timeout)),
        ("accepts, never reads", Behaviour::NeverRead, |e| matches!(e, TokenError::Timeout)),
        ("100 MB chunked", Behaviour::Flood { status: 200, len: 100_000_000, chunked: true }, |e| {
            matches!(e, TokenError::BodyTooLarge { .. })
        }),
        (
            "307 redirect",
            Behaviour::Respond(redirect(307, "http://127.0.0.1:9/token")),
            |e| matches!(e, TokenError::UnexpectedStatus(status) if *status == 307),
        ),
    ];
    let mut prepared = Vec::new();
    for (name, fault, expected) in cases {
        prepared.push(cache_case(name, &issuer, fault, expected).await);
    }
    let mut running = JoinSet::new();
    for case in prepared {
        running.spawn(serves_until_expiry(case));
    }
    while let Some(case) = running.join_next().await {
        println!("{}", case.expect("no case panics"));
    }
}

// ---------------------------------------------------------------------------------
// Cold starts behind a rate limit, an outage or a dropped connection
// ---------------------------------------------------------------------------------

/// How a cold client's first token request fails, before the endpoint recovers.
fn first_failures() -> [(&'static str, Behaviour); 3] {
    [
        ("429 with Retry-After: 1", Behaviour::Respond(response(429, &[("retry-after", "1")], b""))),
        ("503 with Retry-After: 1", Behaviour::Respond(response(503, &[("retry-after", "1")], b""))),
        ("connection closed without an answer", Behaviour::Respond(Vec::new())),
    ]
}

/// A token endpoint that fails once as `first`, then issues tokens; and an API on
/// 127.0.0.1 that answers 200 only to that token.
async fn recovering_endpoint(first: Behaviour) -> (Scripted, Scripted) {
    let token_endpoint = Scripted::start(Behaviour::Respond(token_response("cold-start-token", 300))).await;
    token_endpoint.push(first);
    let api = Scripted::routes(|request, _| {
        if request.header("authorization") == Some("Bearer cold-start-token") {
            response(200, &[("content-length", "0")], b"")
        } else {
            response(401, &[("content-length", "0")], b"")
        }
    })
    .await;
    (token_endpoint, api)
}

/// A cold client whose first token request fails with a transient error (429 or 503 with
/// `Retry-After: 1`, or a dropped connection): every request, one at a time or fifty at
/// once, through the Tower layer and through the reqwest middleware, waits for the one
/// retry and succeeds; the endpoint sees exactly two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_client_waits_out_a_transient_failure_and_every_request_succeeds() {
    for (name, first) in first_failures() {
        for concurrency in [1, 50] {
            // The Tower layer, over a hyper client.
            let (token_endpoint, api) = recovering_endpoint(first.clone()).await;
            let cache = TokenCache::new(endpoint(&token_endpoint.url("/token"), Duration::from_secs(5))).unwrap();
            let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
            let client = ClientCredentialsLayer::new(cache.clone()).layer(http);
            let started = Instant::now();
            let mut calls = JoinSet::new();
            for _ in 0..concurrency.max(3) {
                let (client, url) = (client.clone(), api.url("/api"));
                let call = async move {
                    let request = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
                    client.oneshot(request).await.map(|r| r.status()).map_err(|e| e.to_string())
                };
                if concurrency == 1 {
                    assert_eq!(call.await, Ok(StatusCode::OK), "{name}, layer, one at a time");
                } else {
                    calls.spawn(call);
                }
            }
            while let Some(status) = calls.join_next().await {
                assert_eq!(status.expect("no call panics"), Ok(StatusCode::OK), "{name}, layer, {concurrency} at once");
            }
            let took = started.elapsed();
            assert_eq!(token_endpoint.accepted(), 2, "{name}, layer: one request, then one retry");
            assert!(took < Duration::from_secs(5), "{name}, layer: took {took:?}");
            println!("cold start, {name}, layer, concurrency {concurrency}: all 200 in {took:.2?}, 2 token requests");

            // The reqwest middleware.
            let (token_endpoint, api) = recovering_endpoint(first.clone()).await;
            let cache = TokenCache::new(endpoint(&token_endpoint.url("/token"), Duration::from_secs(5))).unwrap();
            let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(tower_oauth::reqwest::ClientCredentialsMiddleware::new(cache))
                .build();
            let started = Instant::now();
            let mut calls = JoinSet::new();
            for _ in 0..concurrency.max(3) {
                let (client, url) = (client.clone(), api.url("/api"));
                let call = async move { client.get(url).send().await.map(|r| r.status()).map_err(|e| e.to_string()) };
                if concurrency == 1 {
                    assert_eq!(call.await, Ok(StatusCode::OK), "{name}, middleware, one at a time");
                } else {
                    calls.spawn(call);
                }
            }
            while let Some(status) = calls.join_next().await {
                let status = status.expect("no call panics");
                assert_eq!(status, Ok(StatusCode::OK), "{name}, middleware, {concurrency} at once");
            }
            let took = started.elapsed();
            assert_eq!(token_endpoint.accepted(), 2, "{name}, middleware: one request, then one retry");
            println!(
                "cold start, {name}, middleware, concurrency {concurrency}: all 200 in {took:.2?}, 2 token requests"
            );
        }
    }
}

/// A `Retry-After` beyond the wait bound fails every cold request at once with the typed
/// error, and the endpoint sees one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_wait_bound_fails_at_once() {
    let server = Scripted::start(Behaviour::Respond(response(429, &[("retry-after", "60")], b""))).await;
    let cache = TokenCache::new(endpoint(&server.url("/token"), Duration::from_secs(5))).unwrap();
    let api =
        service_fn(|_: Request<Empty<Bytes>>| async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) });
    let client = ClientCredentialsLayer::new(cache).layer(api);
    let started = Instant::now();
    for _ in 0..3 {
        let request = Request::get("http://127.0.0.1:9/api").body(Empty::new()).unwrap();
        let error = client.clone().oneshot(request).await.expect_err("no token, no call");
        let error = error.downcast_ref::<TokenError>().expect("the layer's error is the cache's TokenError");
        assert!(matches!(error, TokenError::RateLimited { retry_after: Some(d) } if d.as_secs() == 60), "{error:?}");
    }
    assert!(started.elapsed() < MARGIN, "took {:?}", started.elapsed());
    assert_eq!(server.accepted(), 1);
}
