//! `BearerAuthLayer` in a tonic server on 127.0.0.1, called through a tonic `Channel`.
//! Rejections are gRPC statuses with the RFC 6750 challenge alongside.
#![cfg(feature = "testing")]

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_oauth::BearerAuthLayer;
use tower_oauth::bearer::RequireScopeLayer;
use tower_oauth::testing::TestIssuer;

use crate::grpc_server::{WHOAMI_GET, WhoAmIReply, WhoAmIRequest};
use crate::support::api::{listen, validator};

async fn start() -> (TestIssuer, Channel) {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let (listener, url) = listen().await;
    tokio::spawn(crate::grpc_server::serve(listener, validator));
    (issuer, Channel::from_shared(url).unwrap().connect().await.unwrap())
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn whoami(channel: Channel, request: tonic::Request<WhoAmIRequest>) -> Result<WhoAmIReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(WHOAMI_GET);
    grpc.unary(request, path, tonic_prost::ProstCodec::default()).await.map(tonic::Response::into_inner)
}

fn challenge(status: &tonic::Status) -> Option<&str> {
    status.metadata().get("www-authenticate").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn claims_reach_the_tonic_handler() {
    let (issuer, channel) = start().await;
    let token = issuer.mint().subject("svc-a").scope("read write").sign();
    let reply = whoami(channel, with_token(WhoAmIRequest {}, &token)).await.unwrap();
    assert_eq!(reply.subject, "svc-a");
    assert_eq!(reply.client_id, "test-client");
    assert_eq!(reply.scopes, "read write");
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated_with_the_challenge() {
    let (_issuer, channel) = start().await;
    let status = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(challenge(&status), Some(r#"Bearer realm="grpc_server""#));
}

#[tokio::test]
async fn a_bad_token_is_unauthenticated_with_invalid_token() {
    let (issuer, channel) = start().await;
    let request = with_token(HealthCheckRequest { service: String::new() }, &issuer.mint().expired().sign());
    let status = HealthClient::new(channel.clone()).check(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "invalid_token");
    assert_eq!(challenge(&status), Some(r#"Bearer realm="grpc_server", error="invalid_token""#));
    // And a good one goes through to the health service.
    let ok = with_token(HealthCheckRequest { service: String::new() }, &issuer.mint().sign());
    assert!(HealthClient::new(channel).check(ok).await.is_ok());
}

#[tokio::test]
async fn a_missing_scope_is_permission_denied() {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator(&issuer);
    let (listener, url) = listen().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(BearerAuthLayer::new(validator).realm("grpc"))
                    .layer(RequireScopeLayer::new(["admin"])),
            )
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let request = with_token(HealthCheckRequest { service: String::new() }, &issuer.mint().scope("read").sign());
    let status = HealthClient::new(channel.clone()).check(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(challenge(&status), Some(r#"Bearer realm="grpc", error="insufficient_scope", scope="admin""#));
    let admin = with_token(HealthCheckRequest { service: String::new() }, &issuer.mint().scope("admin").sign());
    assert!(HealthClient::new(channel).check(admin).await.is_ok());
}
