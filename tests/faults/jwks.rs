//! R1 and R2 under fault injection, inbound: the JWKS endpoint (and discovery) down,
//! failing, rate limiting, slow, stalled, oversized, malformed, redirecting in a loop
//! or off loopback, and a flood of made-up `kid`s.
//!
//! Each fault case loads good keys into a `BearerAuth` service first, breaks the
//! endpoint, then refreshes while valid requests keep flowing, and checks that every
//! one of them got 200, that the store still holds the very same key set, that the
//! fetch ended within the configured timeout, and which typed `FetchError` it failed
//! with (read from the store's warning, the only place a background fetch reports it).
//! The cases run on current-thread runtimes so that each test sees only its own
//! warnings. Run with `--nocapture` to see the measured numbers.
#![cfg(feature = "testing")]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, ServiceExt as _, service_fn};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer, TestKey};
use tower_oauth::{Algorithm, BearerAuth, BearerAuthLayer, FetchError, KeyStore, Validator};

use crate::observe::{HEAVY, MIB, PeakRss, Warnings, mib, socket_buffer_ceiling};
use crate::support::server::{Behaviour, Scripted, json, redirect};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
type Inner = BoxCloneSyncService<Request<()>, Response<Empty<Bytes>>, Infallible>;

/// How long a healthy store on loopback may take to load its first key set.
const LOAD: Duration = Duration::from_secs(10);
/// The fetch timeout of every store here.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its timeout a fetch may be seen to end on a loaded machine.
const MARGIN: Duration = Duration::from_millis(1500);
/// Valid requests sent during each fault, at the least.
const MIN_REQUESTS: usize = 300;
/// What the process's peak memory may grow by during a 100 MB response.
const RSS_BOUND: u64 = 64 * MIB;
/// The message of the store's warning for a failed fetch.
const REFRESH_FAILED: &str = "key set refresh failed; keeping the last good keys";
/// `FetchError::Request`'s text: the variant wraps a `reqwest::Error`, which a test cannot make.
const REQUEST_FAILED: &str = "request failed";

/// A `BearerAuth` service in front of a handler that answers 200, trusting the test
/// issuer with the keys of `store`.
struct Guarded {
    issuer: TestIssuer,
    store: KeyStore,
    service: BearerAuth<Inner>,
    /// Valid tokens, signed with three of the issuer's keys.
    tokens: Vec<String>,
}

impl Guarded {
    /// The service, whether or not `store` has keys yet.
    fn new(issuer: &TestIssuer, store: KeyStore) -> Guarded {
        let validator = Validator::builder()
            .issuer_with_keys(issuer.issuer(), store.clone())
            .audience(issuer.audience())
            .build()
            .expect("a valid configuration");
        let inner: Inner =
            BoxCloneSyncService::new(service_fn(|_: Request<()>| async { Ok(Response::new(Empty::new())) }));
        let tokens = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| issuer.mint().alg(alg).sign())
            .collect();
        Guarded { issuer: issuer.clone(), store, service: BearerAuthLayer::new(validator).layer(inner), tokens }
    }

    /// The service once `store` has loaded good keys and accepts every token.
    async fn start(issuer: &TestIssuer, store: KeyStore) -> Guarded {
        assert!(store.wait_until_loaded(LOAD).await, "good keys load first");
        let guarded = Guarded::new(issuer, store);
        for token in &guarded.tokens {
            assert_eq!(guarded.call(token).await.status(), StatusCode::OK, "a valid token before the fault");
        }
        guarded
    }

    /// A store on `jwks_uri` with this suite's timeout and nothing scheduled for an hour.
    async fn on_jwks_uri(issuer: &TestIssuer, jwks_uri: &str) -> Guarded {
        let store = KeyStore::builder()
            .jwks_uri(jwks_uri)
            .timeout(TIMEOUT)
            .refresh_interval(Duration::from_secs(3600))
            .build()
            .expect("a loopback jwks uri");
        Guarded::start(issuer, store).await
    }

    async fn call(&self, token: &str) -> Response<tower_oauth::bearer::ResponseBody<Empty<Bytes>>> {
        let request = Request::get("/").header("authorization", format!("Bearer {token}")).body(()).unwrap();
        self.service.clone().oneshot(request).await.expect("the service is infallible")
    }
}

