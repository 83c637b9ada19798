//! `ClientCredentialsLayer` over real clients: hyper-util's legacy client against an API
//! that validates tokens, a tonic `Channel` against the `grpc_server` example, the
//! attach predicate, and the 401 retry rule.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt as _};
use tower_oauth::BearerAuthLayer;
use tower_oauth::client::{ClientCredentialsLayer, RequestTarget, TokenCache, TokenEndpoint, TokenError};
use tower_oauth::testing::{Endpoint, Fault, TestIssuer};

use crate::support::api::{claims_api, listen, validator};
use crate::support::server::{Canned, Scripted};

fn cache(issuer: &TestIssuer) -> TokenCache {
    let endpoint = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .scope("read")
    .build()
    .unwrap();
    TokenCache::new(endpoint).unwrap()
}

fn get_empty(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

#[tokio::test]
async fn the_hyper_util_client_calls_a_validating_api_with_the_cached_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = claims_api(BearerAuthLayer::new(validator(&issuer))).await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache(&issuer))).service(http);
    for _ in 0..3 {
        let response = client.ready().await.unwrap().call(get_empty(&api)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let claims: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(claims["client_id"], TestIssuer::DEFAULT_CLIENT_ID);
        assert_eq!(claims["scope"], "read");
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1, "one token serves every request");
}

/// An inner service that records the `Authorization` header of each request.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Option<String>>>>);

impl Recorder {
    fn service(
        &self,
    ) -> impl Service<Request<Empty<Bytes>>, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let seen = self.0.clone();
        tower::service_fn(move |request: Request<Empty<Bytes>>| {
            let authorization =
                request.headers().get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(authorization);
            std::future::ready(Ok::<_, Infallible>(Response::new(Empty::new())))
        })
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_a_cold_cache_make_one_token_request() {
    let issuer = TestIssuer::start().await.unwrap();
    issuer.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(200)));
    let recorder = Recorder::default();
    let service = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache(&issuer))).service(recorder.service());
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(get_empty("https://api.example/x")).await.map(|_| ()) })
        })
        .collect();
    for request in requests {
        request.await.unwrap().unwrap();
    }
    assert_eq!(issuer.requests(Endpoint::Token), 1);
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1000);
    assert!(seen.iter().all(|a| a.as_ref().is_some_and(|a| a.starts_with("Bearer ey"))));
}

