//! RFC 7662 introspection against the embedded test issuer: answers, client
//! authentication, the answer cache, single flight, and every way the endpoint can fail.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tower_oauth::introspect::{AuthMethod, IntrospectionError, Introspector, IntrospectorBuilder};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};

use crate::support;
use crate::support::api::now;
use support::backoff::most_discoveries;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every failure below resolves well within this; it only proves nothing hangs.
const NO_HANG: Duration = Duration::from_secs(10);

fn builder(issuer: &TestIssuer) -> IntrospectorBuilder {
    Introspector::builder(
        issuer.introspection_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
}

fn claims(json: &str) -> Value {
    serde_json::from_str(json).expect("introspected claims are JSON")
}

#[tokio::test]
async fn an_active_opaque_token_comes_back_with_its_claims() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let token = issuer.mint().subject("alice").scope("read write").expires_in(Duration::from_secs(120)).opaque();
    assert!(!token.contains('.'), "opaque tokens are not JWTs");
    let introspected = builder(&issuer).build()?.introspect(&token).await?;
    let claims = claims(introspected.claims_json());
    assert_eq!(claims["active"], true);
    assert_eq!(claims["token_type"], "Bearer");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["iss"], issuer.issuer());
    assert_eq!(claims["aud"], issuer.audience());
    let exp = introspected.expires_at().expect("exp is an integer");
    assert_eq!(claims["exp"], exp);
    assert!((now() + 110..=now() + 130).contains(&exp), "{exp}");
    Ok(())
}