/// What one fault did.
#[derive(Debug)]
struct Outcome {
    /// How long the failed refresh took.
    took: Duration,
    /// The typed errors the failed fetches logged, the refresh's first.
    errors: Vec<String>,
}

/// Refreshes `guarded`'s store (already broken by the caller) while valid requests keep
/// flowing, and checks R1: the fetch fails within the timeout with `expected`, every
/// valid request gets 200 meanwhile, and the store keeps the very same key set.
async fn refresh_during_fault(name: &str, guarded: &Guarded, warnings: &Warnings, expected: &str) -> Outcome {
    let good = guarded.store.keys().expect("loaded");
    let logged = warnings.errors(REFRESH_FAILED).len();
    let failures = guarded.store.fetch_failures();
    let fetch = tokio::spawn({
        let store = guarded.store.clone();
        async move {
            let started = Instant::now();
            let refreshed = store.refresh().await;
            (refreshed, started.elapsed())
        }
    });
    let mut sent = 0;
    while !fetch.is_finished() || sent < MIN_REQUESTS {
        for token in &guarded.tokens {
            let response = guarded.call(token).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}: valid request #{sent} rejected during the fault");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (refreshed, took) = fetch.await.expect("the refresh does not panic");
    assert!(!refreshed, "{name}: the refresh must fail");
    assert!(took <= TIMEOUT + MARGIN, "{name}: the fetch took {took:?} with a {TIMEOUT:?} timeout");
    assert!(guarded.store.fetch_failures() > failures, "{name}: the fetch ended as a failure");
    assert!(Arc::ptr_eq(&guarded.store.keys().expect("still loaded"), &good), "{name}: the last good keys stay");
    let errors = warnings.errors(REFRESH_FAILED)[logged..].to_vec();
    assert_eq!(errors.first().map(String::as_str), Some(expected), "{name}: the fetch's typed error; all: {errors:?}");
    assert!(errors.iter().all(|e| e == expected), "{name}: every failed fetch of this fault: {errors:?}");
    for token in &guarded.tokens {
        assert_eq!(guarded.call(token).await.status(), StatusCode::OK, "{name}: after the failed fetch");
    }
    println!("{name}: fetch failed in {took:?} with \"{expected}\"; {sent} valid requests during the fault, all 200");
    Outcome { took, errors }
}

/// Once the endpoint is healthy again, a refresh loads a fresh set and tokens still pass.
async fn recovers(name: &str, guarded: &Guarded) {
    let before = guarded.store.keys().expect("loaded");
    // A background retry may still be stuck in the fault; the wait covers it and one more fetch.
    let refreshed = guarded.store.refresh().await || guarded.store.refresh().await;
    assert!(refreshed, "{name}: the store recovers once the endpoint does");
    assert!(!Arc::ptr_eq(&guarded.store.keys().expect("loaded"), &before), "{name}: a fresh set was loaded");
    for token in &guarded.tokens {
        assert_eq!(guarded.call(token).await.status(), StatusCode::OK, "{name}: after recovery");
    }
}

/// A test-issuer fault on the JWKS endpoint, from break to recovery.
async fn issuer_fault(name: &str, fault: Fault, expected: &str) -> Outcome {
    let (warnings, _guard) = Warnings::capture();
    let issuer = TestIssuer::start().await.expect("an issuer");
    let guarded = Guarded::on_jwks_uri(&issuer, &issuer.jwks_uri()).await;
    issuer.set_fault(Endpoint::Jwks, fault);
    let outcome = refresh_during_fault(name, &guarded, &warnings, expected).await;
    issuer.clear_faults();
    recovers(name, &guarded).await;
    outcome
}

/// A hostile server in front of the issuer's keys: it serves them, then misbehaves.
async fn hostile_fault(name: &str, behaviour: Behaviour, expected: &str) -> (Outcome, Scripted) {
    let (warnings, _guard) = Warnings::capture();
    let issuer = TestIssuer::start().await.expect("an issuer");
    let server = Scripted::start(Behaviour::Respond(json(&issuer.jwks()))).await;
    let guarded = Guarded::on_jwks_uri(&issuer, &server.url("/jwks")).await;
    server.set(behaviour);
    let outcome = refresh_during_fault(name, &guarded, &warnings, expected).await;
    server.set(Behaviour::Respond(json(&issuer.jwks())));
    recovers(name, &guarded).await;
    (outcome, server)
}

/// Asserts that a timeout fault held the fetch until the timeout: it was cut off, not
/// answered.
fn cut_off_at_the_timeout(name: &str, outcome: &Outcome) {
    assert!(outcome.took >= TIMEOUT.mul_f64(0.9), "{name}: ended after {:?}, before the timeout", outcome.took);
}

// ---------------------------------------------------------------------------------
// R1: faults the test issuer injects
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn jwks_down_keeps_the_last_good_keys() {
    issuer_fault("connection dropped", Fault::Down, REQUEST_FAILED).await;
}

#[tokio::test]
async fn jwks_500_keeps_the_last_good_keys() {
    let expected = FetchError::Status(StatusCode::INTERNAL_SERVER_ERROR).to_string();
    issuer_fault("500", Fault::Status(500), &expected).await;
}

#[tokio::test]
async fn jwks_503_and_429_keep_the_last_good_keys() {
    let expected = FetchError::RateLimited { retry_after: None }.to_string();
    issuer_fault("503", Fault::Status(503), &expected).await;
    let expected = FetchError::RateLimited { retry_after: Some(Duration::from_secs(1)) }.to_string();
    issuer_fault("429 with Retry-After: 1", Fault::TooManyRequests { retry_after: Some(1) }, &expected).await;
}

#[tokio::test]
async fn jwks_garbage_keeps_the_last_good_keys() {
    let expected = FetchError::InvalidDocument("not a JWK Set").to_string();
    issuer_fault("garbage", Fault::Garbage, &expected).await;
}

#[tokio::test]
async fn jwks_slow_beyond_the_timeout_is_cut_off_and_keeps_the_last_good_keys() {
    let name = "answer delayed 30 s";
    let outcome = issuer_fault(name, Fault::Delay(Duration::from_secs(30)), &FetchError::Timeout.to_string()).await;
    cut_off_at_the_timeout(name, &outcome);
}

#[tokio::test]
async fn jwks_stalled_body_is_cut_off_and_keeps_the_last_good_keys() {
    let name = "stalled body (test issuer)";
    let outcome = issuer_fault(name, Fault::Stall, &FetchError::Timeout.to_string()).await;
    cut_off_at_the_timeout(name, &outcome);
}

/// 100 MB announced with `content-length`: refused before the body is read.
#[tokio::test]
async fn jwks_of_100_mb_announced_is_refused_unread() {
    let _heavy = HEAVY.lock().await;
    let rss = PeakRss::start();
    // The store's default limit, 1 MiB, is the one under test.
    let expected = FetchError::BodyTooLarge { limit: 1024 * 1024 }.to_string();
    issuer_fault("100 MB with content-length", Fault::Oversized(100_000_000), &expected).await;
    assert_peak_rss_bounded("100 MB with content-length", rss);
}

fn assert_peak_rss_bounded(name: &str, rss: Option<PeakRss>) {
    let Some(rss) = rss else {
        println!("{name}: peak RSS not measurable here");
        return;
    };
    let (peak, growth) = rss.growth();
    println!("{name}: peak RSS {} (+{} over the start)", mib(peak), mib(growth));
    assert!(growth < RSS_BOUND, "{name}: peak RSS grew by {}", mib(growth));
}

// ---------------------------------------------------------------------------------
// R1: faults from hand-made hostile servers
// ---------------------------------------------------------------------------------

/// A body of one byte per second that never ends is cut off at the timeout, and the
/// server sees the client leave then, not later.
#[tokio::test]
async fn a_body_that_never_ends_is_cut_off_at_the_timeout() {
    let name = "1 byte per second, forever";
    let (outcome, server) = hostile_fault(name, Behaviour::Dribble, &FetchError::Timeout.to_string()).await;
    cut_off_at_the_timeout(name, &outcome);
    let dribble = server.wait_ended(1, Duration::from_secs(5)).await;
    let held = dribble.client_gone_at.expect("the client left").duration_since(dribble.accepted_at);
    println!("{name}: the client left after {held:?}, having been sent {} bytes", dribble.written);
    assert!(held < TIMEOUT + MARGIN, "{name}: the connection was held {held:?}");
}

/// 100 MB streamed without `content-length`: the client stops at the 1 MiB cap and
/// closes; the server could hand the socket no more than the cap plus what the kernel
/// buffers, and the process's peak memory barely moves.
#[tokio::test]
async fn a_100_mb_chunked_body_is_read_no_further_than_the_cap() {
    let name = "100 MB chunked";
    let _heavy = HEAVY.lock().await;
    let rss = PeakRss::start();
    let flood = Behaviour::Flood { status: 200, len: 100_000_000, chunked: true };
    let expected = FetchError::BodyTooLarge { limit: 1024 * 1024 }.to_string();
    let (_, server) = hostile_fault(name, flood, &expected).await;
    let flooded = server.wait_ended(1, Duration::from_secs(10)).await;
    let ceiling = MIB + socket_buffer_ceiling() + MIB;
    println!(
        "{name}: the server wrote {} before the client went away (ceiling {}; write failed: {})",
        mib(flooded.written),
        mib(ceiling),
        flooded.write_failed
    );
    assert!(flooded.client_gone_at.is_some(), "{name}: the client closed the connection");
    assert!(flooded.written < 100_000_000, "{name}: the whole body was sent");
    assert!(
        flooded.written <= ceiling,
        "{name}: {} written, more than the cap and the kernel's buffers",
        flooded.written
    );
    assert_peak_rss_bounded(name, rss);
}

/// Accept, read the request, then sleep 30 s: the fetch is cut off at the 2 s timeout,
/// and the server sees the client close then.
#[tokio::test]
async fn a_30_second_stall_is_cut_off_at_the_timeout() {
    let name = "30 s stall";
    let stall = Behaviour::Stall { hold: Duration::from_secs(30), then: json(&json!({"keys": []})) };
    let (outcome, server) = hostile_fault(name, stall, &FetchError::Timeout.to_string()).await;
    cut_off_at_the_timeout(name, &outcome);
    let stalled = server.connections()[1].clone();
    let gone = stalled.client_gone_at.expect("the client closed the stalled connection");
    let held = gone.duration_since(stalled.accepted_at);
    println!("{name}: the client closed the stalled connection after {held:?}");
    assert!(held < TIMEOUT + MARGIN, "{name}: held {held:?}");
    assert_eq!(stalled.written, 0, "{name}: nothing was answered");
}

/// A server that accepts and never reads the request.
#[tokio::test]
async fn a_server_that_never_reads_is_cut_off_at_the_timeout() {
    let name = "accepts, never reads";
    let (outcome, server) = hostile_fault(name, Behaviour::NeverRead, &FetchError::Timeout.to_string()).await;
    cut_off_at_the_timeout(name, &outcome);
    assert!(server.connections()[1].request.is_none());
}

#[tokio::test]
async fn bytes_that_are_not_http_keep_the_last_good_keys() {
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    hostile_fault("not HTTP", Behaviour::Respond(junk), REQUEST_FAILED).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_keeps_the_last_good_keys() {
    let body =
        crate::support::server::response(200, &[("content-type", "application/json")], b"\x00\xff{\"keys\": [nope");
    hostile_fault("not JSON", Behaviour::Respond(body), &FetchError::InvalidDocument("not a JWK Set").to_string())
        .await;
}

/// base64url of `len` bytes with the top and bottom bits set (an odd modulus of `8 * len` bits).
fn odd_number(len: usize) -> String {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
    bytes[0] |= 0x80;
    bytes[len - 1] |= 1;
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_of(len: usize, fill: u8) -> String {
    URL_SAFE_NO_PAD.encode(vec![fill; len])
}

/// A JWK Set whose keys are all of a wrong type, curve, size or use.
fn unusable_keys() -> Value {
    let rsa = TestKey::generate(Algorithm::RS256);
    let mut encryption = rsa.public_jwk();
    encryption["use"] = "enc".into();
    encryption["kid"] = "for-encryption".into();
    let mut mismatched = rsa.public_jwk();
    mismatched["alg"] = "ES256".into();
    mismatched["kid"] = "rsa-claiming-es256".into();
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1024", "n": odd_number(128), "e": "AQAB"},
        {"kty": "RSA", "kid": "rsa-e-1", "n": odd_number(256), "e": "AQ"},
        {"kty": "EC", "kid": "p-192", "crv": "P-192", "x": b64_of(24, 1), "y": b64_of(24, 2)},
        {"kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": b64_of(32, 1), "y": b64_of(32, 2)},
        {"kty": "EC", "kid": "p-256-short-x", "crv": "P-256", "x": b64_of(31, 1), "y": b64_of(32, 2)},
        {"kty": "EC", "kid": "p-256-off-curve", "crv": "P-256", "x": b64_of(32, 1), "y": b64_of(32, 2)},
        {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64_of(32, 9)},
        {"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": b64_of(57, 9)},
        {"kty": "OKP", "kid": "ed25519-short", "crv": "Ed25519", "x": b64_of(31, 9)},
        {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64_of(32, 7)},
        {"kty": "XYZ", "kid": "alien"},
        encryption,
        mismatched,
    ]})
}

