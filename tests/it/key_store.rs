//! The key store over real HTTP on 127.0.0.1: discovery, rotation, unknown-`kid`
//! floods, outages, the refresh schedule, limits, injected clients, shutdown and
//! redirects.
#![cfg(feature = "testing")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tower_oauth::testing::{Endpoint, Fault, TestIssuer, TestKey};
use tower_oauth::{Algorithm, BuildError, FetchError, KeySet, KeyStore, ValidationError, Validator};

use crate::support::api::validator;
use crate::support::server::{Behaviour, Scripted, Seen, chunked, json, response};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How long a healthy store on loopback may take to load its first key set.
const LOAD: Duration = Duration::from_secs(10);

/// A validator that trusts `issuer` with the keys of `store`.
fn validator_for(issuer: &TestIssuer, store: &KeyStore) -> Result<Validator, BuildError> {
    Validator::builder().issuer_with_keys(issuer.issuer(), store.clone()).audience(issuer.audience()).build()
}

/// Polls `condition` every 10 ms; panics after `deadline`. Returns how long it took.
async fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Rotates the issuer's keys off the runtime threads (RSA generation is slow).
async fn rotate(issuer: &TestIssuer) -> TestResult {
    let issuer = issuer.clone();
    tokio::task::spawn_blocking(move || issuer.rotate_keys()).await?;
    Ok(())
}

/// A valid access token for `iss`/`aud`, signed by `key` with its `kid`.
fn token_signed_by(key: &TestKey, iss: &str, aud: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"});
    let claims = json!({"iss": iss, "sub": "someone", "aud": aud, "iat": now, "exp": now + 300});
    key.sign_compact(&header.to_string(), &claims.to_string())
}

/// A minimal issuer at the server's own base URL: metadata (both well-known
/// locations) and a JWK Set.
fn issuer_routes(jwks: Value) -> impl Fn(&Seen, &str) -> Vec<u8> + Send + Sync + 'static {
    move |request: &Seen, base: &str| match request.target.as_str() {
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
            json(&json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}))
        }
        "/jwks" => json(&jwks),
        _ => response(404, &[], b""),
    }
}

