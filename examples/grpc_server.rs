//! A tonic server behind `BearerAuthLayer`: the gRPC health service plus a `WhoAmI`
//! service whose handler reads the validated claims.
//!
//! Run with: `OAUTH_ISSUER=https://idp.example OAUTH_AUDIENCE=my-api cargo run --example grpc_server`
//!
//! Variables: `OAUTH_ISSUER` (or `OAUTH_ISSUERS`, a comma list), `OAUTH_AUDIENCE`,
//! optional `OAUTH_ALGORITHMS` and `OAUTH_REQUIRE_AT_JWT=1`, and `GRPC_LISTEN`
//! (default `127.0.0.1:50051`). Rejections are gRPC statuses: UNAUTHENTICATED (16) for a
//! missing or bad token, with the RFC 6750 `www-authenticate` header alongside.
//!
//! ```text
//! grpcurl -plaintext -H "authorization: Bearer $TOKEN" localhost:50051 grpc.health.v1.Health/Check
//! ```
//!
//! `WhoAmI` is written by hand (what `tonic-build` would generate), so no `protoc` is
//! needed: `/tower_oauth.demo.WhoAmI/Get` takes an empty message and answers the
//! caller's subject, client id and scopes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use tonic::server::{Grpc, NamedService, UnaryService};
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, TypPolicy, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut builder = Validator::builder().audience(var("OAUTH_AUDIENCE").ok_or("OAUTH_AUDIENCE is required")?);
    let issuers = var("OAUTH_ISSUERS").or_else(|| var("OAUTH_ISSUER")).ok_or("OAUTH_ISSUER is required")?;
    for issuer in issuers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        builder = builder.issuer(issuer);
    }
    if let Some(algorithms) = var("OAUTH_ALGORITHMS") {
        builder =
            builder.algorithms(algorithms.split(',').map(|a| a.trim().parse()).collect::<Result<Vec<Algorithm>, _>>()?);
    }
    if var("OAUTH_REQUIRE_AT_JWT").as_deref() == Some("1") {
        builder = builder.typ(TypPolicy::Rfc9068);
    }
    let validator = builder.build()?;

    let listener = tokio::net::TcpListener::bind(var("GRPC_LISTEN").as_deref().unwrap_or("127.0.0.1:50051")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, validator).await?;
    Ok(())
}

/// Serves the health and `WhoAmI` services on `listener`, every call behind the bearer layer.
pub async fn serve(listener: tokio::net::TcpListener, validator: Validator) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<WhoAmIServer>().await;
    tonic::transport::Server::builder()
        .layer(BearerAuthLayer::new(validator).realm("grpc_server"))
        .add_service(health)
        .add_service(WhoAmIServer)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
}

/// The empty request of `WhoAmI/Get`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIRequest {}

/// Who the caller is, according to its validated token.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIReply {
    /// `sub`.
    #[prost(string, tag = "1")]
    pub subject: String,
    /// `client_id` (or `azp`).
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// The granted scopes, space-separated.
    #[prost(string, tag = "3")]
    pub scopes: String,
}

/// The `WhoAmI` service: what `tonic-build` would generate, by hand.
#[derive(Clone, Copy, Debug)]
pub struct WhoAmIServer;

/// The full method path of `WhoAmI/Get`.
pub const WHOAMI_GET: &str = "/tower_oauth.demo.WhoAmI/Get";

impl NamedService for WhoAmIServer {
    const NAME: &'static str = "tower_oauth.demo.WhoAmI";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

struct Get;

impl UnaryService<WhoAmIRequest> for Get {
    type Response = WhoAmIReply;
    type Future = BoxFuture<tonic::Response<WhoAmIReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
        // The claims BearerAuthLayer validated travel in the request's extensions.
        let reply = match request.extensions().get::<Claims>() {
            Some(claims) => Ok(tonic::Response::new(WhoAmIReply {
                subject: claims.subject().unwrap_or_default().to_owned(),
                client_id: claims.client_id().unwrap_or_default().to_owned(),
                scopes: claims.scopes().as_str().to_owned(),
            })),
            None => Err(tonic::Status::internal("no validated claims: is BearerAuthLayer installed?")),
        };
        Box::pin(std::future::ready(reply))
    }
}

impl<B> tower::Service<http::Request<B>> for WhoAmIServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == WHOAMI_GET {
            return Box::pin(async move {
                let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Get, request).await)
            });
        }
        Box::pin(async move {
            let mut response = http::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(tonic::Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
            headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
            Ok(response)
        })
    }
}
