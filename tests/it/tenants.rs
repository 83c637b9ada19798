//! Many issuers behind one validator (issue 8, part 2): test issuers as tenants, each
//! discovered on its first token with its own keys and policy; an outage of one that
//! leaves the others untouched; untrusted and near-miss issuers refused without a single
//! network request; the set changed while requests are served; and the bound on issuers
//! discovered through a pattern.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::time::Duration;

use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::introspect::{IntrospectionError, Introspector};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
use tower_oauth::validate::{Issuer, IssuerPattern};
use tower_oauth::{Algorithm, BearerAuthLayer, ValidationError, Validator};

use crate::support::api::claims_api;

const ENDPOINTS: [Endpoint; 6] = [
    Endpoint::OpenIdConfiguration,
    Endpoint::OAuthServerMetadata,
    Endpoint::Jwks,
    Endpoint::Token,
    Endpoint::Introspection,
    Endpoint::Userinfo,
];

async fn tenant() -> TestIssuer {
    TestIssuer::start().await.expect("test issuer starts")
}

/// Every request the issuer has answered, whatever the endpoint.
fn all_requests(issuer: &TestIssuer) -> u64 {
    ENDPOINTS.iter().map(|e| issuer.requests(*e)).sum()
}

async fn status(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.get(url).bearer_auth(token).send().await.expect("answered").status().as_u16()
}

#[tokio::test]
async fn each_tenant_is_discovered_on_its_first_token_and_verified_with_its_own_keys() {
    let (a, b) = (tenant().await, tenant().await);
    let validator = Validator::builder()
        .issuer(a.issuer())
        .issuer(b.issuer())
        .audience(a.audience())
        .lazy_discovery()
        .build()
        .unwrap();
    // Nothing is fetched before a tenant's first token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((all_requests(&a), all_requests(&b)), (0, 0));
    assert!(validator.issuers().key_store(a.issuer()).is_none());

    let claims = validator.validate(&a.mint().subject("alice").sign()).await.unwrap();
    assert_eq!((claims.subject(), claims.issuer()), (Some("alice"), Some(a.issuer())));
    assert_eq!(a.requests(Endpoint::Jwks), 1);
    assert_eq!(all_requests(&b), 0, "tenant B was not asked about A's token");

    let claims = validator.validate(&b.mint().subject("bob").sign()).await.unwrap();
    assert_eq!(claims.subject(), Some("bob"));
    assert_eq!(b.requests(Endpoint::Jwks), 1);

    // B's key, claiming to be A: A's keys do not have it.
    let forged = b.mint().issuer(a.issuer()).sign();
    assert_eq!(validator.validate(&forged).await.unwrap_err(), ValidationError::UnknownKey);
    // Later tokens need no fetch at all.
    let (a_before, b_before) = (all_requests(&a), all_requests(&b));
    for _ in 0..10 {
        validator.validate(&a.mint().sign()).await.unwrap();
        validator.validate(&b.mint().sign()).await.unwrap();
    }
    assert_eq!((all_requests(&a), all_requests(&b)), (a_before, b_before));
}

#[tokio::test]
async fn a_tenant_that_is_down_does_not_affect_another() {
    let (a, b) = (tenant().await, tenant().await);
    for endpoint in [Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata, Endpoint::Jwks] {
        b.set_fault(endpoint, Fault::Status(503));
    }
    let validator = Validator::builder()
        .issuer(a.issuer())
        .issuer(b.issuer())
        .audience(a.audience())
        .lazy_discovery()
        .build()
        .unwrap();
    let url = claims_api(BearerAuthLayer::new(validator.clone())).await;
    let http = reqwest::Client::new();

    // Interleaved: every request of A passes, every request of B is a 503 (B's keys were
    // never loaded: the token may be fine), never a 401.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (http, url) = (http.clone(), url.clone());
        let token = if i % 2 == 0 { a.mint().sign() } else { b.mint().sign() };
        tasks.push(tokio::spawn(async move { (i % 2 == 0, status(&http, &url, &token).await) }));
    }
    let (mut a_ok, mut b_unavailable) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (true, 200) => a_ok += 1,
            (false, 503) => b_unavailable += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((a_ok, b_unavailable), (50, 50));
    let b_response = http.get(&url).bearer_auth(b.mint().sign()).send().await.unwrap();
    assert_eq!(b_response.status(), 503);
    assert!(b_response.headers().contains_key("retry-after"));

    // B hanging instead: A still answers at once while B's requests wait.
    b.clear_faults();
    let c = tenant().await;
    c.set_fault(Endpoint::OpenIdConfiguration, Fault::Stall);
    validator.issuers().insert(c.issuer()).unwrap();
    let stalled = {
        let (http, url, token) = (http.clone(), url.clone(), c.mint().sign());
        tokio::spawn(async move { status(&http, &url, &token).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..20 {
            assert_eq!(status(&http, &url, &a.mint().sign()).await, 200);
        }
    })
    .await;
    assert!(answered.is_ok(), "tenant A waited for tenant C's discovery");
    assert!(!stalled.is_finished(), "C's request waits for C's discovery");
    stalled.abort();

    // B recovers on its own: its store retries in the background.
    let b_keys = validator.issuers().key_store(b.issuer()).expect("B was started by its first token");
    assert!(b_keys.wait_until_loaded(Duration::from_secs(20)).await);
    assert_eq!(status(&http, &url, &b.mint().sign()).await, 200);
}

