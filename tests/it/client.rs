//! `TokenEndpoint` and `TokenCache` against the embedded test issuer over real sockets:
//! the grants, discovery, faults, the refresh schedule, single flight and rotation.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_oauth::client::{AuthMethod, ErrorCode, InvalidResponse, TokenCache, TokenEndpoint, TokenError};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
use tower_oauth::{Claims, Validator};

use crate::support::api::endpoint;

const ID: &str = TestIssuer::DEFAULT_CLIENT_ID;
const SECRET: &str = TestIssuer::DEFAULT_CLIENT_SECRET;

async fn issuer_with_lifetime(lifetime: Duration) -> TestIssuer {
    TestIssuer::builder().token_lifetime(lifetime).start().await.unwrap()
}

async fn claims(issuer: &TestIssuer, audience: &str, token: &str) -> Claims {
    let validator = Validator::builder().issuer(issuer.issuer()).audience(audience).build().unwrap();
    validator.validate(token).await.unwrap()
}

#[tokio::test]
async fn client_credentials_work_with_basic_and_post_authentication() {
    let issuer = TestIssuer::start().await.unwrap();
    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let mut endpoint =
            endpoint(&issuer).timeout(Duration::from_secs(5)).auth_method(method).scope("write read").build().unwrap();
        let response = endpoint.request_token().await.unwrap();
        assert_eq!(response.expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(response.refresh_token().map(|_| ()), None, "RFC 6749 §4.4.3: no refresh token");
        let claims = claims(&issuer, issuer.audience(), response.access_token()).await;
        assert_eq!(claims.client_id(), Some(ID));
        assert!(claims.has_scope("read") && claims.has_scope("write"), "{method:?}");
    }
}

#[tokio::test]
async fn resource_and_audience_parameters_set_the_audience() {
    let issuer = TestIssuer::start().await.unwrap();
    let mut by_resource =
        endpoint(&issuer).timeout(Duration::from_secs(5)).resource("https://orders.example").build().unwrap();
    let token = by_resource.request_token().await.unwrap();
    claims(&issuer, "https://orders.example", token.access_token()).await;

    let mut by_audience = endpoint(&issuer).timeout(Duration::from_secs(5)).audience("billing-api").build().unwrap();
    let token = by_audience.request_token().await.unwrap();
    claims(&issuer, "billing-api", token.access_token()).await;
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_once_from_the_issuer() {
    let issuer = TestIssuer::builder().path_prefix("/realms/main").start().await.unwrap();
    let mut endpoint = TokenEndpoint::discover(issuer.issuer(), ID, SECRET).build().unwrap();
    assert_eq!(endpoint.key().endpoint(), issuer.issuer());
    endpoint.request_token().await.unwrap();
    endpoint.request_token().await.unwrap();
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_a_typed_invalid_client_that_shows_no_secret() {
    let issuer = TestIssuer::start().await.unwrap();
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), ID, "wrong-secret-value").build().unwrap();
    let error = endpoint.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidClient));
    assert_eq!(error.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert!(!error.is_transient());
    for shown in [error.to_string(), format!("{error:?}"), format!("{endpoint:?}")] {
        assert!(!shown.contains("wrong-secret-value"), "{shown}");
    }
}

