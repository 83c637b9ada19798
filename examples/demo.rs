//! The crate's main job, end to end, with no set-up and no network beyond 127.0.0.1.
//!
//! Run with: `cargo run --example demo`
//!
//! It starts the embedded test issuer, an axum API behind `BearerAuthLayer`, and a
//! reqwest-middleware client whose `ClientCredentialsMiddleware` obtains, caches and
//! attaches tokens. Then it shows, one numbered line a step: 1. a call without a token
//! (401), 2. a call with a token (200 and the claims the handler saw), 3. a call missing a
//! scope (403), 4. a key rotation picked up without a single failed request, 5. an
//! encrypted (JWE) access token accepted, 6. short-lived tokens refreshed ahead of
//! expiry under traffic, and 7. a DPoP-bound token (RFC 9449) accepted with its proof, and
//! refused when its proof is replayed or when it is sent as a bearer token. It exits
//! non-zero if any step does not behave.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use tower_oauth::bearer::RequireScopeLayer;
use tower_oauth::client::{TokenCache, TokenEndpoint};
use tower_oauth::reqwest::ClientCredentialsMiddleware;
use tower_oauth::testing::{Endpoint, TestEncryptionKey, TestIssuer};
use tower_oauth::validate::DecryptionKeys;
use tower_oauth::validate::dpop::DpopVerifier;
use tower_oauth::{BearerAuthLayer, Claims, DpopKey, Validator};

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
    // A second issuer whose tokens live 2 s, to show refreshes ahead of expiry.
    let short_lived = TestIssuer::builder().token_lifetime(Duration::from_secs(2)).start().await?;
    // A third issuer encrypts its access tokens to the API's key, as some banks' do.
    let api_key = TestEncryptionKey::generate("RSA-OAEP-256");
    let encrypting = TestIssuer::builder().encrypt_access_tokens(api_key.clone()).start().await?;
    let validator = Validator::builder()
        .issuer(issuer.issuer())
        .issuer(short_lived.issuer())
        .issuer(encrypting.issuer())
        .audience(issuer.audience())
        .decryption_keys(DecryptionKeys::from_jwks(api_key.private_jwks().as_bytes())?)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    // DPoP proofs name the URL they are for: the API checks them against its own.
    let dpop = DpopVerifier::builder(&api).build()?;
    let app = Router::new()
        .route("/admin", get(|| async { "welcome, admin" }))
        .route_layer(RequireScopeLayer::new(["admin"]))
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .layer(BearerAuthLayer::new(validator).realm("demo").dpop(dpop));
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("test issuer at {}, API at {api}", issuer.issuer());

    // The outbound side: a token cache on the issuer's token endpoint (client_credentials,
    // scope `read`) behind a reqwest-middleware client.
    let cache = cache_for(&issuer, "read")?;
    let client = client_with(cache.clone());

    // 1. No token (a plain client).
    let response = reqwest::Client::new().get(format!("{api}/me")).send().await?;
    expect(response.status(), StatusCode::UNAUTHORIZED)?;
    println!("1. no token          -> {} with `www-authenticate: {}`", response.status(), challenge(&response));

    // 2. The middleware fetches a token (client_credentials) and attaches it.
    let response = client.get(format!("{api}/me")).send().await?;
    expect(response.status(), StatusCode::OK)?;
    let claims: serde_json::Value = response.json().await?;
    println!(
        "2. with a token      -> 200 OK; the handler saw sub={} client_id={} scope={}",
        claims["sub"], claims["client_id"], claims["scope"]
    );

    // 3. The token lacks the scope /admin requires.
    let response = client.get(format!("{api}/admin")).send().await?;
    expect(response.status(), StatusCode::FORBIDDEN)?;
    println!("3. missing a scope   -> {} with `www-authenticate: {}`", response.status(), challenge(&response));

    // 4. Rotate the issuer's keys under steady traffic from the client, then have its
    //    cache fetch a token signed with the new key: the API has never seen its kid, and
    //    the request that sees it waits for one JWKS fetch.
    let rotation = traffic_across_rotation(&client, &cache, &issuer, &api).await?;
    println!(
        "4. key rotation      -> {} requests across the rotation ({} with the new key's token), {} failed; the new kid took {} JWKS fetch",
        rotation.ok + rotation.failed,
        rotation.after,
        rotation.failed,
        rotation.fetches
    );
    if rotation.failed > 0 || rotation.fetches != 1 {
        return Err("the key rotation was not picked up with one fetch and no failure".into());
    }

    // 5. An encrypted access token: the middleware attaches it like any other; the API
    //    decrypts it, then verifies the signed token inside.
    let jwe_cache = cache_for(&encrypting, "read")?;
    let segments = jwe_cache.token().await?.expose().split('.').count();
    let response = client_with(jwe_cache).get(format!("{api}/me")).send().await?;
    expect(response.status(), StatusCode::OK)?;
    let claims: serde_json::Value = response.json().await?;
    if segments != 5 || claims["iss"] != encrypting.issuer() {
        return Err("the encrypted token was not what was accepted".into());
    }
    println!(
        "5. encrypted token   -> 200 OK; a {segments}-segment JWE (RSA-OAEP-256 + A256GCM) decrypted, its inner RS256 token verified; sub={}",
        claims["sub"]
    );

    // 6. Tokens that live 2 s, under steady traffic: the cache refreshes each one ahead
    //    of its expiry in the background, so no request waits and none fails.
    let refresh = traffic_across_refreshes(&short_lived, &api).await?;
    println!(
        "6. refresh ahead     -> {} requests over {:.1} s with 2 s tokens: {} refreshes, each {:.1} s before expiry; {} failed, slowest {} ms",
        refresh.ok + refresh.failed,
        refresh.elapsed.as_secs_f64(),
        refresh.refreshes,
        refresh.min_margin.as_secs_f64(),
        refresh.failed,
        refresh.slowest.as_millis(),
    );
    if refresh.failed > 0 || refresh.refreshes == 0 {
        return Err("tokens were not refreshed ahead of expiry without failures".into());
    }

    // 7. A DPoP-bound token: the token request carries a proof of the client's key, the
    //    issuer binds the token to it (`cnf.jkt`), and each call carries a fresh proof.
    let key = DpopKey::generate()?;
    let endpoint = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .scope("read")
    .dpop(key.clone())
    .build()?;
    let dpop_cache = TokenCache::new(endpoint)?;
    let response = client_with(dpop_cache.clone()).get(format!("{api}/me")).send().await?;
    expect(response.status(), StatusCode::OK)?;
    let claims: serde_json::Value = response.json().await?;
    if claims["cnf"]["jkt"] != key.thumbprint() {
        return Err("the token was not bound to the client's key".into());
    }
    // The same proof twice, and the token without one, as an attacker who copied them would.
    let token = dpop_cache.token().await?;
    let url: url::Url = format!("{api}/me").parse()?;
    let proof = key.proof(&http::Method::GET, &url, Some(token.expose()), None)?;
    let plain = reqwest::Client::new();
    let send = |authorization: String, proof: Option<&str>| {
        let mut request = plain.get(url.clone()).header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    expect(send(format!("DPoP {}", token.expose()), Some(&proof)).await?.status(), StatusCode::OK)?;
    let replayed = send(format!("DPoP {}", token.expose()), Some(&proof)).await?;
    expect(replayed.status(), StatusCode::UNAUTHORIZED)?;
    let as_bearer = send(format!("Bearer {}", token.expose()), None).await?;
    expect(as_bearer.status(), StatusCode::UNAUTHORIZED)?;
    println!(
        "7. DPoP-bound token  -> 200 OK with a fresh proof each call (cnf.jkt={}); the same proof again -> {} `{}`; the token as Bearer -> {} `{}`",
        key.thumbprint(),
        replayed.status(),
        challenge(&replayed),
        as_bearer.status(),
        challenge(&as_bearer),
    );
    Ok(())
}

