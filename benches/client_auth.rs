//! What authenticating without a shared secret costs: one token request over loopback
//! to the embedded test issuer with `client_secret_basic`, `client_secret_jwt` and
//! `private_key_jwt` (ES256, EdDSA, RS256, PS256). Each JWT method signs a fresh
//! assertion per request on the client and verifies it on the server, so the difference
//! to `client_secret_basic` is the price of the assertion, both ends included.
//!
//! The `token_exchange` group puts a `TokenExchangeLayer` answer for a subject token it
//! already exchanged (the cache hit, every request after a caller's first) next to a
//! fresh exchange.
//!
//! Run with `cargo bench --bench client_auth`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_oauth::Algorithm;
use tower_oauth::client::{AuthMethod, ClientKey, TokenEndpoint, TokenExchange, TokenExchangeLayer};
use tower_oauth::testing::TestIssuer;

const HS_SECRET: &str = "a-client-secret-of-at-least-32-bytes!";

fn token_requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _entered = rt.enter();
    let mut group = c.benchmark_group("token_request");
    // One issuer per method: its memory of used assertion `jti`s is bounded.
    let basic = rt.block_on(TestIssuer::builder().client("basic", "s3cret").start()).expect("issuer");
    let mut endpoint = TokenEndpoint::builder(basic.token_endpoint(), "basic", "s3cret").build().expect("endpoint");
    group.bench_function("client_secret_basic", |b| b.iter(|| rt.block_on(endpoint.request_token()).expect("token")));

    let hs = rt.block_on(TestIssuer::builder().client("hs", HS_SECRET).start()).expect("issuer");
    let mut endpoint = TokenEndpoint::builder(hs.token_endpoint(), "hs", HS_SECRET)
        .auth_method(AuthMethod::ClientSecretJwt)
        .build()
        .expect("endpoint");
    group.bench_function("client_secret_jwt", |b| b.iter(|| rt.block_on(endpoint.request_token()).expect("token")));

    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256] {
        let key = ClientKey::generate_for(alg).expect("a key").with_kid("bench");
        let issuer = rt.block_on(TestIssuer::builder().client_jwks("pk", &key.public_jwk()).start()).expect("issuer");
        let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "pk", key).build().expect("endpoint");
        group.bench_function(format!("private_key_jwt_{alg}"), |b| {
            b.iter(|| rt.block_on(endpoint.request_token()).expect("token"))
        });
    }
    group.finish();
}

fn token_exchange(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _entered = rt.enter();
    let issuer = rt
        .block_on(
            TestIssuer::builder()
                .client("gateway", "s3cret")
                .exchange_policy("gateway", ["https://down.example"])
                .start(),
        )
        .expect("issuer");
    let endpoint =
        || TokenEndpoint::builder(issuer.token_endpoint(), "gateway", "s3cret").audience("https://down.example");
    let layer = TokenExchangeLayer::new(endpoint().build().expect("endpoint"));
    let subject = issuer.mint().subject("alice").sign();
    rt.block_on(layer.exchange(&subject)).expect("exchanged");
    let mut group = c.benchmark_group("token_exchange");
    group.bench_function("layer_cached", |b| b.iter(|| rt.block_on(layer.exchange(black_box(&subject))).expect("hit")));
    let mut fresh = endpoint().token_exchange(TokenExchange::access_token(subject.as_str())).build().expect("endpoint");
    group.bench_function("exchange_request", |b| b.iter(|| rt.block_on(fresh.request_token()).expect("token")));
    group.finish();
}

criterion_group!(benches, token_requests, token_exchange);
criterion_main!(benches);