// ---------------------------------------------------------------------------------
// 1. Discovery
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_found_through_openid_connect_discovery() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::builder().issuer(issuer.issuer()).build()?;
    assert!(store.wait_until_loaded(LOAD).await);

    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 0);
    assert_eq!(issuer.requests(Endpoint::Jwks), 1);
    assert_eq!(store.fetch_attempts(), 1, "discovery and JWKS count as one attempt");
    assert_eq!(store.fetch_failures(), 0);
    let keys = store.keys().expect("loaded");
    assert!(keys.contains_kid(issuer.current_key(Algorithm::RS256).kid()));

    let validator = validator_for(&issuer, &store)?;
    validator.validate(&issuer.mint().sign()).await?;
    validator.validate(&issuer.mint().alg(Algorithm::ES256).sign()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_found_through_rfc8414_metadata_when_the_oidc_document_is_missing() -> TestResult {
    let issuer = TestIssuer::builder().path_prefix("/auth/realms/provider").start().await?;
    issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Status(404));
    assert!(issuer.issuer().ends_with("/auth/realms/provider"));

    let store = KeyStore::builder().issuer(issuer.issuer()).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 1);
    assert_eq!(issuer.requests(Endpoint::Jwks), 1);
    assert_eq!(store.fetch_failures(), 0, "a missing OIDC document is not a failed fetch");
    validator_for(&issuer, &store)?.validate(&issuer.mint().sign()).await?;

    // The validator's own discovery takes the same path.
    let validator = validator(&issuer);
    validator.validate(&issuer.mint().sign()).await?;
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_key_set_costs_a_304_and_keeps_its_keys() -> TestResult {
    // A JWKS endpoint that names its version (ETag and Last-Modified) and answers 304
    // when asked about the current one; the issuer serves the real keys.
    let issuer = TestIssuer::start().await?;
    let body = issuer.jwks().to_string();
    const ETAG: &str = "\"v1\"";
    const MODIFIED: &str = "Wed, 02 Dec 2026 10:00:00 GMT";
    let server = Scripted::routes(move |request, _base| {
        let current = request.header("if-none-match") == Some(ETAG);
        if current {
            response(304, &[("etag", ETAG), ("cache-control", "max-age=120")], b"")
        } else {
            let headers = [("content-type", "application/json"), ("etag", ETAG), ("last-modified", MODIFIED)];
            response(200, &headers, body.as_bytes())
        }
    })
    .await;
    let store = KeyStore::builder().jwks_uri(server.url("/jwks")).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let validator = validator_for(&issuer, &store)?;
    validator.validate(&issuer.mint().sign()).await?;

    // Two more fetches: each asks about the version it holds and gets a 304.
    assert!(store.refresh().await);
    assert!(store.refresh().await);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("if-none-match"), None, "the first fetch is plain");
    for later in &seen[1..] {
        assert_eq!(later.header("if-none-match"), Some(ETAG));
        assert_eq!(later.header("if-modified-since"), Some(MODIFIED));
    }
    // The keys are still there, and still verify.
    assert_eq!(store.fetch_failures(), 0);
    validator.validate(&issuer.mint().sign()).await?;
    validator.validate(&issuer.mint().alg(Algorithm::ES256).sign()).await?;
    assert_eq!(server.seen().len(), 3, "no fetch for known keys");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_document_looked_up_again_costs_a_304() -> TestResult {
    // Metadata with an ETag, answered 304 when asked about it; the JWKS behind it fails
    // once, so that the store looks its jwks_uri up again.
    let issuer = TestIssuer::start().await?;
    let jwks = issuer.jwks().to_string();
    const ETAG: &str = "\"meta-1\"";
    let jwks_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = jwks_requests.clone();
    let server = Scripted::routes(move |request, base| match request.path.as_str() {
        "/.well-known/openid-configuration" if request.header("if-none-match") == Some(ETAG) => {
            response(304, &[("etag", ETAG)], b"")
        }
        "/.well-known/openid-configuration" => {
            let body = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
            response(200, &[("content-type", "application/json"), ("etag", ETAG)], body.as_bytes())
        }
        "/jwks" if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 => response(500, &[], b""),
        "/jwks" => response(200, &[("content-type", "application/json")], jwks.as_bytes()),
        _ => response(404, &[], b""),
    })
    .await;
    let store = KeyStore::builder().issuer(server.url("")).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    assert!(!store.refresh().await, "the JWKS fails once");
    assert!(store.refresh().await, "looked up again, then fetched");
    let metadata: Vec<_> =
        server.seen().into_iter().filter(|seen| seen.path == "/.well-known/openid-configuration").collect();
    assert_eq!(metadata.len(), 2, "{metadata:?}");
    assert_eq!(metadata[0].header("if-none-match"), None);
    assert_eq!(metadata[1].header("if-none-match"), Some(ETAG), "the second lookup is conditional");
    assert_eq!(jwks_requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    let validator =
        Validator::builder().issuer_with_keys(server.url(""), store.clone()).audience(issuer.audience()).build()?;
    validator.validate(&issuer.mint().issuer(&server.url("")).sign()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_that_was_not_asked_for_is_a_failed_fetch() -> TestResult {
    let server = Scripted::start(response(304, &[], b"")).await;
    let store = KeyStore::builder().jwks_uri(server.url("/jwks")).timeout(Duration::from_secs(2)).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.is_loaded());
    assert!(matches!(store.last_error(), Some(FetchError::Status(status)) if status.as_u16() == 304));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_names_another_issuer_is_refused() -> TestResult {
    // The metadata points at a perfectly good JWKS, but names another issuer: a mix-up.
    let real = TestIssuer::start().await?;
    let jwks_uri = real.jwks_uri();
    let server = Scripted::routes(move |request, _base| match request.target.as_str() {
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
            json(&json!({"issuer": "http://127.0.0.1:1", "jwks_uri": jwks_uri}))
        }
        _ => response(404, &[], b""),
    })
    .await;

    let store = KeyStore::builder().issuer(server.url("")).timeout(Duration::from_secs(2)).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.is_loaded());
    assert_eq!(real.requests(Endpoint::Jwks), 0, "the JWKS of a mismatched document is never fetched");
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
    assert!(paths.iter().any(|p| p == "/.well-known/openid-configuration"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/.well-known/oauth-authorization-server"), "{paths:?}");
    assert!(!store.refresh().await);

    // A token that claims the configured issuer cannot be judged: 503, not 401.
    let validator = Validator::builder().issuer_with_keys(server.url(""), store.clone()).audience("api").build()?;
    let token = real.mint().issuer(&server.url("")).audience("api").sign();
    assert_eq!(validator.validate(&token).await.err(), Some(ValidationError::KeysUnavailable));
    assert_eq!(real.requests(Endpoint::Jwks), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_jwks_uri_over_plain_http_off_loopback_is_refused() -> TestResult {
    let server = Scripted::routes(|request, base| match request.target.as_str() {
        "/.well-known/openid-configuration" => json(&json!({"issuer": base, "jwks_uri": "http://203.0.113.1/jwks"})),
        _ => response(404, &[], b""),
    })
    .await;
    let store = KeyStore::builder().issuer(server.url("")).timeout(Duration::from_secs(5)).build()?;
    let took = wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(took < Duration::from_secs(3), "refused without contacting the host: {took:?}");
    assert!(!store.is_loaded());
    Ok(())
}

// ---------------------------------------------------------------------------------
// 2. Rotation
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_a_freshly_rotated_key_validates_on_the_first_try() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let validator = validator(&issuer);
    let old = issuer.mint().sign();
    validator.validate(&old).await?;
    let jwks_before = issuer.requests(Endpoint::Jwks);
    let discovery_before = issuer.requests(Endpoint::OpenIdConfiguration);
    assert_eq!(jwks_before, 1);

    let old_kid = issuer.current_key(Algorithm::RS256).kid().to_owned();
    rotate(&issuer).await?;
    assert_ne!(issuer.current_key(Algorithm::RS256).kid(), old_kid);
    let new = issuer.mint().sign();
    assert_eq!(
        validator.validate_with_current_keys(&new).err(),
        Some(ValidationError::UnknownKey),
        "the new key is not loaded yet"
    );

    // The request waits for the one on-demand fetch instead of failing.
    validator.validate(&new).await?;
    assert_eq!(issuer.requests(Endpoint::Jwks), jwks_before + 1, "exactly one extra JWKS fetch");
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), discovery_before, "the jwks_uri is remembered");

    // Both keys are now known: no more fetches for either.
    validator.validate(&old).await?;
    validator.validate(&issuer.mint().sign()).await?;
    validator.validate(&issuer.mint().alg(Algorithm::ES256).sign()).await?;
    assert_eq!(issuer.requests(Endpoint::Jwks), jwks_before + 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_retired_key_are_rejected_as_unknown_after_a_refresh() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::builder().issuer(issuer.issuer()).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let validator = validator_for(&issuer, &store)?;
    let old_rs = issuer.mint().sign();
    let old_es = issuer.mint().alg(Algorithm::ES256).sign();
    validator.validate(&old_rs).await?;
    validator.validate(&old_es).await?;

    rotate(&issuer).await?;
    issuer.retire_old_keys();
    assert!(store.refresh().await);

    let new = issuer.mint().sign();
    validator.validate_with_current_keys(&new)?;
    for old in [&old_rs, &old_es] {
        assert_eq!(validator.validate_with_current_keys(old).err(), Some(ValidationError::UnknownKey));
        assert_eq!(validator.validate(old).await.err(), Some(ValidationError::UnknownKey));
    }
    Ok(())
}

/// Several requests that carry the new `kid` at the same moment, right after a rotation.
///
/// The first claims the on-demand fetch; the others must join that claimed fetch, even
/// before the background task has started it, rather than give up because the cooldown
/// was just used. (Regression: they were once rejected with `UnknownKey` in that window;
/// a current-thread runtime makes the window deterministic.)
#[tokio::test]

async fn concurrent_requests_with_a_freshly_rotated_kid_all_wait_for_the_fetch() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let validator = validator_for(&issuer, &store)?;
    issuer.rotate_keys();
    let token = issuer.mint().sign();

    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let (validator, token) = (validator.clone(), token.clone());
        tasks.spawn(async move { validator.validate(&token).await.err() });
    }
    let mut rejected = 0;
    while let Some(result) = tasks.join_next().await {
        if result?.is_some() {
            rejected += 1;
        }
    }
    assert_eq!(issuer.requests(Endpoint::Jwks), 2, "one on-demand fetch");
    assert_eq!(rejected, 0, "{rejected} of 10 requests with the new kid were rejected");
    Ok(())
}

/// A JWK Set that can be changed while the scripted server serves it.
fn switchable_jwks(initial: Value) -> (Arc<Mutex<Value>>, impl Fn(&Seen, &str) -> Vec<u8> + Send + Sync + 'static) {
    let current = Arc::new(Mutex::new(initial));
    let served = current.clone();
    (current, move |_: &Seen, _: &str| json(&served.lock().unwrap()))
}

/// A store on a JWKS that answers after 500 ms with the set it had when asked, and a
/// fetch under way (a scheduled one, say) that has already read `old`'s set. Returns
/// the store, the switch, the server and the task awaiting that earlier fetch.
async fn store_with_a_fetch_under_way(
    old: &TestKey,
) -> Result<(KeyStore, Arc<Mutex<Value>>, Scripted, tokio::task::JoinHandle<bool>), std::io::Error> {
    let (jwks, reply) = switchable_jwks(json!({"keys": [old.public_jwk()]}));
    let server =
        Scripted::routes(move |request, base| Behaviour::delayed(Duration::from_millis(500), reply(request, base)))
            .await;
    let store = KeyStore::builder()
        .jwks_uri(server.url("/jwks"))
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(std::io::Error::other)?;
    assert!(store.wait_until_loaded(LOAD).await);
    let earlier = tokio::spawn({
        let store = store.clone();
        async move { store.refresh().await }
    });
    wait_for("the earlier fetch to reach the server", LOAD, || server.count() == 2).await;
    Ok((store, jwks, server, earlier))
}

/// `refresh()` fetches now and waits for a fetch that starts after the call, so a key
/// published before the call is loaded when it returns `true`, even if an older fetch
/// was under way. (Regression: it once waited for that older fetch instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn refresh_loads_keys_published_before_it_was_called() -> TestResult {
    let (old, new) = (TestKey::generate(Algorithm::ES256), TestKey::generate(Algorithm::ES256));
    let (store, jwks, _server, earlier) = store_with_a_fetch_under_way(&old).await?;

    *jwks.lock().unwrap() = json!({"keys": [old.public_jwk(), new.public_jwk()]});
    assert!(store.refresh().await);
    assert!(earlier.await?);
    assert!(
        store.keys().expect("loaded").contains_kid(new.kid()),
        "refresh() returned true, but the key published before the call is not loaded"
    );
    Ok(())
}