#[tokio::test]
async fn an_untrusted_or_near_miss_issuer_is_refused_without_any_network_request() {
    let (trusted, stranger) = (tenant().await, tenant().await);
    let port = trusted.addr().port();
    let validator = Validator::builder()
        .issuer(trusted.issuer())
        .issuer_pattern(IssuerPattern::template(&format!("http://127.0.0.1:{port}/tenants/{{tenant}}")).unwrap())
        .audience(trusted.audience())
        .lazy_discovery()
        .build()
        .unwrap();
    let key = trusted.current_key(Algorithm::RS256);
    let near_misses = [
        stranger.issuer().to_owned(),
        format!("{}/", trusted.issuer()),
        format!("http://127.0.0.1:{port}/tenants"),
        format!("http://127.0.0.1:{port}/tenants/"),
        format!("http://127.0.0.1:{port}/tenants/a/b"),
        format!("http://127.0.0.1:{port}/tenants/a/"),
        format!("http://127.0.0.1:{port}/tenants/a%2Fb"),
        format!("http://127.0.0.1:{port}/tenants/a%2F..%2Fb"),
        format!("http://127.0.0.1:{port}/tenants/.."),
        format!("http://127.0.0.1:{port}/tenants/."),
        format!("http://127.0.0.1:{port}/tenants/a?b"),
        format!("http://127.0.0.1:{port}/tenants/a#b"),
        format!("http://127.0.0.1:{port}.evil/tenants/a"),
        format!("http://127.0.0.1:{port}0/tenants/a"),
        format!("http://evil.example/http://127.0.0.1:{port}/tenants/a"),
        format!("https://127.0.0.1:{port}/tenants/a"),
        format!("http://127.0.0.1:{port}/tenants/{}", "a".repeat(129)),
    ];
    for iss in &near_misses {
        let token = trusted.mint().issuer(iss).sign_with(&key);
        assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::UntrustedIssuer, "{iss}");
    }
    let stranger_token = stranger.mint().sign();
    assert_eq!(validator.validate(&stranger_token).await.unwrap_err(), ValidationError::UntrustedIssuer);
    assert_eq!(all_requests(&trusted), 0, "nothing was fetched for untrusted issuers");
    assert_eq!(all_requests(&stranger), 0);
    assert_eq!((validator.issuers().len(), validator.issuers().discovered()), (1, 0));
}

#[tokio::test]
async fn issuers_matching_a_pattern_are_discovered_each_with_its_own_keys() {
    let alpha = TestIssuer::builder().path_prefix("/tenants/alpha").start().await.unwrap();
    let port = alpha.addr().port();
    let validator = Validator::builder()
        .issuer_pattern(IssuerPattern::template(&format!("http://127.0.0.1:{port}/tenants/{{tenant}}")).unwrap())
        .audience(alpha.audience())
        .build()
        .unwrap();
    assert!(validator.issuers().is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(all_requests(&alpha), 0, "a pattern fetches nothing before a token");

    let claims = validator.validate(&alpha.mint().subject("ann").sign()).await.unwrap();
    assert_eq!(claims.subject(), Some("ann"));
    assert_eq!(validator.issuers().names(), [alpha.issuer()]);
    assert_eq!(validator.issuers().discovered(), 1);

    // Another tenant on the same host that has no metadata: its tokens are a 503 while
    // alpha's keep passing.
    let beta = format!("http://127.0.0.1:{port}/tenants/beta");
    let token = alpha.mint().issuer(&beta).sign();
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::KeysUnavailable);
    assert!(validator.issuers().contains(&beta));
    assert!(validator.validate(&alpha.mint().sign()).await.is_ok());

    // Two tenants on different hosts, trusted through a predicate that names them.
    let (one, two) = (tenant().await, tenant().await);
    let names = [one.issuer().to_owned(), two.issuer().to_owned()];
    let validator = Validator::builder()
        .issuer_pattern(IssuerPattern::predicate(move |iss| names.iter().any(|n| n == iss)))
        .audience(one.audience())
        .build()
        .unwrap();
    assert!(validator.validate(&one.mint().sign()).await.is_ok());
    assert!(validator.validate(&two.mint().sign()).await.is_ok());
    assert_eq!(validator.issuers().discovered(), 2);
    assert_eq!(
        validator.validate(&two.mint().issuer(one.issuer()).sign()).await.unwrap_err(),
        ValidationError::UnknownKey
    );
}

