//! Token caches sharing tokens through a real `redis-server`: one token request per
//! refresh point for a whole fleet (caches in one process, and separate processes), a
//! lease holder that dies, refresh-token rotation done once fleet-wide, and a Redis that
//! is stopped, restarted, slow or flushed while requests go on, none of which fails a
//! request. And what Redis holds: no token in the clear, no client in the keys.
#![cfg(all(feature = "redis", feature = "testing", feature = "reqwest-middleware", feature = "axum"))]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tower_oauth::client::store::{EntryKey, RedisTokenStore, SharedStore};
use tower_oauth::client::{TokenCache, TokenError};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};

use crate::support::api::{endpoint, ok_api, serve};
use crate::support::logs::Captured;
use crate::support::redis::{RedisServer, dead_redis_url};

const ID: &str = TestIssuer::DEFAULT_CLIENT_ID;
const SECRET: &str = TestIssuer::DEFAULT_CLIENT_SECRET;

async fn issuer_with_lifetime(lifetime: Duration) -> TestIssuer {
    TestIssuer::builder().token_lifetime(lifetime).start().await.unwrap()
}

fn shared(url: &str) -> SharedStore {
    SharedStore::new(RedisTokenStore::new(url).unwrap(), EntryKey::derive_from_client_secret(SECRET))
}

/// A cache on the shared store, refreshed at 80 % of the lifetime (the default for
/// long-lived tokens; without a margin so short test tokens follow the same rule).
fn cache(issuer: &TestIssuer, store: SharedStore) -> TokenCache {
    TokenCache::builder(endpoint(issuer).scope("read").timeout(Duration::from_secs(30)).build().unwrap())
        .refresh_margin(Duration::ZERO)
        .store(store)
        .build()
        .unwrap()
}

