//! Step-up (RFC 9470): `StepUpLayer` and the `SteppedUp` extractor behind
//! `BearerAuthLayer` in an axum server on 127.0.0.1, and `StepUpLayer` in a tonic server,
//! driven by real clients with tokens from the test issuer, signed and introspected
//! alike. Every answer checks the status and the exact `WWW-Authenticate`.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_oauth::axum::{StepUpPolicy, SteppedUp};
use tower_oauth::bearer::{StepUpLayer, StepUpRequirement};
use tower_oauth::introspect::Introspector;
use tower_oauth::testing::{TestIssuer, TokenBuilder};
use tower_oauth::{BearerAuthLayer, Claims, Validator};

use crate::support::api::{listen, now, serve, validator};

const MFA: &str = "urn:example:mfa";
const HARDWARE_KEY: &str = "urn:example:hardware-key";

/// One of two strong `acr` values.
fn strong() -> StepUpRequirement {
    StepUpRequirement::new().acr_values([MFA, HARDWARE_KEY])
}

/// An authentication at most five minutes old.
fn recent() -> StepUpRequirement {
    StepUpRequirement::new().max_age(Duration::from_secs(300))
}

fn strong_and_recent() -> StepUpRequirement {
    strong().max_age(Duration::from_secs(300))
}

/// `/both`'s requirement, for the extractor at `/extracted`.
struct StrongAndRecent;

impl StepUpPolicy for StrongAndRecent {
    fn requirement() -> &'static StepUpRequirement {
        static REQUIREMENT: LazyLock<StepUpRequirement> = LazyLock::new(strong_and_recent);
        &REQUIREMENT
    }
}

/// The `auth_time` of a user who signed in ten seconds ago.
fn fresh() -> i64 {
    now() - 10
}

/// The `auth_time` of a user who signed in ten minutes ago: twice `max_age`.
fn stale() -> i64 {
    now() - 600
}

struct Api {
    url: String,
    issuer: TestIssuer,
    /// How many requests reached the handlers.
    reached: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.url)).header("authorization", format!("Bearer {token}"));
        request.send().await.expect("request is answered")
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

fn challenge(response: &reqwest::Response) -> Option<&str> {
    response.headers().get("www-authenticate").map(|v| v.to_str().unwrap())
}

/// A route at `path` behind a `StepUpLayer` for `requirement`, answering with the claims.
fn stepped_up_route(path: &str, requirement: StepUpRequirement, reached: &Arc<AtomicUsize>) -> Router {
    let reached = reached.clone();
    Router::new()
        .route(
            path,
            get(move |claims: Claims| async move {
                reached.fetch_add(1, Ordering::SeqCst);
                Json(claims)
            }),
        )
        .route_layer(StepUpLayer::new(requirement))
}

/// `/strong`, `/recent` and `/both` behind a `StepUpLayer` each, and `/extracted` with
/// the `SteppedUp` extractor for `/both`'s requirement, all behind `layer`.
async fn api_with(issuer: TestIssuer, layer: BearerAuthLayer) -> Api {
    let reached = Arc::new(AtomicUsize::new(0));
    let extracted = reached.clone();
    let app = Router::new()
        .merge(stepped_up_route("/strong", strong(), &reached))
        .merge(stepped_up_route("/recent", recent(), &reached))
        .merge(stepped_up_route("/both", strong_and_recent(), &reached))
        .route(
            "/extracted",
            get(move |SteppedUp(claims, _): SteppedUp<StrongAndRecent>| async move {
                extracted.fetch_add(1, Ordering::SeqCst);
                Json(claims)
            }),
        )
        .layer(layer);
    Api { url: serve(app).await, issuer, reached, http: reqwest::Client::new() }
}

async fn api() -> Api {
    let issuer = TestIssuer::start().await.unwrap();
    let layer = BearerAuthLayer::new(validator(&issuer)).realm("api");
    api_with(issuer, layer).await
}