#[tokio::test]
async fn issuers_can_be_added_and_removed_while_requests_are_served() {
    let (a, b) = (tenant().await, tenant().await);
    let validator = Validator::builder().issuer(a.issuer()).audience(a.audience()).build().unwrap();
    let cache = VerifiedTokenCache::default();
    let url = claims_api(BearerAuthLayer::new(validator.clone()).cache(cache.clone())).await;
    let http = reqwest::Client::new();
    let (a_token, b_token) = (a.mint().sign(), b.mint().sign());

    assert_eq!(status(&http, &url, &a_token).await, 200);
    assert_eq!(cache.len(), 1);
    assert_eq!(status(&http, &url, &b_token).await, 401);
    assert_eq!(all_requests(&b), 0);

    validator.issuers().insert(b.issuer()).unwrap();
    assert_eq!(status(&http, &url, &b_token).await, 200);

    // Removed: the next request is refused, even with A's token in the verified-token cache.
    assert!(validator.issuers().remove(a.issuer()));
    assert!(!validator.issuers().remove(a.issuer()));
    assert_eq!(status(&http, &url, &a_token).await, 401);
    assert_eq!(status(&http, &url, &a.mint().sign()).await, 401);
    assert_eq!(status(&http, &url, &b_token).await, 200);
    assert_eq!(validator.issuers().names(), [b.issuer()]);

    // Replaced with a narrower policy: cached tokens of the old entry are checked afresh.
    assert_eq!(status(&http, &url, &b_token).await, 200);
    validator.issuers().insert(Issuer::new(b.issuer()).audience("another-api")).unwrap();
    assert_eq!(status(&http, &url, &b_token).await, 401);
    assert_eq!(status(&http, &url, &b.mint().audience("another-api").sign()).await, 200);
}

#[tokio::test]
async fn the_number_of_issuers_discovered_through_a_pattern_is_bounded() {
    let host = tenant().await;
    let port = host.addr().port();
    let validator = Validator::builder()
        .issuer_pattern(IssuerPattern::template(&format!("http://127.0.0.1:{port}/t/{{tenant}}")).unwrap())
        .audience(host.audience())
        .max_discovered_issuers(3)
        .build()
        .unwrap();
    let tenant = |n: usize| format!("http://127.0.0.1:{port}/t/tenant-{n}");
    for n in 0..3 {
        let token = host.mint().issuer(&tenant(n)).sign();
        // None of them exists, so their keys never load: a 503, not a 401.
        assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::KeysUnavailable);
    }
    assert_eq!(validator.issuers().discovered(), 3);
    for n in 3..50 {
        let token = host.mint().issuer(&tenant(n)).sign();
        let error = validator.validate(&token).await.unwrap_err();
        assert_eq!(error, ValidationError::IssuerLimit);
        assert!(error.is_server_error());
    }
    assert_eq!(validator.issuers().len(), 3, "no key store was created beyond the bound");
    assert!(!validator.issuers().contains(&tenant(3)));

    // The bound counts live issuers: removing one makes room.
    assert!(validator.issuers().remove(&tenant(0)));
    let token = host.mint().issuer(&tenant(3)).sign();
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::KeysUnavailable);
    assert!(validator.issuers().contains(&tenant(3)));
}

#[tokio::test]
async fn each_tenant_has_its_own_policy() {
    let (a, b) = (tenant().await, tenant().await);
    let validator = Validator::builder()
        .issuer(a.issuer())
        .issuer(Issuer::new(b.issuer()).audience("b-api").algorithms([Algorithm::ES256]).require_at_jwt())
        .audience(a.audience())
        .build()
        .unwrap();
    assert!(validator.validate(&a.mint().sign()).await.is_ok());
    // A's policy: its audience, any asymmetric algorithm, a lenient typ.
    assert_eq!(
        validator.validate(&a.mint().audience("b-api").sign()).await.unwrap_err(),
        ValidationError::InvalidAudience
    );
    assert!(validator.validate(&a.mint().alg(Algorithm::RS256).header("typ", "JWT").sign()).await.is_ok());

    let b_token = |alg| b.mint().audience("b-api").alg(alg).header("typ", "at+jwt");
    assert!(validator.validate(&b_token(Algorithm::ES256).sign()).await.is_ok());
    assert_eq!(
        validator.validate(&b_token(Algorithm::RS256).sign()).await.unwrap_err(),
        ValidationError::AlgorithmNotAllowed(Algorithm::RS256)
    );
    assert_eq!(
        validator.validate(&b_token(Algorithm::ES256).header("typ", "JWT").sign()).await.unwrap_err(),
        ValidationError::InvalidType
    );
    assert_eq!(
        validator.validate(&b.mint().alg(Algorithm::ES256).header("typ", "at+jwt").sign()).await.unwrap_err(),
        ValidationError::InvalidAudience,
        "B's own audience replaces the validator's"
    );
}