#[tokio::test]
async fn the_token_endpoint_can_issue_opaque_tokens_that_introspect() -> TestResult {
    let issuer = TestIssuer::builder().opaque_access_tokens().start().await?;
    let response: Value = reqwest::Client::new()
        .post(issuer.token_endpoint())
        .basic_auth(TestIssuer::DEFAULT_CLIENT_ID, Some(TestIssuer::DEFAULT_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await?
        .json()
        .await?;
    let token = response["access_token"].as_str().expect("an access token");
    assert!(!token.contains('.'), "{token}");
    let introspected = builder(&issuer).build()?.introspect(token).await?;
    let claims = claims(introspected.claims_json());
    assert_eq!((&claims["client_id"], &claims["scope"]), (&TestIssuer::DEFAULT_CLIENT_ID.into(), &"read".into()));
    Ok(())
}

#[tokio::test]
async fn unknown_expired_revoked_and_forged_tokens_are_inactive() -> TestResult {
    let issuer = TestIssuer::start().await?;
    // No caching: each answer is the endpoint's current one.
    let introspector = builder(&issuer).max_ttl(Duration::ZERO).negative_ttl(Duration::ZERO).build()?;

    let unknown = "f3Zp1uGkq0t8W2yXoJbNQm";
    assert_eq!(introspector.introspect(unknown).await, Err(IntrospectionError::Inactive));
    let expired = issuer.mint().expired().opaque();
    assert_eq!(introspector.introspect(&expired).await, Err(IntrospectionError::Inactive));
    let forged = issuer.mint().tampered_signature();
    assert_eq!(introspector.introspect(&forged).await, Err(IntrospectionError::Inactive));

    // The issuer's own JWTs introspect too, until revoked.
    for token in [issuer.mint().opaque(), issuer.mint().sign()] {
        assert!(introspector.introspect(&token).await.is_ok());
        issuer.revoke(&token);
        assert_eq!(introspector.introspect(&token).await, Err(IntrospectionError::Inactive));
    }
    // Nothing is asked about tokens no server would accept.
    let before = issuer.requests(Endpoint::Introspection);
    assert_eq!(introspector.introspect("").await, Err(IntrospectionError::Inactive));
    assert_eq!(introspector.introspect(&"a".repeat(17 * 1024)).await, Err(IntrospectionError::Inactive));
    assert_eq!(issuer.requests(Endpoint::Introspection), before);
    Ok(())
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_and_post_works_too() -> TestResult {
    // Every character of this secret must be encoded (RFC 6749 §2.3.1) to authenticate.
    let (id, secret) = ("svc:special", "p@ss:w+rd%/ &=");
    let issuer = TestIssuer::builder().client(id, secret).start().await?;
    let token = issuer.mint().opaque();
    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let introspector =
            Introspector::builder(issuer.introspection_endpoint(), id, secret).auth_method(method).build()?;
        assert!(introspector.introspect(&token).await.is_ok(), "{method:?}");
    }
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_are_a_server_error_that_names_no_secret() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let token = issuer.mint().opaque();
    let introspector =
        Introspector::builder(issuer.introspection_endpoint(), TestIssuer::DEFAULT_CLIENT_ID, "hunter2-wrong")
            .build()?;
    let error = introspector.introspect(&token).await.unwrap_err();
    assert!(matches!(error, IntrospectionError::Rejected { status, .. } if status == 401), "{error:?}");
    assert!(error.is_server_error(), "a misconfiguration is a 503, not the token's fault");
    for shown in [error.to_string(), format!("{error:?}"), format!("{introspector:?}")] {
        assert!(!shown.contains("hunter2") && !shown.contains(&token), "{shown}");
    }
    Ok(())
}

#[tokio::test]
async fn an_active_answer_is_reused_and_ends_no_later_than_exp() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let introspector = builder(&issuer).build()?;
    let token = issuer.mint().opaque();
    for _ in 0..5 {
        introspector.introspect(&token).await?;
    }
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);
    assert_eq!((introspector.requests(), introspector.cached()), (1, 1));

    // Until `exp`, and never after it: this token's answer ends with it.
    let short = issuer.mint().expires_in(Duration::from_secs(1)).opaque();
    introspector.introspect(&short).await?;
    introspector.introspect(&short).await?;
    assert_eq!(issuer.requests(Endpoint::Introspection), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(introspector.introspect(&short).await, Err(IntrospectionError::Inactive));
    assert_eq!(issuer.requests(Endpoint::Introspection), 3);

    // `forget` drops an answer, say after a revocation notice.
    issuer.revoke(&token);
    assert!(introspector.introspect(&token).await.is_ok(), "still cached");
    introspector.forget(&token);
    assert_eq!(introspector.introspect(&token).await, Err(IntrospectionError::Inactive));
    Ok(())
}

#[tokio::test]
async fn max_ttl_bounds_how_long_a_revoked_token_is_accepted() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let introspector = builder(&issuer).max_ttl(Duration::from_secs(1)).build()?;
    let token = issuer.mint().expires_in(Duration::from_secs(3600)).opaque();
    introspector.introspect(&token).await?;
    issuer.revoke(&token);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(introspector.introspect(&token).await, Err(IntrospectionError::Inactive));
    assert_eq!(issuer.requests(Endpoint::Introspection), 2);

    let uncached = builder(&issuer).max_ttl(Duration::ZERO).build()?;
    let token = issuer.mint().opaque();
    uncached.introspect(&token).await?;
    uncached.introspect(&token).await?;
    assert_eq!(uncached.requests(), 2);
    Ok(())
}

#[tokio::test]
async fn inactive_answers_are_cached_briefly_or_not_at_all() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let cached = builder(&issuer).build()?;
    for _ in 0..5 {
        assert_eq!(cached.introspect("junk-token-1").await, Err(IntrospectionError::Inactive));
    }
    assert_eq!(cached.requests(), 1);

    let short = builder(&issuer).negative_ttl(Duration::from_millis(300)).build()?;
    short.introspect("junk-token-2").await.unwrap_err();
    short.introspect("junk-token-2").await.unwrap_err();
    assert_eq!(short.requests(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    short.introspect("junk-token-2").await.unwrap_err();
    assert_eq!(short.requests(), 2);

    let off = builder(&issuer).negative_ttl(Duration::ZERO).build()?;
    off.introspect("junk-token-3").await.unwrap_err();
    off.introspect("junk-token-3").await.unwrap_err();
    assert_eq!(off.requests(), 2);
    assert_eq!(off.cached(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_introspections_of_one_token_make_one_request() -> TestResult {
    let issuer = TestIssuer::start().await?;
    // Slow enough that every caller arrives while the one request is in flight.
    issuer.set_fault(Endpoint::Introspection, Fault::Delay(Duration::from_millis(300)));
    let introspector = builder(&issuer).build()?;
    let token: Arc<str> = issuer.mint().subject("alice").opaque().into();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (introspector, token) = (introspector.clone(), token.clone());
            tokio::spawn(async move { introspector.introspect(&token).await })
        })
        .collect();
    for task in tasks {
        let introspected = task.await??;
        assert_eq!(claims(introspected.claims_json())["sub"], "alice");
    }
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_on_a_failing_request_share_its_failure() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Introspection, Fault::Stall);
    let introspector = builder(&issuer).timeout(Duration::from_millis(500)).build()?;
    let token: Arc<str> = issuer.mint().opaque().into();
    let started = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (introspector, token) = (introspector.clone(), token.clone());
            tokio::spawn(async move { introspector.introspect(&token).await })
        })
        .collect();
    for task in tasks {
        let error = task.await?.unwrap_err();
        assert!(matches!(error, IntrospectionError::Unavailable { .. }), "{error:?}");
    }
    assert!(started.elapsed() < NO_HANG, "{:?}", started.elapsed());
    assert_eq!(issuer.requests(Endpoint::Introspection), 1, "one flight, shared");
    assert_eq!(introspector.cached(), 0, "failures are not kept");
    Ok(())
}