#[tokio::test]
async fn tokens_go_only_where_the_predicate_allows_and_never_over_an_existing_header() {
    let issuer = TestIssuer::start().await.unwrap();
    let recorder = Recorder::default();
    let cache = cache(&issuer);
    let mut service = ClientCredentialsLayer::new(cache.clone()).layer_service(recorder.service());
    for uri in ["http://api.example/x", "http://10.1.2.3/x", "/relative/path", "http://localhost.evil/"] {
        service.ready().await.unwrap().call(get_empty(uri)).await.unwrap();
    }
    assert_eq!(issuer.requests(Endpoint::Token), 0, "nothing was attached, so nothing was fetched");
    let existing = Request::get("https://api.example/x").header("authorization", "Basic dXNlcjpwYXNz");
    service.ready().await.unwrap().call(existing.body(Empty::new()).unwrap()).await.unwrap();
    for uri in ["https://api.example/x", "http://127.0.0.1:1/x", "http://localhost/x", "http://[::1]/x"] {
        service.ready().await.unwrap().call(get_empty(uri)).await.unwrap();
    }
    let seen = recorder.seen();
    assert_eq!(seen[..4], [None, None, None, None]);
    assert_eq!(seen[4].as_deref(), Some("Basic dXNlcjpwYXNz"), "an existing header is untouched");
    assert!(seen[5..].iter().all(|a| a.as_ref().is_some_and(|a| a.starts_with("Bearer "))), "{seen:?}");

    // A custom rule: relative requests to one trusted channel.
    let recorder = Recorder::default();
    let mut service = ClientCredentialsLayer::new(cache)
        .attach_if(|target: &RequestTarget<'_>| target.scheme().is_none() && target.path().starts_with("/grpc."))
        .layer_service(recorder.service());
    for uri in ["/grpc.health.v1.Health/Check", "/other", "https://api.example/x"] {
        service.ready().await.unwrap().call(get_empty(uri)).await.unwrap();
    }
    let seen = recorder.seen();
    assert!(seen[0].is_some() && seen[1].is_none() && seen[2].is_none(), "{seen:?}");
}

/// `Layer::layer`, readable in a test.
trait LayerService {
    fn layer_service<S>(&self, inner: S) -> tower_oauth::ClientCredentials<S>;
}

impl LayerService for ClientCredentialsLayer {
    fn layer_service<S>(&self, inner: S) -> tower_oauth::ClientCredentials<S> {
        tower::Layer::layer(self, inner)
    }
}

fn authorizations(api: &Scripted) -> Vec<String> {
    api.seen().iter().map(|s| s.header("authorization").unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn a_401_causes_one_refresh_and_one_retry_with_the_new_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = Scripted::start(Canned::status(200)).await;
    api.push(Canned::status(401));
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ClientCredentialsLayer::new(cache(&issuer)).layer_service(http);
    let response = client.ready().await.unwrap().call(get_empty(&api.url("/orders"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = authorizations(&api);
    assert_eq!(seen.len(), 2, "one retry");
    assert_ne!(seen[0], seen[1], "the retry carries the new token");
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test]
async fn a_second_401_is_the_answer_and_does_not_refresh_again() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = Scripted::start(Canned::status(401)).await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ClientCredentialsLayer::new(cache(&issuer)).layer_service(http);
    let url = api.url("/orders");
    let response = client.ready().await.unwrap().call(get_empty(&url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.count(), 2, "retried once, not twice");
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    // The fresh token is refused too: within the cooldown no further refresh happens.
    let response = client.ready().await.unwrap().call(get_empty(&url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.count(), 3);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test]
async fn a_request_with_a_body_is_not_replayed_but_the_next_one_carries_a_new_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = Scripted::start(Canned::status(200)).await;
    api.push(Canned::status(401));
    let cache = cache(&issuer);
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = ClientCredentialsLayer::new(cache.clone()).layer_service(http);
    let post = |body: &'static str| {
        Request::post(api.url("/orders")).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
    };
    let response = client.ready().await.unwrap().call(post("{\"n\":1}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a body that may not be replayable is not replayed");
    assert_eq!(api.count(), 1);
    // The rejection was reported: the cache fetches a new token in the background.
    tokio::time::timeout(Duration::from_secs(5), async {
        while cache.cached().is_none_or(|t| t.generation() < 2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a new token after the rejection");
    let response = client.ready().await.unwrap().call(post("{\"n\":2}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = authorizations(&api);
    assert_ne!(seen[0], seen[1]);
    assert_eq!(api.seen()[1].body, "{\"n\":2}");
}

#[tokio::test]
async fn a_token_failure_surfaces_as_a_typed_error_from_the_service() {
    let issuer = TestIssuer::start().await.unwrap();
    issuer.set_fault(Endpoint::Token, Fault::Status(503));
    let recorder = Recorder::default();
    let mut service = ClientCredentialsLayer::new(cache(&issuer)).layer_service(recorder.service());
    let error = service.ready().await.unwrap().call(get_empty("https://api.example/x")).await.unwrap_err();
    let error = error.downcast_ref::<TokenError>().expect("a TokenError");
    assert!(matches!(error, TokenError::ServerError { status, .. } if *status == 503), "{error:?}");
    assert!(recorder.seen().is_empty(), "the inner service is not called without a token");
}

#[tokio::test]
async fn a_tonic_channel_carries_the_token_to_a_validating_grpc_server() {
    use crate::grpc_server::{WHOAMI_GET, WhoAmIReply, WhoAmIRequest};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let (listener, origin) = listen().await;
    let origin: http::Uri = origin.parse().unwrap();
    tokio::spawn(crate::grpc_server::serve(listener, validator));
    let channel = tonic::transport::Channel::builder(origin.clone()).connect().await.unwrap();
    let channel = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache(&issuer))).service(channel);

    // With the origin set, requests carry the channel's scheme and host, so the
    // default rule (https, or http to loopback) applies.
    let mut health = HealthClient::with_origin(channel.clone(), origin.clone());
    let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status, 1, "SERVING");

    let mut grpc = tonic::client::Grpc::with_origin(channel, origin);
    grpc.ready().await.unwrap();
    let reply: WhoAmIReply = grpc
        .unary(
            tonic::Request::new(WhoAmIRequest {}),
            http::uri::PathAndQuery::from_static(WHOAMI_GET),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.client_id, TestIssuer::DEFAULT_CLIENT_ID);
    assert_eq!(reply.scopes, "read");
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn without_an_origin_a_tonic_request_gets_no_token_unless_the_predicate_says_so() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let (listener, url) = listen().await;
    tokio::spawn(crate::grpc_server::serve(listener, validator));
    let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();

    let default = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache(&issuer))).service(channel.clone());
    let status = HealthClient::new(default).check(HealthCheckRequest { service: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let trusted =
        ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache(&issuer)).attach_if(|_| true)).service(channel);
    assert!(HealthClient::new(trusted).check(HealthCheckRequest { service: String::new() }).await.is_ok());
}