#[tokio::test]
async fn a_key_set_of_only_unusable_keys_keeps_the_last_good_keys() {
    let body = json(&unusable_keys());
    hostile_fault(
        "only keys of wrong types, curves and sizes",
        Behaviour::Respond(body),
        &FetchError::NoUsableKeys.to_string(),
    )
    .await;
}

/// A → B → A → …: the fetch gives up after a few hops, at once.
#[tokio::test]
async fn a_redirect_loop_ends_at_once_and_keeps_the_last_good_keys() {
    let name = "redirect loop A -> B -> A";
    let (warnings, _guard) = Warnings::capture();
    let issuer = TestIssuer::start().await.expect("an issuer");
    let a = Scripted::start(Behaviour::Respond(json(&issuer.jwks()))).await;
    let b = Scripted::start(Behaviour::Respond(redirect(302, &a.url("/jwks")))).await;
    let guarded = Guarded::on_jwks_uri(&issuer, &a.url("/jwks")).await;
    a.set(Behaviour::Respond(redirect(302, &b.url("/jwks"))));
    let (a_before, b_before) = (a.accepted(), b.accepted());
    let outcome = refresh_during_fault(name, &guarded, &warnings, REQUEST_FAILED).await;
    let hops = a.accepted() - a_before + b.accepted() - b_before;
    println!("{name}: {hops} requests for {} failed fetches", outcome.errors.len());
    // At most 5 requests a fetch (4 redirects followed); one more fetch may be under way.
    let allowed = 5 * (outcome.errors.len() + 1);
    assert!(hops <= allowed, "{name}: {hops} requests for {} fetches", outcome.errors.len());
    assert!(outcome.took < TIMEOUT / 2, "{name}: took {:?}", outcome.took);
    a.set(Behaviour::Respond(json(&issuer.jwks())));
    recovers(name, &guarded).await;
}