#[tokio::test]
async fn every_outage_is_unavailable_never_inactive_and_is_not_cached() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let introspector = builder(&issuer).timeout(Duration::from_millis(500)).max_body_size(4096).build()?;
    let token = issuer.mint().opaque();
    let faults = [
        Fault::Down,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(404),
        Fault::TooManyRequests { retry_after: Some(7) },
        Fault::Garbage,
        Fault::Oversized(64 * 1024),
        Fault::Stall,
        Fault::Delay(Duration::from_secs(5)),
    ];
    for fault in faults {
        issuer.set_fault(Endpoint::Introspection, fault.clone());
        let started = Instant::now();
        let error = introspector.introspect(&token).await.unwrap_err();
        assert!(started.elapsed() < NO_HANG, "{fault:?} took {:?}", started.elapsed());
        assert!(error.is_server_error(), "{fault:?}: {error:?}");
        assert_ne!(error, IntrospectionError::Inactive);
        assert!(!error.to_string().contains(&token), "{error}");
        if let Fault::TooManyRequests { .. } = fault {
            assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        }
    }
    issuer.clear_fault(Endpoint::Introspection);
    assert!(introspector.introspect(&token).await.is_ok(), "the outage left nothing behind");
    Ok(())
}

#[tokio::test]
async fn the_endpoint_can_be_discovered() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let introspector =
        Introspector::discover(issuer.issuer(), TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
            .build()?;
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 0, "discovery is lazy");
    introspector.introspect(&issuer.mint().opaque()).await?;
    introspector.introspect(&issuer.mint().opaque()).await?;
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1, "discovered once");
    assert_eq!(issuer.requests(Endpoint::Introspection), 2);

    // Discovery down: unavailable, and tried again once the backoff it names is over.
    let issuer = TestIssuer::start().await?;
    let introspector = Introspector::discover(issuer.issuer(), "test-client", "test-secret").build()?;
    issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Status(500));
    issuer.set_fault(Endpoint::OAuthServerMetadata, Fault::Status(500));
    let error = introspector.introspect(&issuer.mint().opaque()).await.unwrap_err();
    assert!(matches!(error, IntrospectionError::Unavailable { .. }), "{error:?}");
    let backoff = error.retry_after().expect("the time until discovery is tried again");
    assert!(backoff <= FIRST_BACKOFF_MAX, "{backoff:?}");
    issuer.clear_faults();
    tokio::time::sleep(backoff).await;
    assert!(introspector.introspect(&issuer.mint().opaque()).await.is_ok());
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 2);
    Ok(())
}

