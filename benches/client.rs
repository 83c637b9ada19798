//! Outbound hot path: a request through `ClientCredentials` with a warm cache against
//! the same request through the bare inner service. Both build the request and poll the
//! response future once; the difference is the layer's cost (predicate, cache read,
//! header insert, and the copy of the head kept for a 401 retry).
//!
//! The bar: a GET with the default 401 retry costs at most 1.1 times the same GET with
//! the retry off, compared inside one run (absolute times on a shared machine swing).
//!
//! The `dpop` group puts the cost of a DPoP proof (`DpopKey::proof`) next to its floor,
//! one ES256 signature over an input of the same size: the bar is a proof at most 1.1
//! times the floor, since signing is the part no encoding can avoid.
//!
//! Run with `cargo bench --bench client`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use tower::{Layer as _, Service};
use tower_oauth::client::{
    CacheKey, ClientCredentialsLayer, DpopKey, FetchFuture, GrantKind, TokenCache, TokenResponse, TokenSource,
};

/// A token source that answers at once: the benchmark never touches the network.
struct Fixed(CacheKey);

impl TokenSource for Fixed {
    fn key(&self) -> &CacheKey {
        &self.0
    }

    fn fetch(&mut self) -> FetchFuture<'_> {
        // A realistic size: RS256 access tokens are around 800 bytes.
        let token = format!("eyJ{}", "a".repeat(800));
        Box::pin(async move { TokenResponse::bearer(token, Some(Duration::from_secs(3600))) })
    }
}

/// A DPoP token source: an 800-byte token of `token_type: DPoP`, bound to its key.
struct FixedDpop(CacheKey, DpopKey);

impl TokenSource for FixedDpop {
    fn key(&self) -> &CacheKey {
        &self.0
    }

    fn fetch(&mut self) -> FetchFuture<'_> {
        let body = format!(r#"{{"access_token":"eyJ{}","token_type":"DPoP","expires_in":3600}}"#, "a".repeat(800));
        Box::pin(async move { TokenResponse::parse(body.as_bytes()) })
    }

    fn dpop_key(&self) -> Option<&DpopKey> {
        Some(&self.1)
    }
}

/// The cheapest possible inner service: answers at once.
#[derive(Clone, Copy)]
struct Bare;

impl<B> Service<Request<B>> for Bare {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(&request);
        ready(Ok(Response::new(Empty::new())))
    }
}

fn drive<S, B>(service: &mut S, request: Request<B>) -> bool
where
    S: Service<Request<B>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let future = pin!(service.call(request));
    matches!(future.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("https://api.example.com/v1/orders?limit=10")
        .header("accept", "application/json")
        .header("user-agent", "bench/1")
        .body(Empty::new())
        .unwrap()
}

fn post() -> Request<Full<Bytes>> {
    Request::post("https://api.example.com/v1/orders")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .unwrap()
}

fn attach(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = runtime.block_on(async {
        let key = CacheKey::new("memory:", "bench", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        let cache = TokenCache::new(Fixed(key)).unwrap();
        cache.token().await.unwrap();
        cache
    });
    let _guard = runtime.enter();

    let mut group = c.benchmark_group("client_attach");
    group.bench_function("bare GET", |b| b.iter(|| drive(&mut Bare, get())));
    let mut layered = ClientCredentialsLayer::new(cache.clone()).layer(Bare);
    group.bench_function("layered GET (replayable: head kept for a 401 retry)", |b| {
        b.iter(|| drive(&mut layered, get()))
    });
    let mut no_retry = ClientCredentialsLayer::new(cache.clone()).retry_on_unauthorized(false).layer(Bare);
    group.bench_function("layered GET (retry off)", |b| b.iter(|| drive(&mut no_retry, get())));
    group.bench_function("bare POST", |b| b.iter(|| drive(&mut Bare, post())));
    group.bench_function("layered POST (not replayable)", |b| b.iter(|| drive(&mut layered, post())));
    let mut skipped = ClientCredentialsLayer::new(cache).attach_if(|_| false).layer(Bare);
    group.bench_function("layered GET (predicate says no)", |b| b.iter(|| drive(&mut skipped, get())));
    group.finish();
}

fn dpop(c: &mut Criterion) {
    let key = DpopKey::generate().unwrap();
    let url: url::Url = "https://api.example.test/resource?x=1".parse().unwrap();
    // The length of a base64url SHA-256: a typical opaque access token.
    let token = "Kx8zQ3vN1pW7rT5yU2iO9aS4dF6gH0jL_cV-bM3nE8q";
    assert_eq!(token.len(), 43);
    let method = http::Method::GET;
    let sample = key.proof(&method, &url, Some(token), None).unwrap();
    let signing_input = vec![b'e'; sample.rfind('.').unwrap()];
    let floor = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let rng = SystemRandom::new();

    // The layer attaching a cached DPoP token and a proof for each GET.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = runtime.block_on(async {
        let cache_key =
            CacheKey::new("memory:", "bench", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        let cache = TokenCache::new(FixedDpop(cache_key, key.clone())).unwrap();
        assert!(cache.token().await.unwrap().dpop_key().is_some());
        cache
    });
    let _guard = runtime.enter();
    let mut layered = ClientCredentialsLayer::new(cache).layer(Bare);

    let mut group = c.benchmark_group("dpop");
    group.bench_function("es256_sign_floor", |b| b.iter(|| floor.sign(&rng, black_box(&signing_input)).unwrap()));
    group.bench_function("proof", |b| b.iter(|| key.proof(&method, black_box(&url), Some(token), None).unwrap()));
    group.bench_function("layered GET (DPoP token and proof)", |b| b.iter(|| drive(&mut layered, get())));
    group.finish();
}

criterion_group!(benches, attach, dpop);
criterion_main!(benches);