/// A redirect to plain http off loopback is refused by policy before any connection:
/// a listener on this host, reached through addresses that are not loopback by the
/// crate's rule (`0.0.0.0`, IPv4-mapped IPv6), accepts no connection, and redirects to
/// `10.255.255.1` and `example.invalid` fail as fast, with a 5 s timeout.
#[tokio::test]
async fn a_redirect_off_loopback_is_refused_without_a_connection() {
    let (warnings, _guard) = Warnings::capture();
    let issuer = TestIssuer::start().await.expect("an issuer");
    let target = Scripted::start(Behaviour::Respond(json(&issuer.jwks()))).await;
    let mut reachable = Vec::new();
    for host in ["0.0.0.0", "[::ffff:127.0.0.1]"] {
        let address = format!("{host}:{}", target.port());
        if tokio::net::TcpStream::connect(address.as_str()).await.is_ok() {
            reachable.push(format!("http://{address}/jwks"));
        }
    }
    assert!(!reachable.is_empty(), "the target cannot be reached other than through 127.0.0.1 here");
    target.wait_ended(reachable.len() - 1, Duration::from_secs(5)).await;
    let probes = target.accepted();

    let redirector = Scripted::start(Behaviour::Respond(json(&issuer.jwks()))).await;
    let store = KeyStore::builder()
        .jwks_uri(redirector.url("/jwks"))
        .timeout(Duration::from_secs(5))
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .expect("a loopback jwks uri");
    let guarded = Guarded::start(&issuer, store).await;
    let mut locations = reachable.clone();
    locations.extend(["http://10.255.255.1/jwks".to_owned(), "http://example.invalid/jwks".to_owned()]);
    for location in &locations {
        let name = format!("redirect to {location}");
        redirector.set(Behaviour::Respond(redirect(302, location)));
        let outcome = refresh_during_fault(&name, &guarded, &warnings, REQUEST_FAILED).await;
        // Well within the 5 s timeout: nothing waited on a connection to that host.
        assert!(outcome.took < Duration::from_millis(2500), "{name}: refused at once, took {:?}", outcome.took);
    }
    assert_eq!(target.accepted(), probes, "a refused redirect reached its target");
    println!("redirects off loopback: target reachable as {reachable:?}; 0 connections from the store");
    redirector.set(Behaviour::Respond(json(&issuer.jwks())));
    recovers("redirects off loopback", &guarded).await;
}