/// The longest wait after a first failed discovery: 1 s, plus 20 % jitter.
const FIRST_BACKOFF_MAX: Duration = Duration::from_millis(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_introspections_share_one_discovery_whether_it_succeeds_or_fails() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let concurrently = |introspector: Introspector| {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (introspector, token) = (introspector.clone(), issuer.mint().opaque());
                tokio::spawn(async move { introspector.introspect(&token).await })
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.expect("no panic"));
            }
            results
        }
    };
    let discover = || {
        Introspector::discover(issuer.issuer(), TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
            .timeout(Duration::from_millis(500))
    };

    // Slow enough that every caller arrives while the one discovery is in flight.
    issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Delay(Duration::from_millis(300)));
    for result in concurrently(discover().build()?).await {
        result?;
    }
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::Introspection), 50);

    // Both documents stall until the timeout: one failed discovery, and every caller
    // is told how long until the next.
    issuer.reset_counters();
    for endpoint in [Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata] {
        issuer.set_fault(endpoint, Fault::Stall);
    }
    let started = Instant::now();
    for result in concurrently(discover().build()?).await {
        let error = result.unwrap_err();
        assert!(matches!(error, IntrospectionError::Unavailable { .. }), "{error:?}");
        assert!(error.retry_after().is_some_and(|left| left <= FIRST_BACKOFF_MAX), "{error:?}");
    }
    assert!(started.elapsed() < NO_HANG, "{:?}", started.elapsed());
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 1);
    assert_eq!(issuer.requests(Endpoint::Introspection), 0);
    Ok(())
}

#[tokio::test]
async fn a_failed_discovery_honours_the_metadata_endpoints_retry_after() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let introspector = Introspector::discover(issuer.issuer(), "test-client", "test-secret").build()?;
    for endpoint in [Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata] {
        issuer.set_fault(endpoint, Fault::TooManyRequests { retry_after: Some(60) });
    }
    let token = issuer.mint().opaque();
    let error = introspector.introspect(&token).await.unwrap_err();
    assert!(matches!(error, IntrospectionError::Unavailable { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(60)), "longer than the backoff's own 1 s");
    // Refused at once, with the time left, without asking the issuer again.
    issuer.clear_faults();
    let again = introspector.introspect(&token).await.unwrap_err();
    assert_eq!((again.to_string(), again.is_server_error()), (error.to_string(), true));
    let left = again.retry_after().expect("the time left");
    assert!(left > Duration::ZERO && left <= Duration::from_secs(60), "{left:?}");
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 1);
    assert_eq!(issuer.requests(Endpoint::Introspection), 0);
    Ok(())
}

mod through_the_bearer_layer {
    //! Introspected claims meet the same policy as a JWT's, and the outcomes map to
    //! RFC 6750 answers.

    use std::convert::Infallible;

    use http::{Request, Response, StatusCode, header};
    use tower::{Layer as _, ServiceExt as _};
    use tower_oauth::bearer::RequireScopeLayer;
    use tower_oauth::{BearerAuthLayer, KeyStore, Validator};

    use super::*;

    /// The status and `WWW-Authenticate` and `Retry-After` of one request with `token`
    /// through the bearer layer (and, with `scope`, a scope requirement).
    async fn answer(
        validator: &Validator,
        token: &str,
        scope: Option<&str>,
    ) -> (StatusCode, Option<String>, Option<String>) {
        let inner = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
        let mut request = Request::new(());
        request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        let layer = BearerAuthLayer::new(validator.clone());
        match scope {
            Some(scope) => outcome(layer.layer(RequireScopeLayer::new([scope]).layer(inner)).oneshot(request).await),
            None => outcome(layer.layer(inner).oneshot(request).await),
        }
    }