fn introspector(issuer: &TestIssuer) -> Introspector {
    Introspector::builder(
        issuer.introspection_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_tenant_can_be_introspected_while_another_is_verified_locally() {
    let (local, remote) = (tenant().await, tenant().await);
    let remote_introspector = introspector(&remote);
    let validator = Validator::builder()
        .issuer(local.issuer())
        .issuer(Issuer::new(remote.issuer()).introspection(remote_introspector.clone()))
        .audience(local.audience())
        .build()
        .unwrap();
    let url = claims_api(BearerAuthLayer::new(validator.clone())).await;
    let http = reqwest::Client::new();

    assert_eq!(status(&http, &url, &local.mint().sign()).await, 200);
    assert_eq!(local.requests(Endpoint::Introspection), 0);

    let token = remote.mint().subject("rita").scope("read admin").sign();
    let claims = validator.validate(&token).await.unwrap();
    assert_eq!((claims.subject(), claims.has_scope("admin")), (Some("rita"), true));
    assert_eq!(remote.requests(Endpoint::Introspection), 1);
    assert_eq!(remote.requests(Endpoint::Jwks), 0, "an introspected issuer's keys are never fetched");

    // Revoked: noticed as soon as the cached answer goes.
    remote.revoke(&token);
    remote_introspector.forget(&token);
    assert_eq!(
        validator.validate(&token).await.unwrap_err(),
        ValidationError::Introspection(IntrospectionError::Inactive)
    );
    assert_eq!(status(&http, &url, &token).await, 401);

    // Its answers still go through the policy.
    let other_audience = remote.mint().audience("elsewhere").sign();
    assert_eq!(validator.validate(&other_audience).await.unwrap_err(), ValidationError::InvalidAudience);

    // The introspection endpoint down: 503 for that tenant only.
    remote.set_fault(Endpoint::Introspection, Fault::Status(500));
    let fresh = remote.mint().sign();
    let response = http.get(&url).bearer_auth(&fresh).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers().get("www-authenticate").is_none());
    assert_eq!(status(&http, &url, &local.mint().sign()).await, 200);
}

#[tokio::test]
async fn the_introspection_fallback_accepts_answers_only_for_trusted_issuers() {
    let (trusted, other) = (tenant().await, TestIssuer::builder().audience("shared-api").start().await.unwrap());
    let validator = Validator::builder()
        .issuer(trusted.issuer())
        .audience(trusted.audience())
        .audience("shared-api")
        .introspection_fallback(introspector(&other))
        .build()
        .unwrap();
    // `other` vouches for its own opaque token, but `other` is no trusted issuer.
    let opaque = other.mint_opaque();
    assert_eq!(validator.validate_with_current_keys(&opaque).unwrap_err(), ValidationError::IntrospectionRequired);
    assert_eq!(other.requests(Endpoint::Introspection), 0);
    assert_eq!(validator.validate(&opaque).await.unwrap_err(), ValidationError::UntrustedIssuer);
    assert_eq!(other.requests(Endpoint::Introspection), 1);

    // Without `iss` in the answer, the endpoint's word and the validator's policy hold.
    let anonymous = other.mint().without_claim("iss").subject("ivy").opaque();
    assert_eq!(validator.validate(&anonymous).await.unwrap().subject(), Some("ivy"));
    let expired = other.mint().without_claim("iss").expired().opaque();
    assert_eq!(
        validator.validate(&expired).await.unwrap_err(),
        ValidationError::Introspection(IntrospectionError::Inactive)
    );

    // A JWT is still verified locally and never introspected.
    let before = other.requests(Endpoint::Introspection);
    assert!(validator.validate(&trusted.mint().sign()).await.is_ok());
    let stranger_jwt = other.mint().sign();
    assert_eq!(validator.validate(&stranger_jwt).await.unwrap_err(), ValidationError::UntrustedIssuer);
    assert_eq!(other.requests(Endpoint::Introspection), before);
}
