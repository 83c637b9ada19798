//! A tonic client whose `Channel` is wrapped in `ClientCredentialsLayer`: every call
//! carries an access token from the token endpoint, kept fresh by a `TokenCache`.
//!
//! Run the `grpc_server` example, then:
//!
//! ```text
//! OAUTH_TOKEN_URL=http://127.0.0.1:PORT/token OAUTH_CLIENT_ID=test-client OAUTH_CLIENT_SECRET=test-secret \
//!   GRPC_URL=http://127.0.0.1:50051 cargo run --example tonic_client
//! ```
//!
//! Variables: `OAUTH_TOKEN_URL` (or `OAUTH_ISSUER` to discover it), `OAUTH_CLIENT_ID`,
//! `OAUTH_CLIENT_SECRET`, optional `OAUTH_SCOPE` and `OAUTH_RESOURCE`, and `GRPC_URL`
//! (default `http://127.0.0.1:50051`). It calls the gRPC health service and `WhoAmI`,
//! prints one line for each, and exits non-zero if either fails.

#[path = "grpc_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod grpc_server;

use std::process::ExitCode;

use grpc_server::{WHOAMI_GET, WhoAmIReply, WhoAmIRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_oauth::client::{ClientCredentialsLayer, TokenCache, TokenEndpoint};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn run() -> Result<(), Error> {
    let id = var("OAUTH_CLIENT_ID").ok_or("OAUTH_CLIENT_ID is required")?;
    let secret = var("OAUTH_CLIENT_SECRET").ok_or("OAUTH_CLIENT_SECRET is required")?;
    let mut endpoint = match (var("OAUTH_TOKEN_URL"), var("OAUTH_ISSUER")) {
        (Some(url), _) => TokenEndpoint::builder(url, id, secret),
        (None, Some(issuer)) => TokenEndpoint::discover(issuer, id, secret),
        (None, None) => return Err("OAUTH_TOKEN_URL or OAUTH_ISSUER is required".into()),
    };
    if let Some(scope) = var("OAUTH_SCOPE") {
        endpoint = endpoint.scope(&scope);
    }
    if let Some(resource) = var("OAUTH_RESOURCE") {
        endpoint = endpoint.resource(resource);
    }
    let cache = TokenCache::new(endpoint.build()?)?;

    let origin: http::Uri = var("GRPC_URL").as_deref().unwrap_or("http://127.0.0.1:50051").parse()?;
    let channel = tonic::transport::Channel::builder(origin.clone()).connect().await?;
    // The layer goes around the channel. Clients built `with_origin` send absolute URIs,
    // so the layer's default rule (https, or http to loopback) sees where calls go.
    let channel = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache)).service(channel);

    let mut health = HealthClient::with_origin(channel.clone(), origin.clone());
    let status = health.check(HealthCheckRequest { service: String::new() }).await?.into_inner();
    println!("health: {:?}", status.status());

    let mut grpc = tonic::client::Grpc::with_origin(channel, origin);
    grpc.ready().await?;
    let reply: WhoAmIReply = grpc
        .unary(
            tonic::Request::new(WhoAmIRequest {}),
            http::uri::PathAndQuery::from_static(WHOAMI_GET),
            tonic_prost::ProstCodec::default(),
        )
        .await?
        .into_inner();
    println!("whoami: subject={} client_id={} scopes={:?}", reply.subject, reply.client_id, reply.scopes);
    Ok(())
}