    fn outcome<B>(response: Result<Response<B>, Infallible>) -> (StatusCode, Option<String>, Option<String>) {
        let response = response.unwrap();
        let header = |name| response.headers().get(name).map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned());
        (response.status(), header(header::WWW_AUTHENTICATE), header(header::RETRY_AFTER))
    }

    fn validator(issuer: &TestIssuer, introspector: Introspector) -> Validator {
        Validator::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .introspection_fallback(introspector)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn iss_aud_and_scope_of_introspected_claims_are_enforced() -> TestResult {
        let issuer = TestIssuer::start().await?;
        let validator = validator(&issuer, builder(&issuer).build()?);
        let invalid = Some(r#"Bearer error="invalid_token""#.to_owned());

        let good = issuer.mint().scope("read admin").opaque();
        assert_eq!(answer(&validator, &good, None).await.0, StatusCode::OK);
        assert_eq!(answer(&validator, &good, Some("admin")).await.0, StatusCode::OK);

        let reader = issuer.mint().scope("read").opaque();
        let (status, challenge, _) = answer(&validator, &reader, Some("admin")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(challenge.is_some_and(|c| c.contains("insufficient_scope")));

        for bad in [
            issuer.mint().audience("someone-elses-api").opaque(),
            issuer.mint().issuer("https://evil.example").opaque(),
            issuer.mint().expired().opaque(),
            "never-issued".to_owned(),
        ] {
            assert_eq!(answer(&validator, &bad, None).await, (StatusCode::UNAUTHORIZED, invalid.clone(), None));
        }
        Ok(())
    }

    #[tokio::test]
    async fn an_introspection_outage_is_503_with_retry_after_never_401() -> TestResult {
        let issuer = TestIssuer::start().await?;
        let validator = validator(&issuer, builder(&issuer).timeout(Duration::from_millis(500)).build()?);
        let token = issuer.mint().opaque();
        for fault in [Fault::Down, Fault::Status(500), Fault::TooManyRequests { retry_after: Some(7) }, Fault::Garbage]
        {
            issuer.set_fault(Endpoint::Introspection, fault.clone());
            let (status, _, retry_after) = answer(&validator, &token, None).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
            assert!(retry_after.is_some(), "{fault:?}");
        }
        issuer.clear_fault(Endpoint::Introspection);
        assert_eq!(answer(&validator, &token, None).await.0, StatusCode::OK);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_metadata_outage_costs_the_issuer_a_few_discoveries_not_one_per_request() -> TestResult {
        let issuer = TestIssuer::start().await?;
        let introspector =
            Introspector::discover(issuer.issuer(), TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
                .build()?;
        // Keys straight from the JWKS: every metadata request counted below is the
        // introspector's.
        let keys = KeyStore::builder().jwks_uri(issuer.jwks_uri()).build()?;
        let validator = Validator::builder()
            .issuer_with_keys(issuer.issuer(), keys)
            .audience(issuer.audience())
            .introspection_fallback(introspector)
            .build()?;
        for endpoint in [Endpoint::OpenIdConfiguration, Endpoint::OAuthServerMetadata] {
            issuer.set_fault(endpoint, Fault::Status(503));
        }
        // A token per request, as from many clients: their introspections cannot share
        // a flight.
        let tokens: Vec<String> = (0..200).map(|_| issuer.mint().opaque()).collect();

        // 200 requests, one every 5 ms.
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(5));
        let mut tasks = Vec::new();
        for token in &tokens {
            ticks.tick().await;
            let (validator, token) = (validator.clone(), token.clone());
            tasks.push(tokio::spawn(async move { answer(&validator, &token, None).await }));
        }
        let mut retry_afters = Vec::new();
        for task in tasks {
            let (status, challenge, retry_after) = task.await?;
            assert_eq!((status, challenge), (StatusCode::SERVICE_UNAVAILABLE, None));
            retry_afters.push(retry_after.expect("a Retry-After").parse::<u64>()?);
        }
        let elapsed = started.elapsed();

        let discoveries = issuer.requests(Endpoint::OpenIdConfiguration);
        assert!((1..=most_discoveries(elapsed)).contains(&discoveries), "{discoveries} in {elapsed:?}");
        assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), discoveries, "each tries both documents");
        assert_eq!(issuer.requests(Endpoint::Introspection), 0);
        // The time left is never more than the longest backoff these failures allow.
        let longest = FIRST_BACKOFF_MAX.as_secs_f64() * 2f64.powi(discoveries as i32 - 1);
        assert!(retry_afters.iter().all(|&secs| (1..=longest.ceil() as u64).contains(&secs)), "{retry_afters:?}");

        // The outage is over; once the last answer's Retry-After has passed, the next
        // request discovers the endpoint and gets through.
        issuer.clear_faults();
        tokio::time::sleep(Duration::from_secs(*retry_afters.last().expect("200 answers"))).await;
        assert_eq!(answer(&validator, &tokens[7], None).await.0, StatusCode::OK);
        assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), discoveries + 1);
        assert_eq!(issuer.requests(Endpoint::Introspection), 1);
        Ok(())
    }
}