fn cache_for(issuer: &TestIssuer, scope: &str) -> Result<TokenCache, Error> {
    let endpoint = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .scope(scope)
    .build()?;
    Ok(TokenCache::new(endpoint)?)
}

fn client_with(cache: TokenCache) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(ClientCredentialsMiddleware::new(cache)).build()
}

struct Rotation {
    ok: u64,
    failed: u64,
    /// Requests made with the token signed by the new key.
    after: u64,
    fetches: u64,
}

async fn traffic_across_rotation(
    client: &ClientWithMiddleware,
    cache: &TokenCache,
    issuer: &TestIssuer,
    api: &str,
) -> Result<Rotation, Error> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let before = issuer.requests(Endpoint::Jwks);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, api, ok, failed, stop) =
            (client.clone(), api.to_owned(), ok.clone(), failed.clone(), stop.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = client.get(format!("{api}/me")).send().await.map(|r| r.status());
                let counter = if matches!(status, Ok(StatusCode::OK)) { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    issuer.rotate_keys();
    // The cache's next token is signed with the new key: the API has never seen its kid.
    cache.refresh().await?;
    let at_rotation = ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < at_rotation + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let fetches = issuer.requests(Endpoint::Jwks) - before;
    Ok(Rotation { ok, failed, after: ok + failed - at_rotation, fetches })
}

struct Refreshes {
    ok: u64,
    failed: u64,
    refreshes: u64,
    /// The smallest time left on the old token when its successor arrived.
    min_margin: Duration,
    slowest: Duration,
    elapsed: Duration,
}

async fn traffic_across_refreshes(issuer: &TestIssuer, api: &str) -> Result<Refreshes, Error> {
    let cache = cache_for(issuer, "read")?;
    let client = client_with(cache.clone());
    let started = Instant::now();
    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    let mut previous = cache.token().await?;
    let mut min_margin = Duration::MAX;
    while started.elapsed() < Duration::from_millis(3500) {
        let sent = Instant::now();
        match client.get(format!("{api}/me")).send().await {
            Ok(response) if response.status() == StatusCode::OK => ok += 1,
            _ => failed += 1,
        }
        slowest = slowest.max(sent.elapsed());
        let current = cache.cached().ok_or("the cache ran dry")?;
        if current.generation() != previous.generation() {
            min_margin = min_margin.min(previous.expires_at().saturating_duration_since(current.obtained_at()));
            previous = current;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshes = previous.generation() - 1;
    Ok(Refreshes { ok, failed, refreshes, min_margin, slowest, elapsed: started.elapsed() })
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn expect(got: StatusCode, want: StatusCode) -> Result<(), Error> {
    if got == want { Ok(()) } else { Err(format!("expected {want}, got {got}").into()) }
}
