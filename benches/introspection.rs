//! Introspection benchmarks: a cached introspection hit against a local RS256 JWT
//! validation, both through one `Validator` and one `BearerAuthLayer`, the
//! `Introspector` hit on its own, and the yardstick of the layer's cached path: a JWT
//! served from its verified-token cache.
//!
//! The introspection endpoint is the embedded test issuer on 127.0.0.1, asked once per
//! token before the timed loops; the loops never leave the process. The `layer/` cases
//! go through one driver (a current-thread runtime's `block_on`); the `layer_polled/`
//! cases call the service and poll its response once, with no runtime in the loop, as a
//! kept introspection answer is settled without a future. Run with
//! `cargo bench --bench introspection`.

// Shared with the other benches; this one needs only the service and its parts.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode, header};
use support::{SCOPE, bearer, configure, one_request, service};
use tower::{Service, ServiceExt as _};
use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::introspect::Introspector;
use tower_oauth::testing::TestIssuer;
use tower_oauth::{BearerAuthLayer, Validator};

fn introspection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    // The key store's refresher is spawned on this runtime.
    let _entered = rt.enter();
    let issuer = rt.block_on(TestIssuer::start()).expect("the test issuer starts");
    let introspector = Introspector::builder(
        issuer.introspection_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .build()
    .expect("an introspector");
    let validator = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .introspection_fallback(introspector.clone())
        .build()
        .expect("a validator");
    let opaque = issuer.mint().subject("f3b2c1d0-8e7a-4b6c-9d5e-1a2b3c4d5e6f").scope(SCOPE).opaque();
    let jwt = issuer.mint().subject("f3b2c1d0-8e7a-4b6c-9d5e-1a2b3c4d5e6f").scope(SCOPE).sign();
    let svc = service(BearerAuthLayer::new(validator.clone()));
    // The yardstick: a JWT served from the layer's verified-token cache (which never
    // keeps an introspected token).
    let cached_svc = service(BearerAuthLayer::new(validator.clone()).cache(VerifiedTokenCache::default()));

    let request = |token: &str| {
        let mut request = Request::new(());
        request.headers_mut().insert(header::AUTHORIZATION, bearer(token));
        request
    };
    let drive = |cached: bool, token: &str| {
        let mut svc = if cached { cached_svc.clone() } else { svc.clone() };
        let request = request(token);
        rt.block_on(async move {
            let ready = svc.ready().await.expect("ready");
            ready.call(request).await.expect("infallible").status()
        })
    };
    let through_layer = |token: &str| drive(false, token);
    let through_cached_layer = |token: &str| drive(true, token);
    // Warm up: the keys for the JWT, the introspection answer for the opaque token.
    assert_eq!(through_layer(&jwt), StatusCode::OK);
    assert_eq!(through_layer(&opaque), StatusCode::OK);
    assert_eq!(through_cached_layer(&jwt), StatusCode::OK);
    let introspections = introspector.requests();
    assert_eq!(introspections, 1);

    let mut group = c.benchmark_group("introspection");
    configure(&mut group);
    group.bench_function("introspector/cached_hit", |b| {
        b.iter(|| rt.block_on(introspector.introspect(black_box(&opaque))).expect("active"))
    });
    group.bench_function("validator/introspection_cached_hit", |b| {
        b.iter(|| rt.block_on(validator.validate(black_box(&opaque))).expect("valid"))
    });
    group.bench_function("validator/jwt_rs256", |b| {
        b.iter(|| rt.block_on(validator.validate(black_box(&jwt))).expect("valid"))
    });
    group.bench_function("layer/introspection_cached_hit", |b| {
        b.iter(|| assert_eq!(through_layer(black_box(&opaque)), StatusCode::OK))
    });
    group.bench_function("layer/jwt_rs256", |b| b.iter(|| assert_eq!(through_layer(black_box(&jwt)), StatusCode::OK)));
    group.bench_function("layer/jwt_verified_cache_hit", |b| {
        b.iter(|| assert_eq!(through_cached_layer(black_box(&jwt)), StatusCode::OK))
    });
    // The same two hits with no runtime in the loop: `poll_ready`, `call` and one poll
    // of the response future, as the cache benches of `validate` drive the layer.
    let (mut polled, mut polled_cached) = (svc.clone(), cached_svc.clone());
    let (opaque_auth, jwt_auth) = (bearer(&opaque), bearer(&jwt));
    group.bench_function("layer_polled/introspection_cached_hit", |b| {
        b.iter(|| assert_eq!(one_request(&mut polled, black_box(&opaque_auth)), StatusCode::OK))
    });
    group.bench_function("layer_polled/jwt_verified_cache_hit", |b| {
        b.iter(|| assert_eq!(one_request(&mut polled_cached, black_box(&jwt_auth)), StatusCode::OK))
    });
    group.finish();
    assert_eq!(introspector.requests(), introspections, "every timed introspection was a cache hit");
}

criterion_group!(benches, introspection);
criterion_main!(benches);