/// Keys found through discovery: with the JWKS and both metadata documents broken, the
/// last good keys stay; the next fetch tries discovery again and fails typed too.
#[tokio::test]
async fn discovery_and_jwks_broken_together_keep_the_last_good_keys() {
    let name = "discovery";
    let (warnings, _guard) = Warnings::capture();
    let issuer = TestIssuer::start().await.expect("an issuer");
    let store = KeyStore::builder()
        .issuer(issuer.issuer())
        .timeout(TIMEOUT)
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .expect("a loopback issuer");
    let guarded = Guarded::start(&issuer, store).await;
    issuer.set_fault(Endpoint::Jwks, Fault::Down);
    issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Garbage);
    issuer.set_fault(Endpoint::OAuthServerMetadata, Fault::Status(500));
    // The first failure is the JWKS itself; it sends the next fetch back to discovery,
    // which fails with the last document tried (RFC 8414's 500).
    refresh_during_fault("discovery: jwks down", &guarded, &warnings, REQUEST_FAILED).await;
    let metadata_requests = issuer.requests(Endpoint::OpenIdConfiguration);
    let expected = FetchError::Status(StatusCode::INTERNAL_SERVER_ERROR).to_string();
    refresh_during_fault("discovery: metadata broken", &guarded, &warnings, &expected).await;
    assert!(issuer.requests(Endpoint::OpenIdConfiguration) > metadata_requests, "{name}: discovery was tried again");
    issuer.clear_faults();
    recovers(name, &guarded).await;
}