/// The same rule on the request path: a token with a new `kid` that arrives while an
/// older fetch is under way gets a fetch that starts after it, and validates. (Regression:
/// it once joined the older fetch, which could not contain the key, and got a 401.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_new_kid_that_arrives_during_an_older_fetch_still_validates() -> TestResult {
    let (old, new) = (TestKey::generate(Algorithm::ES256), TestKey::generate(Algorithm::ES256));
    let (store, jwks, server, earlier) = store_with_a_fetch_under_way(&old).await?;
    let validator = Validator::builder().issuer_with_keys(server.url(""), store).audience("api").build()?;

    *jwks.lock().unwrap() = json!({"keys": [old.public_jwk(), new.public_jwk()]});
    let result = validator.validate(&token_signed_by(&new, &server.url(""), "api")).await;
    assert!(earlier.await?);
    assert_eq!(result.err(), None, "the first token signed by the new key was rejected");
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3. Unknown-kid flood
// ---------------------------------------------------------------------------------
/// Tokens with made-up `kid`s (signed by a stranger) for the issuer.
fn made_up_kids(issuer: &TestIssuer, n: usize) -> Vec<String> {
    let foreign = TestKey::generate(Algorithm::EdDSA);
    let salt = TestKey::generate(Algorithm::EdDSA).kid().to_owned();
    (0..n).map(|i| issuer.mint().header("kid", format!("{salt}-{i}")).sign_with(&foreign)).collect()
}