/// `mint` with `acr` and `auth_time` when given.
fn authenticated(mint: TokenBuilder, acr: Option<&str>, auth_time: Option<i64>) -> TokenBuilder {
    let mint = match acr {
        Some(acr) => mint.claim("acr", acr),
        None => mint,
    };
    match auth_time {
        Some(auth_time) => mint.claim("auth_time", auth_time),
        None => mint,
    }
}

#[tokio::test]
async fn an_acr_requirement_admits_only_its_values_compared_exactly() {
    let api = api().await;
    for acr in [MFA, HARDWARE_KEY] {
        let token = api.issuer.mint().subject("alice").claim("acr", acr).sign();
        let response = api.get("/strong", &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{acr}");
        let claims: Value = response.json().await.unwrap();
        assert_eq!((&claims["sub"], &claims["acr"]), (&json!("alice"), &json!(acr)));
    }
    let short = r#"Bearer realm="api", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key""#;
    for acr in [Some("urn:example:password"), None, Some("URN:EXAMPLE:MFA"), Some("urn:example:mfa "), Some("")] {
        let token = authenticated(api.issuer.mint(), acr, Some(fresh())).sign();
        let response = api.get("/strong", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{acr:?}");
        assert_eq!(challenge(&response), Some(short), "{acr:?}");
        assert_eq!(response.text().await.unwrap(), "", "terse by default");
    }
    assert_eq!(api.reached(), 2, "only the tokens that met the requirement reached the handler");
}

#[tokio::test]
async fn max_age_admits_only_a_recent_enough_authentication() {
    let api = api().await;
    // An `auth_time` a little ahead of this clock (the issuer's skew) counts as now.
    for auth_time in [fresh(), now(), now() + 30] {
        let token = api.issuer.mint().claim("auth_time", auth_time).sign();
        let response = api.get("/recent", &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{auth_time}");
        let claims: Value = response.json().await.unwrap();
        assert_eq!(claims["auth_time"], auth_time);
    }
    let short = r#"Bearer realm="api", error="insufficient_user_authentication", max_age="300""#;
    for auth_time in [Some(stale()), None, Some(0)] {
        let token = authenticated(api.issuer.mint(), Some(MFA), auth_time).sign();
        let response = api.get("/recent", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth_time:?}");
        assert_eq!(challenge(&response), Some(short), "{auth_time:?}");
    }
    assert_eq!(api.reached(), 3);
}

#[tokio::test]
async fn both_requirements_are_named_in_one_challenge_whichever_falls_short() {
    let api = api().await;
    let met = api.issuer.mint().claim("acr", MFA).claim("auth_time", fresh()).sign();
    assert_eq!(api.get("/both", &met).await.status(), StatusCode::OK);

    let short = r#"Bearer realm="api", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#;
    for (acr, auth_time) in [
        (Some("urn:example:password"), Some(fresh())),
        (Some(MFA), Some(stale())),
        (Some(MFA), None),
        (None, Some(fresh())),
        (Some("urn:example:password"), Some(stale())),
        (None, None),
    ] {
        let token = authenticated(api.issuer.mint(), acr, auth_time).sign();
        let response = api.get("/both", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{acr:?} {auth_time:?}");
        assert_eq!(challenge(&response), Some(short), "{acr:?} {auth_time:?}");
    }
    assert_eq!(api.reached(), 1);
}

#[tokio::test]
async fn the_bearer_layer_answers_first_for_a_missing_or_bad_token() {
    let api = api().await;
    let response = api.http.get(format!("{}/both", api.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), Some(r#"Bearer realm="api""#));
    let expired = api.issuer.mint().claim("acr", MFA).claim("auth_time", fresh()).expired().sign();
    for path in ["/both", "/extracted"] {
        let response = api.get(path, &expired).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(challenge(&response), Some(r#"Bearer realm="api", error="invalid_token""#), "{path}");
    }
    assert_eq!(api.reached(), 0);
}

#[tokio::test]
async fn verbose_errors_add_rfc_9470s_descriptions() {
    let issuer = TestIssuer::start().await.unwrap();
    let layer = BearerAuthLayer::new(validator(&issuer)).realm("api").verbose_errors(true);
    let api = api_with(issuer, layer).await;
    let weak = api.issuer.mint().claim("acr", "urn:example:password").claim("auth_time", fresh()).sign();
    let old = api.issuer.mint().claim("acr", MFA).claim("auth_time", stale()).sign();
    let weak_and_old = api.issuer.mint().claim("acr", "urn:example:password").claim("auth_time", stale()).sign();
    let different = "A different authentication level is required";
    let more_recent = "More recent authentication is required";
    let cases = [
        (
            "/strong",
            &weak,
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:example:mfa urn:example:hardware-key""#,
            different,
        ),
        (
            "/recent",
            &old,
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="More recent authentication is required", max_age="300""#,
            more_recent,
        ),
        (
            "/both",
            &old,
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#,
            more_recent,
        ),
        // The acr shortfall is the one described when both fall short.
        (
            "/both",
            &weak_and_old,
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#,
            different,
        ),
    ];
    for (path, token, expected, description) in cases {
        let response = api.get(path, token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(challenge(&response), Some(expected), "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"error": "insufficient_user_authentication", "error_description": description}));
    }
    assert_eq!(api.reached(), 0);
}

#[tokio::test]
async fn the_realm_scope_and_resource_metadata_are_carried_into_step_up_challenges() {
    let resource = "https://api.example.com/payments";
    let metadata = "https://api.example.com/.well-known/oauth-protected-resource/payments";
    // With a realm; and without one, offering a scope instead: either way the bearer
    // layer's wording reaches the step-up answers behind it.
    for (realm, scope) in [(Some("payments"), None), (None, Some("payments:write"))] {
        let issuer = TestIssuer::start().await.unwrap();
        let validator = Validator::builder().issuer(issuer.issuer()).resource(resource).build().unwrap();
        let mut layer = BearerAuthLayer::new(validator);
        if let Some(realm) = realm {
            layer = layer.realm(realm);
        }
        if let Some(scope) = scope {
            layer = layer.challenge_scope([scope]);
        }
        let api = api_with(issuer, layer).await;
        let realm = realm.map(|r| format!(r#"realm="{r}", "#)).unwrap_or_default();
        let scope = scope.map(|s| format!(r#"scope="{s}", "#)).unwrap_or_default();

        let met = api.issuer.mint().audience(resource).claim("acr", HARDWARE_KEY).claim("auth_time", fresh()).sign();
        let weak = api.issuer.mint().audience(resource).claim("acr", "urn:example:password").sign();
        let both = format!(
            r#"Bearer {realm}error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300", {scope}resource_metadata="{metadata}""#
        );
        let cases = [
            (
                "/strong",
                format!(
                    r#"Bearer {realm}error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", {scope}resource_metadata="{metadata}""#
                ),
            ),
            (
                "/recent",
                format!(
                    r#"Bearer {realm}error="insufficient_user_authentication", max_age="300", {scope}resource_metadata="{metadata}""#
                ),
            ),
            ("/both", both.clone()),
            ("/extracted", both),
        ];
        for (path, expected) in cases {
            let response = api.get(path, &weak).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(challenge(&response), Some(expected.as_str()), "{path}");
            assert_eq!(api.get(path, &met).await.status(), StatusCode::OK, "{path}");
        }
        assert_eq!(api.reached(), 4);
    }
}

#[tokio::test]
async fn the_stepped_up_extractor_answers_as_the_layer_does() {
    for verbose in [false, true] {
        let issuer = TestIssuer::start().await.unwrap();
        let layer = BearerAuthLayer::new(validator(&issuer)).realm("api").verbose_errors(verbose);
        let api = api_with(issuer, layer).await;
        let short = if verbose {
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#
        } else {
            r#"Bearer realm="api", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#
        };
        for (acr, auth_time) in [(Some(MFA), Some(stale())), (Some(MFA), None)] {
            let token = authenticated(api.issuer.mint(), acr, auth_time).sign();
            let (layer, extractor) = (api.get("/both", &token).await, api.get("/extracted", &token).await);
            for response in [&layer, &extractor] {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth_time:?} {}", response.url());
                assert_eq!(challenge(response), Some(short), "{auth_time:?} {}", response.url());
            }
            assert_eq!(layer.text().await.unwrap(), extractor.text().await.unwrap(), "verbose: {verbose}");
        }
        assert_eq!(api.reached(), 0);

        let met = api.issuer.mint().subject("bob").claim("acr", MFA).claim("auth_time", fresh()).sign();
        let response = api.get("/extracted", &met).await;
        assert_eq!(response.status(), StatusCode::OK);
        let claims: Value = response.json().await.unwrap();
        assert_eq!((&claims["sub"], &claims["acr"]), (&json!("bob"), &json!(MFA)));
        assert_eq!(api.reached(), 1);
    }
}

#[tokio::test]
async fn introspected_tokens_are_held_to_the_same_rule() {
    let issuer = TestIssuer::start().await.unwrap();
    let introspector = Introspector::builder(
        issuer.introspection_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .build()
    .unwrap();
    let validator = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .introspection_fallback(introspector)
        .build()
        .unwrap();
    let api = api_with(issuer, BearerAuthLayer::new(validator).realm("api")).await;

    let met = api.issuer.mint().subject("carol").claim("acr", MFA).claim("auth_time", fresh()).opaque();
    assert!(!met.contains('.'), "an opaque token, only introspection can read it");
    for path in ["/both", "/extracted"] {
        let response = api.get(path, &met).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let claims: Value = response.json().await.unwrap();
        assert_eq!((&claims["sub"], &claims["acr"]), (&json!("carol"), &json!(MFA)), "{path}");
    }

    let short = r#"Bearer realm="api", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#;
    for (acr, auth_time) in [
        (Some("urn:example:password"), Some(fresh())),
        (Some(MFA), Some(stale())),
        (None, Some(fresh())),
        (Some(MFA), None),
    ] {
        let token = authenticated(api.issuer.mint(), acr, auth_time).opaque();
        for path in ["/both", "/extracted"] {
            let response = api.get(path, &token).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path} {acr:?} {auth_time:?}");
            assert_eq!(challenge(&response), Some(short), "{path} {acr:?} {auth_time:?}");
        }
    }
    assert_eq!(api.reached(), 2);
}

#[tokio::test]
async fn step_up_without_the_bearer_layer_is_a_500_never_a_pass() {
    let issuer = TestIssuer::start().await.unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let extracted = reached.clone();
    // Wired wrongly: no BearerAuthLayer in front.
    let app = stepped_up_route("/strong", strong(), &reached).route(
        "/extracted",
        get(move |_: SteppedUp<StrongAndRecent>| async move {
            extracted.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let api = Api { url: serve(app).await, issuer, reached, http: reqwest::Client::new() };
    // A token that would meet every requirement, had anything validated it.
    let token = api.issuer.mint().claim("acr", MFA).claim("auth_time", fresh()).sign();
    for path in ["/strong", "/extracted"] {
        let response = api.get(path, &token).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(challenge(&response), None, "{path}");
    }
    assert_eq!(api.reached(), 0, "no handler ran");
}

fn health_request(token: &str) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn a_grpc_call_that_falls_short_is_unauthenticated_with_the_challenge() {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let (listener, url) = listen().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(BearerAuthLayer::new(validator).realm("grpc"))
                    .layer(StepUpLayer::new(strong_and_recent())),
            )
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();

    let short = r#"Bearer realm="grpc", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hardware-key", max_age="300""#;
    for (acr, auth_time) in [(Some("urn:example:password"), Some(fresh())), (Some(MFA), Some(stale())), (None, None)] {
        let token = authenticated(issuer.mint(), acr, auth_time).sign();
        let status = HealthClient::new(channel.clone()).check(health_request(&token)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{acr:?} {auth_time:?}");
        assert_eq!(status.message(), "insufficient_user_authentication");
        let challenge = status.metadata().get("www-authenticate").map(|v| v.to_str().unwrap());
        assert_eq!(challenge, Some(short), "{acr:?} {auth_time:?}");
    }
    let met = issuer.mint().claim("acr", HARDWARE_KEY).claim("auth_time", fresh()).sign();
    assert!(HealthClient::new(channel).check(health_request(&met)).await.is_ok());
}