/// Every cache asks for a token every 20 ms until `until`; the number of failed asks.
async fn traffic(caches: &[TokenCache], until: Instant) -> usize {
    let mut failed = 0;
    while Instant::now() < until {
        let results = in_order(caches.iter().map(|c| c.token())).await;
        failed += results.iter().filter(|r| r.is_err()).count();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failed
}

/// Every cache asks for its first token at once; the tokens they got, in order.
async fn cold_start(caches: &[TokenCache]) -> Vec<Result<String, TokenError>> {
    let mut cold = tokio::task::JoinSet::new();
    for cache in caches {
        let cache = cache.clone();
        cold.spawn(async move { cache.token().await.map(|t| t.expose().to_owned()) });
    }
    cold.join_all().await
}

/// Awaits each in turn (spawned tasks run concurrently all the same).
async fn in_order<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut outputs = Vec::new();
    for future in futures {
        outputs.push(future.await);
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_caches_on_one_store_make_one_token_request_per_refresh_point() {
    let redis = RedisServer::start().await;
    let issuer = issuer_with_lifetime(Duration::from_secs(6)).await;
    let caches: Vec<TokenCache> = (0..8).map(|_| cache(&issuer, shared(&redis.url()))).collect();
    let start = Instant::now();

    // A concurrent cold start: one fetch under the lease, seven caches take its token.
    let tokens: Vec<String> = cold_start(&caches).await.into_iter().map(Result::unwrap).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "every cache holds the same token");
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    // Traffic up to just before the refresh point (4.8 s): still one request.
    assert_eq!(traffic(&caches, start + Duration::from_millis(3500)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    // Through the refresh point: one more, for all eight.
    assert_eq!(traffic(&caches, start + Duration::from_millis(7500)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    let current: Vec<String> = caches.iter().map(|c| c.cached().unwrap().expose().to_owned()).collect();
    assert!(current.iter().all(|t| *t == current[0] && *t != tokens[0]), "all moved to the one new token");
    // Only the entry remains: each lease was released.
    assert_eq!(redis.keys().await.len(), 1, "{:?}", redis.keys().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_costs_the_fleet_one_lease_time_and_one_request() {
    let redis = RedisServer::start().await;
    let issuer = issuer_with_lifetime(Duration::from_secs(300)).await;
    let lease = Duration::from_secs(1);
    let store = || shared(&redis.url()).lease(lease);

    // A takes the lease and hangs in a stalled token request.
    issuer.set_fault(Endpoint::Token, Fault::Stall);
    let holder = cache(&issuer, store());
    let holding = tokio::spawn({
        let holder = holder.clone();
        async move { holder.token().await.map(|_| ()) }
    });
    wait_for(|| issuer.requests(Endpoint::Token) == 1).await;

    // B and C wait for A, which keeps renewing its lease while it fetches.
    let waiters: Vec<TokenCache> = (0..2).map(|_| cache(&issuer, store())).collect();
    let mut waiting = tokio::task::JoinSet::new();
    for cache in &waiters {
        let cache = cache.clone();
        waiting.spawn(async move { cache.token().await.map(|t| t.expose().to_owned()) });
    }
    tokio::time::sleep(lease * 2).await;
    assert_eq!(issuer.requests(Endpoint::Token), 1, "nobody fetched while A held the lease");
    assert!(!waiting.is_empty() && waiting.try_join_next().is_none(), "B and C are still waiting");

    // A dies: its last handle goes, its task stops mid-fetch, its lease is no longer renewed.
    holding.abort();
    let _ = holding.await;
    drop(holder);
    issuer.clear_fault(Endpoint::Token);
    let died = Instant::now();

    let tokens: Vec<String> = waiting.join_all().await.into_iter().map(Result::unwrap).collect();
    assert!(died.elapsed() < lease + Duration::from_secs(5), "took {:?}", died.elapsed());
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(issuer.requests(Endpoint::Token), 2, "exactly one more request");
}

async fn wait_for(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_refresh_token_is_spent_once_per_refresh_point_fleet_wide() {
    let redis = RedisServer::start().await;
    let issuer = issuer_with_lifetime(Duration::from_secs(4)).await;
    let initial = issuer.issue_refresh_token(ID, "read write", "alice");
    // Three replicas, all configured with the same initial refresh token.
    let caches: Vec<TokenCache> = (0..3)
        .map(|_| {
            let endpoint = endpoint(&issuer)
                .scope("read")
                .timeout(Duration::from_secs(30))
                .refresh_token(initial.as_str())
                .build()
                .unwrap();
            TokenCache::builder(endpoint)
                .refresh_margin(Duration::ZERO)
                .store(shared(&redis.url()).grant_id("alice"))
                .build()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    // A concurrent cold start: one of them spends the initial refresh token.
    assert!(cold_start(&caches).await.iter().all(Result::is_ok));
    // Refresh points at 3.2 s and 6.4 s.
    assert_eq!(traffic(&caches, start + Duration::from_millis(8000)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 3, "one rotation per refresh point");
    // A reuse would have revoked the family, and every later refresh would fail.
    for cache in &caches {
        assert_eq!(cache.fetch_failures(), 0);
        assert!(cache.cached().is_some());
    }
    let current: Vec<String> = caches.iter().map(|c| c.cached().unwrap().expose().to_owned()).collect();
    assert!(current.iter().all(|t| *t == current[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_code_is_exchanged_once_and_its_refresh_token_shared() {
    let redis = RedisServer::start().await;
    let issuer = issuer_with_lifetime(Duration::from_secs(4)).await;
    let code = issuer.issue_code(ID, "https://app.example/cb", "read", "bob");
    let caches: Vec<TokenCache> = (0..2)
        .map(|_| {
            let endpoint = endpoint(&issuer)
                .scope("read")
                .timeout(Duration::from_secs(30))
                .authorization_code(code.as_str(), "https://app.example/cb")
                .build()
                .unwrap();
            TokenCache::builder(endpoint)
                .refresh_margin(Duration::ZERO)
                .store(shared(&redis.url()).grant_id("bob"))
                .build()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    assert!(cold_start(&caches).await.iter().all(Result::is_ok));
    // The code exchange, then one refresh at 3.2 s. A second exchange of the code
    // would have revoked the grant (RFC 6749 §4.1.2).
    assert_eq!(traffic(&caches, start + Duration::from_millis(5000)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    assert!(caches.iter().all(|c| c.fetch_failures() == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_delegated_grant_needs_a_grant_id_and_never_renews_without_the_lease() {
    let issuer = TestIssuer::start().await.unwrap();
    let refresh = issuer.issue_refresh_token(ID, "read", "carol");
    let build = |store: SharedStore| {
        TokenCache::builder(
            endpoint(&issuer)
                .scope("read")
                .timeout(Duration::from_secs(30))
                .refresh_token(refresh.as_str())
                .build()
                .unwrap(),
        )
        .store(store)
        .build()
    };
    let missing = build(shared(&dead_redis_url()));
    assert!(matches!(missing, Err(tower_oauth::BuildError::MissingGrantId)), "{missing:?}");

    // Redis is down: spending the refresh token alone could spend it twice in a fleet.
    let cache = build(shared(&dead_redis_url()).grant_id("carol")).unwrap();
    assert!(matches!(cache.token().await, Err(TokenError::StoreUnavailable)));
    assert_eq!(issuer.requests(Endpoint::Token), 0);
}

#[tokio::test]
async fn redis_stopped_then_restarted_during_traffic_fails_no_request_and_is_used_again() {
    let logs = Captured::default();
    let _guard = logs.install("tower_oauth=info");
    let mut redis = RedisServer::start().await;
    let issuer = issuer_with_lifetime(Duration::from_secs(4)).await;
    let caches: Vec<TokenCache> = (0..3).map(|_| cache(&issuer, shared(&redis.url()))).collect();
    let start = Instant::now();

    assert_eq!(traffic(&caches, start + Duration::from_millis(1000)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    // Redis goes away before the refresh point (3.2 s): each cache refreshes alone.
    redis.stop();
    assert_eq!(traffic(&caches, start + Duration::from_millis(4500)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 4, "1 shared, then 3 alone");
    assert_eq!(logs.text().matches("shared token store not used").count(), 3, "one warning per cache");

    // Redis comes back (empty) on the same address; the same caches use it again at the
    // next refresh point (about 6.4 s): one request between them.
    redis.restart().await;
    assert_eq!(traffic(&caches, start + Duration::from_millis(8500)).await, 0);
    assert_eq!(issuer.requests(Endpoint::Token), 5, "shared again after the reconnect");
    let text = logs.text();
    assert_eq!(text.matches("shared token store not used").count(), 3, "{text}");
    assert!(text.contains("shared token store available again"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(&caches[0].cached().unwrap().expose().to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_from_the_start_means_fetching_alone() {
    let issuer = TestIssuer::start().await.unwrap();
    let caches: Vec<TokenCache> = (0..2).map(|_| cache(&issuer, shared(&dead_redis_url()))).collect();
    for cache in &caches {
        cache.token().await.unwrap();
    }
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_bounds_the_wait_and_fails_no_request() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let caches: Vec<TokenCache> = (0..3).map(|_| cache(&issuer, shared(&redis.url()))).collect();
    for cache in &caches {
        cache.token().await.unwrap();
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    redis.freeze_for(Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut refreshes = tokio::task::JoinSet::new();
    for cache in &caches {
        let cache = cache.clone();
        refreshes.spawn(async move { cache.refresh().await.map(|_| ()) });
    }
    for result in refreshes.join_all().await {
        result.unwrap();
    }
    // Each store operation gives up after 250 ms; nobody waits for the 6 s freeze.
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(issuer.requests(Endpoint::Token), 4, "each fetched alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_costs_one_fetch_and_fails_no_request() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let caches: Vec<TokenCache> = (0..4).map(|_| cache(&issuer, shared(&redis.url()))).collect();
    for cache in &caches {
        cache.token().await.unwrap();
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    redis.flush().await;
    assert!(redis.keys().await.is_empty());
    // Every cache wants a new token at once: one fetch under the lease.
    let mut refreshes = tokio::task::JoinSet::new();
    for cache in &caches {
        let cache = cache.clone();
        refreshes.spawn(async move { cache.refresh().await.map(|t| t.expose().to_owned()) });
    }
    let tokens: Vec<String> = refreshes.join_all().await.into_iter().map(Result::unwrap).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    // A newcomer takes the same token.
    let late = cache(&issuer, shared(&redis.url()));
    assert_eq!(late.token().await.unwrap().expose(), tokens[0]);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_rest_tokens_are_sealed_keys_hide_the_client_and_a_wrong_key_opens_nothing() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let refresh = issuer.issue_refresh_token(ID, "read write", "dave");
    let sealed = TokenCache::builder(
        endpoint(&issuer)
            .scope("read")
            .timeout(Duration::from_secs(30))
            .refresh_token(refresh.as_str())
            .build()
            .unwrap(),
    )
    .store(shared(&redis.url()).grant_id("dave"))
    .build()
    .unwrap();
    let token = sealed.token().await.unwrap().expose().to_owned();

    let keys = redis.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert!(key.starts_with("tower-oauth:token:"), "{key}");
    for hidden in [ID, SECRET, "read", "dave", "127.0.0.1"] {
        assert!(!key.contains(hidden), "{key} shows {hidden}");
    }
    let raw = redis.raw(key).await.unwrap();
    let shown = String::from_utf8_lossy(&raw);
    let payload = token.split('.').nth(1).unwrap();
    for hidden in [token.as_str(), payload, refresh.as_str(), "access_token", "refresh_token", "dave"] {
        assert!(!shown.contains(hidden), "the stored value shows {hidden}");
    }

    // Another key cannot open the entry: it counts as absent, and that cache fetches
    // its own token (a reuse of the spent refresh token would fail here).
    let stranger =
        TokenCache::builder(endpoint(&issuer).scope("read").timeout(Duration::from_secs(30)).build().unwrap())
            .store(SharedStore::new(RedisTokenStore::new(&redis.url()).unwrap(), EntryKey::new([9; 32])))
            .build()
            .unwrap();
    let before = issuer.requests(Endpoint::Token);
    let theirs = stranger.token().await.unwrap().expose().to_owned();
    assert_ne!(theirs, token);
    assert_eq!(issuer.requests(Endpoint::Token), before + 1);

    // The explicit plaintext mode stores the token as it is, as documented.
    let plain = TokenCache::builder(endpoint(&issuer).scope("read").timeout(Duration::from_secs(30)).build().unwrap())
        .store(SharedStore::dangerous_plaintext(RedisTokenStore::new(&redis.url()).unwrap()).prefix("plain"))
        .build()
        .unwrap();
    let plain_token = plain.token().await.unwrap().expose().to_owned();
    let plain_keys: Vec<String> = redis.keys().await.into_iter().filter(|k| k.starts_with("plain:")).collect();
    let raw = redis.raw(&plain_keys[0]).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).contains(&plain_token));

    // Debug shows neither the key, the tokens nor the Redis password.
    let store =
        SharedStore::new(RedisTokenStore::new("redis://:hunter2@127.0.0.1:9").unwrap(), EntryKey::new([0x41; 32]))
            .grant_id("dave");
    for shown in [format!("{store:?}"), format!("{sealed:?}")] {
        for hidden in ["hunter2", "AAAA", "dave", token.as_str(), refresh.as_str()] {
            assert!(!shown.contains(hidden), "{shown}");
        }
    }
}

// --- separate processes: the `client_credentials` example with REDIS_URL ---

/// The example binary built next to this test's own.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

fn example_command(issuer: &TestIssuer, redis: &str, api: &str, requests: u32) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(example("client_credentials"));
    command
        .env_clear()
        .env("RUST_LOG", "off")
        .env("OAUTH_TOKEN_URL", issuer.token_endpoint())
        .env("OAUTH_CLIENT_ID", ID)
        .env("OAUTH_CLIENT_SECRET", SECRET)
        .env("OAUTH_SCOPE", "read")
        .env("TARGET_URL", api)
        .env("REQUESTS", requests.to_string())
        .env("CONCURRENCY", "4")
        .env("REDIS_URL", redis)
        .kill_on_drop(true);
    command
}

async fn finished(command: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command.output()).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_with_redis_make_one_token_request() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let api = ok_api(&issuer).await;
    // A slow token endpoint, so the four start-ups overlap the one fetch.
    issuer.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(1500)));
    let runs = (0..4).map(|_| {
        let mut command = example_command(&issuer, &redis.url(), &api, 20);
        async move { finished(&mut command).await }
    });
    let tasks: Vec<_> = runs.map(tokio::spawn).collect();
    let outputs = in_order(tasks).await;
    for output in outputs {
        let output = output.unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), r#"{"requests":20,"ok":20,"failed":0}"#);
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_process_costs_one_lease_time_and_one_request() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let api = ok_api(&issuer).await;

    issuer.set_fault(Endpoint::Token, Fault::Stall);
    let mut holder = example_command(&issuer, &redis.url(), &api, 1).spawn().unwrap();
    wait_for(|| issuer.requests(Endpoint::Token) == 1).await;
    let others: Vec<_> = (0..3)
        .map(|_| {
            let mut command = example_command(&issuer, &redis.url(), &api, 5);
            tokio::spawn(async move { finished(&mut command).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder.kill().await.unwrap();
    issuer.clear_fault(Endpoint::Token);
    let killed = Instant::now();

    for other in others {
        let output = other.await.unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    // The default lease is 5 s; with a generous margin for start-up on a busy machine.
    assert!(killed.elapsed() < Duration::from_secs(20), "took {:?}", killed.elapsed());
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

// --- the README's figure: token requests per hour, with and without the store ---

/// Measures token requests for fleets of N caches (and of 4 example processes) over
/// four refresh points of a short token, with and without the shared store, and
/// scales them to an hour of 300 s and 3600 s tokens. Run with
/// `cargo test --all-features --test redis_store -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about 2 minutes), not a check"]
async fn fleet_token_requests_per_hour() {
    // A 5 s token refreshed at 80 % (4 s), as the default policy refreshes 300 s and
    // 3600 s tokens (at 240 s and 2880 s): a run of 18 s is a cold start and 4 refreshes.
    let lifetime = Duration::from_secs(5);
    let run = Duration::from_secs(18);
    let refresh_points = 4.0_f64;
    let redis = RedisServer::start().await;
    println!(
        "| fleet | store | refresh points in the run | token requests | per refresh point | \
         per hour, 300 s tokens | per hour, 3600 s tokens |"
    );
    println!("|---|---|---|---|---|---|---|");
    let report = |fleet: &str, store: &str, requests: u64, cold: u64, refresh_points: f64| {
        let per_point = (requests - cold) as f64 / refresh_points;
        println!(
            "| {fleet} | {store} | {refresh_points} | {requests} ({cold} at the cold start) | {per_point} | {:.0} | {:.2} |",
            per_point * 3600.0 / 240.0,
            per_point * 3600.0 / 2880.0
        );
    };
    for n in [1_usize, 8, 50] {
        for shared_store in [false, true] {
            let issuer = issuer_with_lifetime(lifetime).await;
            let prefix = format!("figure-{n}-{shared_store}");
            let caches: Vec<TokenCache> = (0..n)
                .map(|_| {
                    let builder = TokenCache::builder(
                        endpoint(&issuer).scope("read").timeout(Duration::from_secs(30)).build().unwrap(),
                    )
                    .refresh_margin(Duration::ZERO);
                    let builder = if shared_store {
                        builder.store(shared(&redis.url()).prefix(prefix.as_str()))
                    } else {
                        builder
                    };
                    builder.build().unwrap()
                })
                .collect();
            let start = Instant::now();
            assert_eq!(traffic(&caches, start + run).await, 0);
            let requests = issuer.requests(Endpoint::Token);
            let cold = if shared_store { 1 } else { n as u64 };
            report(&format!("{n} caches"), if shared_store { "Redis" } else { "none" }, requests, cold, refresh_points);
        }
    }
    // Four processes of the example, each calling a slow API for about as long. The
    // example keeps the default policy, under which a 5 s token is refreshed at half its
    // lifetime (the 60 s margin), so its refresh points are counted from the run's length.
    for shared_store in [false, true] {
        let start = Instant::now();
        redis.flush().await;
        let issuer = issuer_with_lifetime(lifetime).await;
        let api = slow_api(Duration::from_millis(100)).await;
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let mut command = example_command(&issuer, &redis.url(), &api, 180);
                command.env("CONCURRENCY", "1");
                if !shared_store {
                    command.env_remove("REDIS_URL");
                }
                tokio::spawn(async move { finished(&mut command).await })
            })
            .collect();
        for output in in_order(tasks).await {
            assert!(output.unwrap().status.success());
        }
        let requests = issuer.requests(Endpoint::Token);
        let cold = if shared_store { 1 } else { 4 };
        let points = (start.elapsed().as_secs_f64() / 2.5).floor();
        report("4 processes", if shared_store { "Redis" } else { "none" }, requests, cold, points);
    }
}

/// An API that answers 200 after `delay`, to stretch a process's run.
async fn slow_api(delay: Duration) -> String {
    let app = Router::new().route(
        "/me",
        get(move || async move {
            tokio::time::sleep(delay).await;
            "ok"
        }),
    );
    format!("{}/me", serve(app).await)
}