#[tokio::test]
async fn a_rotation_right_after_three_made_up_kids_is_accepted_on_its_first_request() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let validator = validator(&issuer);
    validator.validate(&issuer.mint().sign()).await?;
    let jwks_before = issuer.requests(Endpoint::Jwks);

    // Three made-up kids in quick succession: each waits out what is left of the short
    // cooldown, then fetches (and finds nothing).
    for junk in made_up_kids(&issuer, 3) {
        assert_eq!(validator.validate(&junk).await.err(), Some(ValidationError::UnknownKey));
    }
    assert_eq!(issuer.requests(Endpoint::Jwks), jwks_before + 3);

    // The issuer publishes a new key and signs with it at once.
    rotate(&issuer).await?;
    let started = Instant::now();
    validator.validate(&issuer.mint().sign()).await?;
    let waited = started.elapsed();
    assert!(waited <= Duration::from_secs(2), "the first token of the new key waited {waited:?}");
    assert_eq!(issuer.requests(Endpoint::Jwks), jwks_before + 4);
    println!("rotation after 3 made-up kids: first token of the new key accepted after {waited:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_flood_of_made_up_kids_a_rotation_is_served_at_once() -> TestResult {
    let issuer = TestIssuer::start().await?;
    // The default ceiling: 30 s. The flood drives the cooldown well beyond the 2 s a
    // request waits; the new kid, on every token, earns its fetch by repetition.
    let ceiling = Duration::from_secs(30);
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).refresh_interval(Duration::from_secs(3600)).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let validator = validator_for(&issuer, &store)?;
    let jwks_before = issuer.requests(Endpoint::Jwks);

    // 100 made-up kids a second for 12 s, each different.
    let junk = made_up_kids(&issuer, 1200);
    let flood_started = Instant::now();
    let flood = {
        let validator = validator.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for token in junk {
                let validator = validator.clone();
                tasks.spawn(async move { validator.validate(&token).await.err() });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut rejected = 0;
            while let Some(error) = tasks.join_next().await {
                assert_eq!(error.expect("no task panics"), Some(ValidationError::UnknownKey));
                rejected += 1;
            }
            rejected
        })
    };
    // 9 s into the flood the next paced fetch is 7 s away (fetches at 0, 0.25, 0.75,
    // 1.75, 3.75, 7.75, then 15.75 s): the issuer rotates, and valid tokens of the new key
    // arrive every 50 ms.
    tokio::time::sleep(Duration::from_secs(9)).await;
    rotate(&issuer).await?;
    let published = Instant::now();
    let before_publication = issuer.requests(Endpoint::Jwks) - jwks_before;
    // Tokens of the new key, every 50 ms, each request on its own as real traffic is.
    let mut valid = JoinSet::new();
    while published.elapsed() < Duration::from_secs(3) {
        let (validator, token) = (validator.clone(), issuer.mint().sign());
        valid.spawn(async move { validator.validate(&token).await.map(|_| published.elapsed()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut refused, mut first_ok) = (0, None::<Duration>);
    while let Some(result) = valid.join_next().await {
        match result? {
            Ok(done) => first_ok = Some(first_ok.map_or(done, |first| first.min(done))),
            Err(error) => {
                assert_eq!(error, ValidationError::UnknownKey);
                refused += 1;
            }
        }
    }
    assert_eq!(flood.await?, 1200);
    let served_after = first_ok.expect("the new key is served");
    // The first tokens of the new key wait, for the next paced fetch when it is due
    // within their 2 s, or else for the fetch their repetition earns: none is refused,
    // and the key is served within that wait of publication.
    assert_eq!(refused, 0, "tokens of the new key refused");
    assert!(served_after <= Duration::from_millis(1000), "served {served_after:?} after publication");
    // The pacing before the rotation, then again from its start: the fetch that brought
    // the new key reset the cooldown.
    let fetches = issuer.requests(Endpoint::Jwks) - jwks_before;
    let most = crate::support::backoff::most_on_demand_fetches;
    // Plus the one fetch the new kid earned by repetition.
    let allowed = most(published - flood_started, ceiling) + most(published.elapsed(), ceiling) + 1;
    assert!(before_publication <= most(published - flood_started, ceiling), "{before_publication} fetches before");
    assert!(
        fetches <= allowed,
        "{fetches} fetches (at most {allowed}; {before_publication} in the {:?} before publication, the rest in {:?})",
        published - flood_started,
        published.elapsed()
    );
    println!(
        "flood of 1200 made-up kids in 12 s with a {ceiling:?} ceiling: {fetches} JWKS fetches; \
         the new key served {served_after:?} after publication, {refused} of its tokens refused before"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_keys_no_more_than_the_pacing_allows() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let cooldown = Duration::from_secs(1);
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .refresh_interval(Duration::from_secs(3600))
        .unknown_kid_cooldown(cooldown)
        .build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let validator = validator_for(&issuer, &store)?;
    let valid = issuer.mint().sign();

    // 10,000 well-formed tokens signed by a stranger, each with its own made-up kid.
    let foreign = TestKey::generate(Algorithm::EdDSA);
    let salt = TestKey::generate(Algorithm::EdDSA).kid().to_owned();
    let flood: Vec<Vec<String>> = (0..10)
        .map(|chunk| {
            (0..1000).map(|i| issuer.mint().header("kid", format!("{salt}-{chunk}-{i}")).sign_with(&foreign)).collect()
        })
        .collect();

    let jwks_before = issuer.requests(Endpoint::Jwks);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (n, chunk) in flood.into_iter().enumerate() {
        if n > 0 {
            // Spread the flood over a few cooldown windows.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for token in chunk {
            let validator = validator.clone();
            tasks.spawn(async move { (false, validator.validate(&token).await.err()) });
        }
        for _ in 0..5 {
            let (validator, token) = (validator.clone(), valid.clone());
            tasks.spawn(async move { (true, validator.validate(&token).await.err()) });
        }
    }
    let (mut rejected, mut passed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            (true, error) => {
                assert_eq!(error, None, "a valid token during the flood");
                passed += 1;
            }
            (false, error) => {
                assert_eq!(error, Some(ValidationError::UnknownKey));
                rejected += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    assert_eq!((rejected, passed), (10_000, 50));

    let extra = issuer.requests(Endpoint::Jwks) - jwks_before;
    let allowed = crate::support::backoff::most_on_demand_fetches(elapsed, cooldown);
    assert!(extra >= 1, "an unknown kid triggers an on-demand fetch");
    assert!(extra <= allowed, "{extra} fetches in {elapsed:?} with a {cooldown:?} cooldown (at most {allowed})");
    assert_eq!(store.fetch_failures(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------------
// 4. Outages
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_any_kind_keeps_the_last_good_keys() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let timeout = Duration::from_millis(500);
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .timeout(timeout)
        .refresh_interval(Duration::from_secs(3600))
        .build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    let good = store.keys().expect("loaded");
    let validator = validator_for(&issuer, &store)?;
    let tokens = [issuer.mint().sign(), issuer.mint().alg(Algorithm::ES256).sign()];

    // Keys no signature can be checked with: a JWK Set, but nothing usable in it.
    let mut encryption_key = issuer.current_key(Algorithm::RS256).public_jwk();
    encryption_key["use"] = "enc".into();
    encryption_key["kid"] = "enc".into();
    let unusable = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
        encryption_key,
        {"kty": "XYZ", "kid": "alien"},
        {"kty": "EC", "kid": "p192", "crv": "P-192", "x": "AA", "y": "AA"},
    ]});

    enum Breakage {
        Fault(Fault),
        Override(Value),
    }
    let cases = [
        ("connection dropped", Breakage::Fault(Fault::Down)),
        ("500", Breakage::Fault(Fault::Status(500))),
        ("garbage", Breakage::Fault(Fault::Garbage)),
        ("2 MiB body over the default 1 MiB limit", Breakage::Fault(Fault::Oversized(2 * 1024 * 1024))),
        ("delayed beyond the timeout", Breakage::Fault(Fault::Delay(Duration::from_secs(10)))),
        ("stalled body", Breakage::Fault(Fault::Stall)),
        ("429 with Retry-After", Breakage::Fault(Fault::TooManyRequests { retry_after: Some(1) })),
        ("503", Breakage::Fault(Fault::Status(503))),
        ("empty key set", Breakage::Override(json!({"keys": []}))),
        ("not a key set", Breakage::Override(json!({"keys": "none"}))),
        ("keys of unusable types", Breakage::Override(unusable)),
    ];
    // The endpoint never works between two cases, so no scheduled fetch can succeed.
    for (name, breakage) in cases {
        match breakage {
            Breakage::Fault(fault) => issuer.set_fault(Endpoint::Jwks, fault),
            Breakage::Override(jwks) => {
                issuer.set_jwks_override(Some(jwks));
                issuer.clear_fault(Endpoint::Jwks);
            }
        }
        let (attempts, failures) = (store.fetch_attempts(), store.fetch_failures());
        let started = Instant::now();
        let refreshed = store.refresh().await;
        let took = started.elapsed();
        assert!(!refreshed, "{name}: refresh must fail");
        assert!(store.fetch_attempts() > attempts, "{name}: a fetch was attempted");
        assert!(store.fetch_failures() > failures, "{name}: the fetch ended, as a failure, before refresh returned");
        assert!(took < timeout + Duration::from_millis(900), "{name}: took {took:?} with a {timeout:?} timeout");
        assert!(Arc::ptr_eq(&store.keys().expect("still loaded"), &good), "{name}: the last good keys stay");
        for token in &tokens {
            validator.validate_with_current_keys(token)?;
            validator.validate(token).await?;
        }
    }

    issuer.clear_faults();
    issuer.set_jwks_override(None);
    assert!(store.refresh().await, "the endpoint is back");
    assert!(!Arc::ptr_eq(&store.keys().expect("loaded"), &good), "a fresh set replaced the old one");
    for token in &tokens {
        validator.validate(token).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_loaded_give_keys_unavailable_without_hanging() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let token = issuer.mint().sign();

    // The JWKS answers 500 from the start.
    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    let timeout = Duration::from_secs(1);
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).timeout(timeout).build()?;
    let validator = validator_for(&issuer, &store)?;
    let started = Instant::now();
    let error = validator.validate(&token).await.err();
    assert_eq!(error, Some(ValidationError::KeysUnavailable));
    assert!(error.is_some_and(|e| e.is_server_error()));
    assert!(started.elapsed() < timeout + Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(validator.validate_with_current_keys(&token).err(), Some(ValidationError::KeysUnavailable));
    assert!(!store.is_loaded());

    // The JWKS stalls from the start: the request waits for the (bounded) first fetch only.
    let stalled = TestIssuer::start().await?;
    stalled.set_fault(Endpoint::Jwks, Fault::Stall);
    let timeout = Duration::from_millis(500);
    let store = KeyStore::builder().jwks_uri(stalled.jwks_uri()).timeout(timeout).build()?;
    let validator = validator_for(&stalled, &store)?;
    let started = Instant::now();
    assert_eq!(validator.validate(&stalled.mint().sign()).await.err(), Some(ValidationError::KeysUnavailable));
    assert!(started.elapsed() < timeout + Duration::from_secs(1), "{:?}", started.elapsed());

    // Discovery down (both metadata documents): the validator's own store.
    let undiscoverable = TestIssuer::start().await?;
    undiscoverable.set_fault(Endpoint::OpenIdConfiguration, Fault::Status(500));
    undiscoverable.set_fault(Endpoint::OAuthServerMetadata, Fault::Status(500));
    let validator = Validator::builder().issuer(undiscoverable.issuer()).audience(undiscoverable.audience()).build()?;
    let started = Instant::now();
    let error = validator.validate(&undiscoverable.mint().sign()).await.err();
    assert_eq!(error, Some(ValidationError::KeysUnavailable));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(undiscoverable.requests(Endpoint::Jwks), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_fetch_is_retried_until_the_keys_load() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(None).start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    // Backoff is capped at the interval, so retries come every ~100 ms here.
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).refresh_interval(Duration::from_millis(100)).build()?;
    wait_for("three failed fetches", LOAD, || store.fetch_failures() >= 3).await;
    assert!(!store.is_loaded());
    issuer.clear_faults();
    assert!(store.wait_until_loaded(LOAD).await, "recovered without an explicit refresh");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_postpones_the_next_scheduled_fetch() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(None).start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::TooManyRequests { retry_after: Some(2) });
    // Without Retry-After the next try would come after ~100 ms (the interval caps backoff).
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).refresh_interval(Duration::from_millis(100)).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    let failed_at = Instant::now();
    let requests = issuer.requests(Endpoint::Jwks);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(issuer.requests(Endpoint::Jwks), requests, "no fetch before Retry-After elapses");

    issuer.clear_faults();
    assert!(store.wait_until_loaded(LOAD).await);
    assert!(failed_at.elapsed() >= Duration::from_millis(1500), "{:?}", failed_at.elapsed());
    Ok(())
}

/// A failed fetch is retried after "1 s doubling up to the interval", as the module docs
/// say: the first retry comes after about 1 s (±20 %), not 2 s as it once did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn the_first_retry_after_a_failure_comes_after_about_one_second() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    let failed_at = Instant::now();
    issuer.clear_faults();
    assert!(store.wait_until_loaded(Duration::from_secs(5)).await);
    let retry = failed_at.elapsed();
    assert!(retry < Duration::from_millis(1500), "first retry after {retry:?}; documented: 1 s ±20 %");
    Ok(())
}

/// `.timeout(d)` is the limit for one refresh, also above 10 s: the default HTTP client
/// sets no timeout of its own that would cut it short (it once did, at reqwest's 10 s).
/// Slow: about 10.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_configured_timeout_above_ten_seconds_is_honoured() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).timeout(Duration::from_secs(20)).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    issuer.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_millis(10_500)));
    let started = Instant::now();
    let refreshed = store.refresh().await;
    let took = started.elapsed();
    assert!(refreshed, "a 10.5 s answer within a 20 s timeout failed after {took:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------
// 6. Schedule
// ---------------------------------------------------------------------------------

/// Loads a store, then measures how long `more` further scheduled JWKS fetches take.
async fn time_scheduled_fetches(issuer: &TestIssuer, store: &KeyStore, more: u64) -> Duration {
    assert!(store.wait_until_loaded(LOAD).await);
    let start = issuer.requests(Endpoint::Jwks);
    wait_for("scheduled fetches", LOAD, || issuer.requests(Endpoint::Jwks) >= start + more).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_within_the_bounds_sets_the_refresh_schedule() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(Some(1)).start().await?;
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .refresh_interval(Duration::from_millis(50))
        .max_age_bounds(Duration::from_millis(100), Duration::from_secs(30))
        .build()?;
    // Every 1 s (max-age), not every 50 ms (the interval).
    let took = time_scheduled_fetches(&issuer, &store, 2).await;
    assert!(took >= Duration::from_millis(1500), "two refetches after {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_above_the_upper_bound_is_capped() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(Some(3600)).start().await?;
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .refresh_interval(Duration::from_secs(3600))
        .max_age_bounds(Duration::from_millis(50), Duration::from_millis(250))
        .build()?;
    // Every 250 ms: three refetches well within the deadline, not after an hour.
    let took = time_scheduled_fetches(&issuer, &store, 3).await;
    assert!(took >= Duration::from_millis(500), "three refetches after {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_below_the_lower_bound_is_raised() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(Some(0)).start().await?;
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .refresh_interval(Duration::from_millis(20))
        .max_age_bounds(Duration::from_millis(400), Duration::from_secs(30))
        .build()?;
    // max-age=0 would mean "fetch continuously"; the lower bound makes it every 400 ms.
    let took = time_scheduled_fetches(&issuer, &store, 2).await;
    assert!(took >= Duration::from_millis(600), "two refetches after {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_max_age_the_refresh_interval_applies() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(None).start().await?;
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .refresh_interval(Duration::from_millis(300))
        .max_age_bounds(Duration::from_secs(20), Duration::from_secs(60))
        .build()?;
    let took = time_scheduled_fetches(&issuer, &store, 3).await;
    assert!(took >= Duration::from_millis(600), "three refetches after {took:?}");
    assert_eq!(store.fetch_failures(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------------
// 7. Limits and build-time checks
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_larger_than_the_body_limit_is_refused() -> TestResult {
    let issuer = TestIssuer::start().await?;
    assert!(issuer.jwks().to_string().len() > 1024, "the normal JWK Set is over 1 KiB");

    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).max_body_size(1024).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.is_loaded());
    assert!(!store.refresh().await);

    let roomy = KeyStore::builder().jwks_uri(issuer.jwks_uri()).max_body_size(64 * 1024).build()?;
    assert!(roomy.wait_until_loaded(LOAD).await, "the same set within a larger limit loads");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_key_set_larger_than_the_body_limit_is_refused() -> TestResult {
    // No content-length: the limit has to be enforced while the body streams in.
    let key = TestKey::generate(Algorithm::ES256);
    let mut body = json!({"keys": [key.public_jwk()]}).to_string().into_bytes();
    body.resize(2048, b' ');
    let server = Scripted::routes(move |_, _| chunked(&body, 256)).await;
    let jwks_uri = server.url("/jwks");

    let store = KeyStore::builder().jwks_uri(&jwks_uri).max_body_size(1024).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.is_loaded());

    let roomy = KeyStore::builder().jwks_uri(&jwks_uri).max_body_size(4096).build()?;
    assert!(roomy.wait_until_loaded(LOAD).await, "the same body within a larger limit loads");
    assert!(roomy.keys().expect("loaded").contains_kid(key.kid()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_is_refused_when_building() -> TestResult {
    for url in ["http://example.com", "http://10.0.0.1/jwks", "http://localhost.example/jwks"] {
        let by_issuer = KeyStore::builder().issuer(url).build();
        assert!(matches!(by_issuer, Err(BuildError::Url(FetchError::InsecureUrl))), "issuer {url}: {by_issuer:?}");
        let by_jwks = KeyStore::builder().jwks_uri(url).build();
        assert!(matches!(by_jwks, Err(BuildError::Url(FetchError::InsecureUrl))), "jwks_uri {url}: {by_jwks:?}");
    }
    let validator = Validator::builder().issuer("http://example.com").audience("api").build();
    assert!(matches!(validator, Err(BuildError::Url(FetchError::InsecureUrl))), "{validator:?}");

    // Loopback http and any https are fine. (Port 9 refuses; 192.0.2.1 is TEST-NET-1.)
    for url in ["http://127.0.0.1:9/jwks", "http://localhost:9/jwks", "http://[::1]:9/jwks", "https://192.0.2.1/jwks"] {
        let store = KeyStore::builder().jwks_uri(url).timeout(Duration::from_millis(200)).build();
        assert!(store.is_ok(), "{url}: {store:?}");
    }
    let store = KeyStore::builder().issuer("https://192.0.2.1").timeout(Duration::from_millis(200)).build();
    assert!(store.is_ok(), "{store:?}");

    let invalid = KeyStore::builder().jwks_uri("not a url").build();
    assert!(matches!(invalid, Err(BuildError::Url(FetchError::InvalidUrl))), "{invalid:?}");
    let missing = KeyStore::builder().refresh_interval(Duration::from_secs(1)).build();
    assert!(matches!(missing, Err(BuildError::MissingKeySource)), "{missing:?}");
    Ok(())
}

#[test]
fn building_a_remote_store_outside_a_runtime_fails_with_no_runtime() {
    let store = KeyStore::builder().jwks_uri("http://127.0.0.1:9/jwks").build();
    assert!(matches!(store, Err(BuildError::NoRuntime)), "{store:?}");
    let store = KeyStore::builder().issuer("https://idp.example").build();
    assert!(matches!(store, Err(BuildError::NoRuntime)), "{store:?}");
    let validator = Validator::builder().issuer("https://idp.example").audience("api").build();
    assert!(matches!(validator, Err(BuildError::NoRuntime)), "{validator:?}");

    // A fixed key set needs no runtime.
    let fixed = KeyStore::from_key_set(KeySet::new());
    let validator = Validator::builder().issuer_with_keys("https://idp.example", fixed).audience("api").build();
    assert!(validator.is_ok(), "{validator:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_key_set_never_fetches() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::from_key_set(KeySet::from_jwks(issuer.jwks().to_string().as_bytes())?);
    assert!(store.is_loaded());
    assert!(store.wait_until_loaded(Duration::ZERO).await);
    assert!(store.refresh().await);
    let validator = validator_for(&issuer, &store)?;
    validator.validate(&issuer.mint().sign()).await?;

    let stranger = TestKey::generate(Algorithm::ES256);
    let started = Instant::now();
    let unknown = validator.validate(&issuer.mint().sign_with(&stranger)).await.err();
    assert_eq!(unknown, Some(ValidationError::UnknownKey));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!((store.fetch_attempts(), store.fetch_failures()), (0, 0));
    assert_eq!(issuer.requests(Endpoint::Jwks), 0);
    Ok(())
}

// ---------------------------------------------------------------------------------
// 8. Injected HTTP client
// ---------------------------------------------------------------------------------

fn client_with_marker() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-test-client", reqwest::header::HeaderValue::from_static("1"));
    reqwest::Client::builder().default_headers(headers).build().expect("a client builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_http_client_makes_every_fetch() -> TestResult {
    let key = TestKey::generate(Algorithm::ES256);
    let server = Scripted::routes(issuer_routes(json!({"keys": [key.public_jwk()]}))).await;
    let token = token_signed_by(&key, &server.url(""), "api");

    // Through the key store builder: discovery and JWKS both.
    let store = KeyStore::builder().issuer(server.url("")).http_client(client_with_marker()).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    assert!(store.refresh().await);
    let seen = server.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(paths, ["/.well-known/openid-configuration", "/jwks", "/jwks"]);
    for request in &seen {
        assert_eq!(request.header("x-test-client"), Some("1"), "{request:?}");
    }
    let validator = Validator::builder().issuer_with_keys(server.url(""), store.clone()).audience("api").build()?;
    validator.validate(&token).await?;

    // Through the validator builder, for the stores it creates.
    let validator =
        Validator::builder().issuer(server.url("")).audience("api").http_client(client_with_marker()).build()?;
    validator.validate(&token).await?;
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    for request in &seen {
        assert_eq!(request.header("x-test-client"), Some("1"), "{request:?}");
    }

    // Control: the default client sends no such header.
    let plain = KeyStore::builder().issuer(server.url("")).build()?;
    assert!(plain.wait_until_loaded(LOAD).await);
    let seen = server.seen();
    assert_eq!(seen.len(), 7);
    assert!(seen[5..].iter().all(|request| request.header("x-test-client").is_none()));
    Ok(())
}

// ---------------------------------------------------------------------------------
// 9. Shutdown
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_stops_when_the_last_handle_is_dropped() -> TestResult {
    let issuer = TestIssuer::builder().jwks_max_age(None).start().await?;
    let interval = Duration::from_millis(200);
    let store = KeyStore::builder().jwks_uri(issuer.jwks_uri()).refresh_interval(interval).build()?;
    let validator = validator_for(&issuer, &store)?;
    validator.validate(&issuer.mint().sign()).await?;
    wait_for("a couple of scheduled fetches", LOAD, || issuer.requests(Endpoint::Jwks) >= 3).await;

    // A remaining handle (the store) keeps it running.
    drop(validator);
    let now = issuer.requests(Endpoint::Jwks);
    wait_for("a fetch with only the store left", LOAD, || issuer.requests(Endpoint::Jwks) > now).await;

    drop(store);
    tokio::time::sleep(interval + Duration::from_millis(100)).await; // a fetch in flight may finish
    let settled = issuer.requests(Endpoint::Jwks);
    tokio::time::sleep(interval * 5).await;
    assert_eq!(issuer.requests(Endpoint::Jwks), settled, "no fetch after the last handle is gone");
    Ok(())
}

// ---------------------------------------------------------------------------------
// 10. Redirects
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_plain_http_off_loopback_is_not_followed() -> TestResult {
    let server = Scripted::routes(|_, _| response(302, &[("location", "http://203.0.113.1/jwks")], b"")).await;
    // A long timeout: following the redirect would hang or fail slowly against TEST-NET-3.
    let store = KeyStore::builder().jwks_uri(server.url("/jwks")).timeout(Duration::from_secs(5)).build()?;
    let took = wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(took < Duration::from_secs(2), "refused at once, not after a connection attempt: {took:?}");
    assert!(!store.is_loaded());
    let started = Instant::now();
    assert!(!store.refresh().await);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redirect_never_reaches_its_target() -> TestResult {
    // The target is a real server on this host, reached through an address that is not
    // loopback by the crate's rule (IPv4-mapped IPv6), so contact would be observable.
    let key = TestKey::generate(Algorithm::ES256);
    let target = Scripted::routes(issuer_routes(json!({"keys": [key.public_jwk()]}))).await;
    let mapped = format!("[::ffff:127.0.0.1]:{}", target.port());
    if TcpStream::connect(mapped.as_str()).await.is_err() {
        eprintln!("skipped: IPv4-mapped IPv6 addresses are not reachable here");
        return Ok(());
    }
    let location = format!("http://{mapped}/jwks");
    let redirector = Scripted::routes(move |_, _| response(302, &[("location", &location)], b"")).await;
    let jwks_uri = redirector.url("/jwks");

    let store = KeyStore::builder().jwks_uri(&jwks_uri).timeout(Duration::from_secs(2)).build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.refresh().await);
    assert!(!store.is_loaded());
    assert!(redirector.count() >= 2);
    assert_eq!(target.count(), 0, "the redirect target was contacted");

    // An injected client's own policy applies (reqwest's default follows), but where it
    // lands is still checked: the target is reached, its keys are not used.
    let store = KeyStore::builder()
        .jwks_uri(&jwks_uri)
        .http_client(reqwest::Client::new())
        .timeout(Duration::from_secs(2))
        .build()?;
    wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(!store.is_loaded());
    assert_eq!(target.count(), 1, "reqwest's default policy followed the redirect");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_loopback_is_followed() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let location = issuer.jwks_uri();
    let redirector = Scripted::routes(move |_, _| response(302, &[("location", &location)], b"")).await;
    let store = KeyStore::builder().jwks_uri(redirector.url("/jwks")).build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    assert_eq!((redirector.count(), issuer.requests(Endpoint::Jwks)), (1, 1));
    validator_for(&issuer, &store)?.validate(&issuer.mint().sign()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_redirect_chain_is_cut_short() -> TestResult {
    let redirector = Scripted::routes(|request, base| {
        let hop: u32 = request.target.trim_start_matches("/hop/").parse().unwrap_or(0);
        response(302, &[("location", &format!("{base}/hop/{}", hop + 1))], b"")
    })
    .await;
    let store = KeyStore::builder().jwks_uri(redirector.url("/hop/0")).timeout(Duration::from_secs(5)).build()?;
    let took = wait_for("the first fetch to fail", LOAD, || store.fetch_failures() >= 1).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!store.is_loaded());
    let hits = redirector.count();
    assert!((2..=6).contains(&hits), "{hits} requests for one fetch");
    Ok(())
}

#[tokio::test]
async fn the_last_fetch_error_is_typed_and_cleared_by_a_success() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let store = KeyStore::builder()
        .jwks_uri(issuer.jwks_uri())
        .timeout(Duration::from_millis(500))
        .refresh_interval(Duration::from_secs(3600))
        .build()?;
    assert!(store.wait_until_loaded(LOAD).await);
    assert!(store.last_error().is_none());

    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    assert!(!store.refresh().await);
    assert!(
        matches!(store.last_error().as_ref(), Some(FetchError::Status(s)) if s.as_u16() == 500),
        "{:?}",
        store.last_error()
    );

    issuer.set_fault(Endpoint::Jwks, Fault::Oversized(2 * 1024 * 1024));
    assert!(!store.refresh().await);
    assert!(matches!(store.last_error().as_ref(), Some(FetchError::BodyTooLarge { .. })), "{:?}", store.last_error());
    assert!(store.is_loaded(), "the last good keys stay");

    issuer.clear_faults();
    assert!(store.refresh().await);
    assert!(store.last_error().is_none());
    Ok(())
}