// ---------------------------------------------------------------------------------
// R2: a burst of made-up kids
// ---------------------------------------------------------------------------------

struct Flood {
    elapsed: Duration,
    jwks_requests: u64,
    /// The slowest answer to a made-up kid.
    slowest: Duration,
}

/// Sends 10,000 tokens with made-up `kid`s and 1,000 valid ones interleaved, all at once;
/// the made-up ones get 401, the valid ones 200.
async fn flood(guarded: &Arc<Guarded>) -> Flood {
    let issuer = &guarded.issuer;
    let stranger = TestKey::generate(Algorithm::EdDSA);
    let salt = TestKey::generate(Algorithm::EdDSA).kid().to_owned();
    let made_up: Vec<String> =
        (0..10_000).map(|i| issuer.mint().header("kid", format!("{salt}-{i}")).sign_with(&stranger)).collect();
    let jwks_before = issuer.requests(Endpoint::Jwks);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, token) in made_up.into_iter().enumerate() {
        let flooding = guarded.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            (false, flooding.call(&token).await.status(), sent.elapsed())
        });
        if i % 10 == 0 {
            let guarded = guarded.clone();
            tasks.spawn(async move {
                let token = &guarded.tokens[i % guarded.tokens.len()];
                (true, guarded.call(token).await.status(), Duration::ZERO)
            });
        }
    }
    let (mut unknown, mut valid, mut slowest) = (0, 0, Duration::ZERO);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("no request panics") {
            (true, status, _) => {
                assert_eq!(status, StatusCode::OK, "a valid request during the flood");
                valid += 1;
            }
            (false, status, took) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "a made-up kid");
                slowest = slowest.max(took);
                unknown += 1;
            }
        }
    }
    assert_eq!((unknown, valid), (10_000, 1_000));
    Flood { elapsed: started.elapsed(), jwks_requests: issuer.requests(Endpoint::Jwks) - jwks_before, slowest }
}

