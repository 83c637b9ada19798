//! The HTTP/1.1 server (over TLS when configured): accept loop, routing, faults, and
//! the discovery and JWKS documents.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, CACHE_CONTROL};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::client_auth;
use super::introspection::{introspect, userinfo};
use super::response::{Body, empty, json};
use super::state::Shared;
use super::token_endpoint::token;
use super::{Endpoint, Fault, GrantType};

/// Accepts connections until the task is aborted. Connection tasks live in a
/// `JoinSet` owned by this task, so aborting it drops every open connection too,
/// stalled bodies included.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%error, "test issuer: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    #[cfg(feature = "mtls-rustls")]
    if let Some(tls) = &shared.tls {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "test issuer: TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        // The client's certificate, for every request on this connection.
        let mut connection = http::Extensions::new();
        if let Some(peer) = super::tls::PeerCertificates::of(stream.get_ref().1) {
            connection.insert(peer);
        }
        return serve_http(TokioIo::new(stream), shared, connection).await;
    }
    serve_http(TokioIo::new(stream), shared, http::Extensions::new()).await;
}

/// How long a client may take to finish the TLS handshake.
#[cfg(feature = "mtls-rustls")]
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 on `io`; each request gets the `connection` extensions.
async fn serve_http<I>(io: I, shared: Arc<Shared>, connection: http::Extensions)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().extend(connection.clone());
        handle(Arc::clone(&shared), request)
    });
    let connection = http1::Builder::new().timer(TokioTimer::new()).serve_connection(io, service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "test issuer: connection ended with an error");
    }
}

/// The service error that makes hyper close the connection without a response,
/// which is how [`Fault::Down`] looks to a client.
#[derive(Debug)]
struct ConnectionDropped;

impl fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for ConnectionDropped {}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, ConnectionDropped> {
    let Some(endpoint) = route(&shared, request.uri().path()) else {
        return Ok(empty(StatusCode::NOT_FOUND));
    };
    shared.record_request(endpoint);
    match shared.fault(endpoint) {
        Some(Fault::Down) => return Err(ConnectionDropped),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(fault) => {
            if let Some(response) = fault.response() {
                return Ok(response);
            }
        }
        None => {}
    }
    let allowed = match endpoint {
        Endpoint::Token | Endpoint::Introspection => "POST",
        // OpenID Connect Core 1.0 §5.3.1: GET and POST.
        Endpoint::Userinfo => "GET, POST",
        _ => "GET, HEAD",
    };
    let method_allowed = match endpoint {
        Endpoint::Token | Endpoint::Introspection => request.method() == Method::POST,
        Endpoint::Userinfo => request.method() == Method::GET || request.method() == Method::POST,
        _ => request.method() == Method::GET || request.method() == Method::HEAD,
    };
    if !method_allowed {
        // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
        let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(allowed));
        return Ok(response);
    }
    Ok(match endpoint {
        Endpoint::OpenIdConfiguration | Endpoint::OAuthServerMetadata => json(StatusCode::OK, &metadata(&shared)),
        Endpoint::Jwks => jwks(&shared),
        Endpoint::Token => token(shared, request).await,
        Endpoint::Introspection => introspect(shared, request).await,
        Endpoint::Userinfo => userinfo(&shared, &request),
    })
}

fn route(shared: &Shared, path: &str) -> Option<Endpoint> {
    let prefix = shared.prefix.as_str();
    // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's
    // path. Some clients append it to the issuer instead, as OIDC does, so that
    // location is served too.
    if path.strip_prefix("/.well-known/oauth-authorization-server") == Some(prefix) {
        return Some(Endpoint::OAuthServerMetadata);
    }
    let rest = path.strip_prefix(prefix)?;
    match rest {
        // OpenID Connect Discovery 1.0 §4: the issuer followed by the well-known path.
        "/.well-known/openid-configuration" => Some(Endpoint::OpenIdConfiguration),
        "/.well-known/oauth-authorization-server" => Some(Endpoint::OAuthServerMetadata),
        "/jwks" => Some(Endpoint::Jwks),
        "/introspect" => Some(Endpoint::Introspection),
        "/userinfo" => Some(Endpoint::Userinfo),
        _ if rest == shared.token_path => Some(Endpoint::Token),
        _ => None,
    }
}

/// Authorization server metadata (RFC 8414 §2), which OpenID Connect Discovery 1.0
/// §3 extends; one document serves both.
fn metadata(shared: &Shared) -> Value {
    let auth_methods = client_auth::methods(shared);
    let auth_algorithms = client_auth::signing_algorithms();
    let grant_types: Vec<&str> = GrantType::ALL.iter().map(|grant| grant.as_str()).collect();
    let mut metadata = json!({
        "issuer": shared.issuer,
        "jwks_uri": shared.jwks_uri(),
        "token_endpoint": shared.token_endpoint(),
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": auth_algorithms,
        "introspection_endpoint": shared.introspection_endpoint(),
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": auth_algorithms,
        "userinfo_endpoint": shared.userinfo_endpoint(),
        // Not served: codes come from `TestIssuer::issue_code` instead.
        "authorization_endpoint": format!("{}/authorize", shared.issuer),
        "grant_types_supported": grant_types,
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": [shared.signing_alg.as_str()],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "read", "write", "admin"],
        // RFC 9449 §5.1.
        "dpop_signing_alg_values_supported": super::dpop::algorithms(shared),
    });
    if shared.serves_tls() {
        // RFC 8705 §3.3 and §5: every endpoint speaks mutual TLS, so the aliases are
        // the endpoints themselves.
        metadata["tls_client_certificate_bound_access_tokens"] = true.into();
        metadata["mtls_endpoint_aliases"] = json!({
            "token_endpoint": shared.token_endpoint(),
            "introspection_endpoint": shared.introspection_endpoint(),
            "userinfo_endpoint": shared.userinfo_endpoint(),
        });
    }
    metadata
}

fn jwks(shared: &Shared) -> Response<Body> {
    let document = shared.keys().jwks();
    let mut response = json(StatusCode::OK, &document);
    if let Some(max_age) = shared.jwks_max_age
        && let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}"))
    {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}