#[tokio::test]
async fn token_endpoint_faults_are_typed_errors() {
    let issuer = TestIssuer::start().await.unwrap();
    let mut endpoint = endpoint(&issuer).timeout(Duration::from_millis(500)).build().unwrap();
    let mut fault = async |fault: Fault| {
        issuer.set_fault(Endpoint::Token, fault);
        endpoint.request_token().await.unwrap_err()
    };
    match fault(Fault::TooManyRequests { retry_after: Some(3) }).await {
        TokenError::RateLimited { retry_after } => assert_eq!(retry_after, Some(Duration::from_secs(3))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(fault(Fault::Status(500)).await, TokenError::ServerError { status, .. } if status == 500));
    assert!(matches!(fault(Fault::Status(404)).await, TokenError::NotFound));
    assert!(matches!(fault(Fault::Garbage).await, TokenError::InvalidResponse(InvalidResponse::NotJson)));
    assert!(matches!(fault(Fault::Oversized(1 << 20)).await, TokenError::BodyTooLarge { .. }));
    assert!(matches!(fault(Fault::Down).await, TokenError::Transport(_)));
    let started = Instant::now();
    assert!(matches!(fault(Fault::Stall).await, TokenError::Timeout));
    assert!(matches!(fault(Fault::Delay(Duration::from_secs(3))).await, TokenError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3), "each exchange is bounded by the timeout");
    issuer.clear_faults();
    assert!(endpoint.request_token().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_on_a_cold_cache_make_one_token_request() {
    let issuer = TestIssuer::start().await.unwrap();
    // A slow endpoint keeps the fetch in flight while every caller arrives.
    issuer.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(200)));
    let cache = TokenCache::new(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap()).unwrap();
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await.map(|t| t.generation()) })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), 1);
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);
    assert_eq!(cache.fetch_attempts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_refreshed_ahead_of_expiry_while_callers_keep_the_current_one() {
    // A 2 s token is refreshed at 1 s (half its lifetime: 80 % would be later than 60 s
    // before expiry, but never earlier than half).
    let issuer = issuer_with_lifetime(Duration::from_secs(2)).await;
    let cache = TokenCache::new(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap()).unwrap();
    let first = cache.token().await.unwrap();
    assert_eq!(first.lifetime(), Duration::from_secs(2));
    let started = Instant::now();
    let mut generations = Vec::new();
    while started.elapsed() < Duration::from_millis(3500) {
        // Never a wait: the cache always has a valid token.
        let token = cache.cached().expect("a valid token at every moment");
        if generations.last() != Some(&token.generation()) {
            generations.push(token.generation());
            // Each new token arrives ahead of the previous one's expiry.
            assert!(token.obtained_at() < first.expires_at() || token.generation() > 2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(generations.len() >= 3, "refreshed at ~1 s, ~2 s, ~3 s: {generations:?}");
    assert_eq!(cache.fetch_failures(), 0);
    assert_eq!(issuer.requests(Endpoint::Token), cache.fetch_attempts());
    let gap = cache.cached().unwrap().obtained_at().duration_since(first.obtained_at());
    assert!(gap < Duration::from_secs(4), "{gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_outage_the_cached_token_serves_until_its_real_expiry_then_errors_are_typed() {
    let issuer = issuer_with_lifetime(Duration::from_secs(3)).await;
    // Callers wait for a retry only when it is due within 100 ms.
    let cache = TokenCache::builder(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap())
        .backoff(Duration::from_millis(200), Duration::from_millis(400))
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let token = cache.token().await.unwrap();
    issuer.set_fault(Endpoint::Token, Fault::Status(500));
    // Until the real expiry, the same token is served.
    while Instant::now() + Duration::from_millis(100) < token.expires_at() {
        let current = cache.token().await.expect("the cached token serves through the outage");
        assert_eq!(current.generation(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep_until((token.expires_at() + Duration::from_millis(50)).into()).await;
    assert!(cache.cached().is_none(), "an expired token is never served");
    match cache.token().await {
        Err(TokenError::ServerError { status, .. }) => assert_eq!(status, 500),
        other => panic!("expected the typed outage error, got {other:?}"),
    }
    // Retries were bounded by the backoff: refresh at 1.5 s, then every 200-400 ms.
    let attempts = issuer.requests(Endpoint::Token);
    assert!((3..=12).contains(&attempts), "{attempts} token requests");
    // And the cache recovers by itself once the endpoint does.
    issuer.clear_faults();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.token().await.unwrap().generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_the_next_attempt_back() {
    let issuer = issuer_with_lifetime(Duration::from_secs(2)).await;
    // Callers wait for a retry only when it is due within 300 ms.
    let cache = TokenCache::builder(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap())
        .backoff(Duration::from_millis(100), Duration::from_millis(100))
        .max_wait(Duration::from_millis(300))
        .build()
        .unwrap();
    cache.token().await.unwrap();
    issuer.set_fault(Endpoint::Token, Fault::TooManyRequests { retry_after: Some(2) });
    // The refresh at 1 s meets the 429; without Retry-After it would retry every 100 ms.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(issuer.requests(Endpoint::Token), 2, "one refresh, then nothing until Retry-After has passed");
    // Meanwhile an expired cache answers the typed error at once, without a request.
    let started = Instant::now();
    assert!(matches!(cache.token().await, Err(TokenError::RateLimited { .. })));
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    issuer.clear_faults();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(cache.token().await.unwrap().generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rejections_of_one_token_cause_one_refresh_and_none_once_it_is_replaced() {
    let issuer = TestIssuer::start().await.unwrap();
    let cache = TokenCache::builder(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap())
        .force_refresh_cooldown(Duration::from_millis(300))
        .build()
        .unwrap();
    let first = cache.token().await.unwrap();
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let (cache, first) = (cache.clone(), first.clone());
            tokio::spawn(async move { cache.force_refresh(&first).await.map(|t| t.generation()) })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), 2);
    }
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    // The rejected token was already replaced: no fetch.
    assert_eq!(cache.force_refresh(&first).await.unwrap().generation(), 2);
    // The new token rejected at once: within the cooldown, refused.
    let second = cache.cached().unwrap();
    assert!(matches!(cache.force_refresh(&second).await, Err(TokenError::Throttled)));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cache.force_refresh(&second).await.unwrap().generation(), 3);
    assert_eq!(issuer.requests(Endpoint::Token), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_refresh_token_is_never_spent_twice_under_concurrency() {
    // Every token lives 2 s, so the background task refreshes every second, while 50
    // callers force refreshes and ask for tokens as fast as they can. The issuer revokes
    // the whole family on any reuse, so a single double spend fails every later refresh.
    let issuer = TestIssuer::builder().token_lifetime(Duration::from_secs(2)).start().await.unwrap();
    let refresh_token = issuer.issue_refresh_token(ID, "read write", "alice");
    let cache = TokenCache::builder(
        endpoint(&issuer).timeout(Duration::from_secs(5)).refresh_token(refresh_token).build().unwrap(),
    )
    .force_refresh_cooldown(Duration::ZERO)
    .build()
    .unwrap();
    let stop = Instant::now() + Duration::from_millis(2500);
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let token = cache.token().await?;
                    if i % 2 == 0 {
                        cache.force_refresh(&token).await?;
                    } else {
                        cache.refresh().await?;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, TokenError>(())
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    let before = issuer.requests(Endpoint::Token);
    assert!(before >= 10, "the refresh token rotated many times: {before}");
    // The family is still alive: the latest refresh token works.
    let last = cache.refresh().await.unwrap();
    assert_eq!(last.generation(), before + 1);
    assert_eq!(cache.fetch_failures(), 0);
    assert_eq!(claims(&issuer, issuer.audience(), last.expose()).await.subject(), Some("alice"));
}

#[tokio::test]
async fn the_banks_code_then_refresh_flow_rotates_and_narrows_the_scope() {
    // Seed 000: POST …/baas/prod/auth-server/api/v1/oauth2/token with Basic auth,
    // authorization_code then refresh_token, a scope subset on refresh.
    let issuer = TestIssuer::builder()
        .path_prefix("/baas/prod/auth-server/api/v1")
        .token_path("/oauth2/token")
        .client("bank-app", "bank-secret")
        .start()
        .await
        .unwrap();
    assert!(issuer.token_endpoint().ends_with("/baas/prod/auth-server/api/v1/oauth2/token"));
    let code = issuer.issue_code("bank-app", "https://app.example/cb", "openid read write", "alice");
    let endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "bank-app", "bank-secret")
        .authorization_code(code, "https://app.example/cb")
        .scope("read")
        .build()
        .unwrap();
    let cache = TokenCache::new(endpoint).unwrap();

    // The code exchange grants what the user approved.
    let first = cache.token().await.unwrap();
    assert_eq!(first.scope(), Some("openid read write"));
    // Each refresh uses the rotated refresh token (a reuse would revoke the family and
    // fail the next one) and asks for the configured subset.
    for generation in 2..=4 {
        let token = cache.refresh().await.unwrap();
        assert_eq!((token.generation(), token.scope()), (generation, Some("read")));
        let claims = claims(&issuer, issuer.audience(), token.expose()).await;
        assert_eq!(claims.subject(), Some("alice"));
        assert!(claims.has_scope("read") && !claims.has_scope("write"));
    }
    assert_eq!(issuer.requests(Endpoint::Token), 4);
}

#[tokio::test]
async fn a_spent_code_or_refresh_token_is_a_typed_invalid_grant() {
    let issuer = TestIssuer::start().await.unwrap();
    let code = issuer.issue_code(ID, "https://app/cb", "read", "bob");
    let mut first = endpoint(&issuer)
        .timeout(Duration::from_secs(5))
        .authorization_code(code.clone(), "https://app/cb")
        .build()
        .unwrap();
    first.request_token().await.unwrap();
    let mut again =
        endpoint(&issuer).timeout(Duration::from_secs(5)).authorization_code(code, "https://app/cb").build().unwrap();
    let error = again.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidGrant));

    let refresh = issuer.issue_refresh_token(ID, "read", "bob");
    let mut wider =
        endpoint(&issuer).timeout(Duration::from_secs(5)).refresh_token(refresh).scope("read admin").build().unwrap();
    let error = wider.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidScope));
}

#[tokio::test]
async fn the_background_task_stops_when_the_last_handle_drops() {
    let issuer = issuer_with_lifetime(Duration::from_secs(1)).await;
    let cache = TokenCache::new(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap()).unwrap();
    let clone = cache.clone();
    cache.token().await.unwrap();
    drop(cache);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(issuer.requests(Endpoint::Token), 2, "a live handle keeps it refreshing");
    drop(clone);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(issuer.requests(Endpoint::Token), 2, "no refresh after the last handle dropped");
}

#[tokio::test]
async fn debug_output_never_shows_a_secret_or_a_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let refresh = issuer.issue_refresh_token(ID, "read", "carol");
    let cache = TokenCache::new(
        endpoint(&issuer).timeout(Duration::from_secs(5)).refresh_token(refresh.clone()).build().unwrap(),
    )
    .unwrap();
    let token = cache.token().await.unwrap();
    let layer = tower_oauth::ClientCredentialsLayer::new(cache.clone());
    for shown in [format!("{cache:?}"), format!("{token:?}"), format!("{layer:?}"), format!("{:?}", cache.key())] {
        for secret in [SECRET, refresh.as_str(), token.expose()] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    assert!(format!("{:?}", token.header_value()).contains("Sensitive"));
}

#[tokio::test]
async fn tokens_from_a_cache_are_shared_behind_an_arc() {
    let issuer = TestIssuer::start().await.unwrap();
    let cache = TokenCache::new(endpoint(&issuer).timeout(Duration::from_secs(5)).build().unwrap()).unwrap();
    let (a, b) = (cache.token().await.unwrap(), cache.token().await.unwrap());
    assert!(Arc::ptr_eq(&a, &b));
}