/// The most on-demand fetches the store's pacing allows over `elapsed`.
fn per_cooldown(elapsed: Duration, cooldown: Duration) -> u64 {
    crate::support::backoff::most_on_demand_fetches(elapsed, cooldown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_kids_at_once_fetch_no_more_than_the_pacing_allows() -> TestResult {
    let _heavy = HEAVY.lock().await;
    let issuer = TestIssuer::start().await?;
    let cooldown = Duration::from_secs(1);
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .unknown_kid_cooldown(cooldown)
        .refresh_interval(Duration::from_secs(3600))
        .timeout(TIMEOUT)
        .build()?;
    let guarded = Arc::new(Guarded::start(&issuer, store).await);
    let flood = flood(&guarded).await;
    let allowed = per_cooldown(flood.elapsed, cooldown);
    println!(
        "R2 healthy: 10,000 made-up kids + 1,000 valid in {:?}: {} JWKS fetches (at most {allowed}), slowest 401 {:?}",
        flood.elapsed, flood.jwks_requests, flood.slowest
    );
    assert!(flood.jwks_requests >= 1, "a made-up kid triggers one fetch");
    assert!(flood.jwks_requests <= allowed, "{} fetches", flood.jwks_requests);
    assert_eq!(guarded.store.fetch_failures(), 0);
    Ok(())
}

/// The same burst while the JWKS endpoint stalls: the made-up kids share the one fetch
/// and wait no longer than its timeout, valid tokens never wait, and the stalled
/// endpoint sees one fetch for the cooldown (plus the store's own backed-off retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_kids_during_a_stall_cause_one_fetch() -> TestResult {
    let _heavy = HEAVY.lock().await;
    let issuer = TestIssuer::start().await?;
    let cooldown = Duration::from_secs(10);
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .unknown_kid_cooldown(cooldown)
        .refresh_interval(Duration::from_secs(3600))
        .timeout(TIMEOUT)
        .build()?;
    let guarded = Arc::new(Guarded::start(&issuer, store).await);
    issuer.set_fault(Endpoint::Jwks, Fault::Stall);
    let flood = flood(&guarded).await;
    // Retries after a failure wait at least 0.8 s (1 s, -20 % jitter), then longer.
    let retries = (flood.elapsed.as_millis() / 800) as u64;
    let allowed = per_cooldown(flood.elapsed, cooldown) + retries;
    println!(
        "R2 stalled: 10,000 made-up kids + 1,000 valid in {:?}: {} JWKS fetches (at most {allowed}), slowest 401 {:?}",
        flood.elapsed, flood.jwks_requests, flood.slowest
    );
    assert!(flood.jwks_requests >= 1 && flood.jwks_requests <= allowed, "{} fetches", flood.jwks_requests);
    // The wait bound (2 s for the cooldown, then twice the timeout and 1 s for the
    // fetch), and room for 11,000 tasks on two threads.
    let bound = Duration::from_secs(2) + TIMEOUT * 2 + Duration::from_secs(1) + Duration::from_secs(3);
    assert!(flood.slowest <= bound, "a made-up kid waited {:?}", flood.slowest);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Cold start
// ---------------------------------------------------------------------------------

/// 200 concurrent valid requests against a store that never loaded keys: every one gets
/// 503 with `Retry-After` (never 401), within the fetch's bound.
async fn all_unavailable(guarded: &Arc<Guarded>, name: &str) -> Duration {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let guarded = guarded.clone();
        tasks.spawn(async move {
            let response = guarded.call(&guarded.tokens[i % guarded.tokens.len()]).await;
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            (response.status(), retry_after, response.headers().contains_key("www-authenticate"))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (status, retry_after, challenge) = joined.expect("no request panics");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: keys never loaded");
        assert!(retry_after.is_some_and(|s| s > 0), "{name}: 503 carries Retry-After");
        assert!(!challenge, "{name}: no challenge: the token may be fine");
    }
    let took = started.elapsed();
    assert!(took <= TIMEOUT * 2 + Duration::from_secs(1) + MARGIN, "{name}: 200 cold requests took {took:?}");
    took
}

/// Polls with valid tokens until one passes; then 200 concurrent requests all pass.
async fn all_pass_once_back(guarded: &Arc<Guarded>, name: &str) -> Duration {
    let started = Instant::now();
    while guarded.call(&guarded.tokens[0]).await.status() != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(15), "{name}: still unavailable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = started.elapsed();
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let guarded = guarded.clone();
        tasks.spawn(async move { guarded.call(&guarded.tokens[i % guarded.tokens.len()]).await.status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("no request panics"), StatusCode::OK, "{name}: after recovery");
    }
    back
}

fn cold_guarded(issuer: &TestIssuer, store: KeyStore) -> Arc<Guarded> {
    Arc::new(Guarded::new(issuer, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_against_a_down_jwks_answers_503_then_recovers() -> TestResult {
    let cooldown = Duration::from_secs(1);

    // The JWKS endpoint drops every connection.
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Down);
    let store =
        KeyStore::builder().jwks_uri(issuer.jwks_uri()).unknown_kid_cooldown(cooldown).timeout(TIMEOUT).build()?;
    let guarded = cold_guarded(&issuer, store);
    let took = all_unavailable(&guarded, "jwks down").await;
    let fetches = issuer.requests(Endpoint::Jwks);
    // On-demand fetches at most once per cooldown, plus retries backing off from 0.8 s.
    let allowed = per_cooldown(took, cooldown) + (took.as_millis() / 800) as u64 + 1;
    assert!(fetches <= allowed, "jwks down: {fetches} fetches for 200 cold requests");
    issuer.clear_faults();
    let back = all_pass_once_back(&guarded, "jwks down").await;
    println!(
        "cold start, jwks down: 200 x 503 in {took:?} with {fetches} fetches; back {back:?} after the fault cleared"
    );

    // Nothing listens on the JWKS port at all, until a server takes it.
    let port = crate::support::server::closed_port().await;
    let store = KeyStore::builder()
        .jwks_uri(format!("http://{port}/jwks"))
        .unknown_kid_cooldown(cooldown)
        .timeout(TIMEOUT)
        .build()?;
    let guarded = cold_guarded(&issuer, store);
    let took = all_unavailable(&guarded, "connection refused").await;
    let server = Scripted::bind(port, Behaviour::Respond(json(&issuer.jwks()))).await;
    let back = all_pass_once_back(&guarded, "connection refused").await;
    println!("cold start, connection refused: 200 x 503 in {took:?}; back {back:?} after a server took the port");
    drop(server);

    // Discovery down: both metadata documents fail.
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Down);
    issuer.set_fault(Endpoint::OAuthServerMetadata, Fault::Status(503));
    let store = KeyStore::builder().issuer(issuer.issuer()).unknown_kid_cooldown(cooldown).timeout(TIMEOUT).build()?;
    let guarded = cold_guarded(&issuer, store);
    let took = all_unavailable(&guarded, "discovery down").await;
    assert_eq!(issuer.requests(Endpoint::Jwks), 0, "no JWKS without discovery");
    issuer.clear_faults();
    let back = all_pass_once_back(&guarded, "discovery down").await;
    println!("cold start, discovery down: 200 x 503 in {took:?}; back {back:?} after the fault cleared");

    // The JWKS stalls: requests wait for the bounded first fetch only.
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Stall);
    let store =
        KeyStore::builder().jwks_uri(issuer.jwks_uri()).unknown_kid_cooldown(cooldown).timeout(TIMEOUT).build()?;
    let guarded = cold_guarded(&issuer, store);
    let took = all_unavailable(&guarded, "jwks stalled").await;
    issuer.clear_faults();
    let back = all_pass_once_back(&guarded, "jwks stalled").await;
    println!("cold start, jwks stalled: 200 x 503 in {took:?}; back {back:?} after the fault cleared");
    Ok(())
}
