//! [`TonicClientCertificateLayer`]: the client's certificate on a tonic server's TLS
//! connection, as a [`ClientCertificate`].

use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientCertificate, set_certificate};

/// Puts the client's certificate of a tonic server's TLS connection (tonic's
/// `TlsConnectInfo`, there when the server has a `ServerTlsConfig`) into each request as a
/// [`ClientCertificate`]: the leaf of the certificates the client presented.
///
/// When the connection has none (the client presented no certificate, or the server has no
/// TLS), any `ClientCertificate` already in the request is removed.
///
/// It goes before [`BearerAuthLayer`](crate::BearerAuthLayer) in `Server::builder()`
/// (tonic's first `.layer(…)` is the outermost), so the certificate is there when the token
/// is validated. The server asks for client certificates with
/// `ServerTlsConfig::client_ca_root`; with `client_auth_optional(true)`, clients without one
/// connect too, and certificate-bound tokens are refused for them.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
/// use tower_oauth::mtls::TonicClientCertificateLayer;
/// use tower_oauth::{BearerAuthLayer, Validator};
///
/// let tls = ServerTlsConfig::new()
///     .identity(Identity::from_pem(std::fs::read("server-chain.pem")?, std::fs::read("server-key.pem")?))
///     .client_ca_root(Certificate::from_pem(std::fs::read("client-ca.pem")?))
///     .client_auth_optional(true);
/// let validator = Validator::builder()
///     .issuer("https://login.example.com")
///     .audience("https://api.example.com")
///     .build()?;
/// let (_reporter, health) = tonic_health::server::health_reporter();
/// Server::builder()
///     .tls_config(tls)?
///     .layer(TonicClientCertificateLayer::new())
///     .layer(BearerAuthLayer::new(validator))
///     .add_service(health)
///     .serve("0.0.0.0:50051".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Default)]
pub struct TonicClientCertificateLayer {
    _private: (),
}

impl TonicClientCertificateLayer {
    /// The layer.
    pub fn new() -> Self {
        TonicClientCertificateLayer { _private: () }
    }
}

impl fmt::Debug for TonicClientCertificateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonicClientCertificateLayer").finish()
    }
}

impl<S> Layer<S> for TonicClientCertificateLayer {
    type Service = TonicClientCertificate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TonicClientCertificate { inner }
    }
}

/// The service of [`TonicClientCertificateLayer`].
#[derive(Clone)]
pub struct TonicClientCertificate<S> {
    inner: S,
}

impl<S> TonicClientCertificate<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        TonicClientCertificate { inner }
    }

    /// The layer, for `Server::builder().layer(…)` and `ServiceBuilder`.
    pub fn layer() -> TonicClientCertificateLayer {
        TonicClientCertificateLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for TonicClientCertificate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonicClientCertificate").field("inner", &self.inner).finish()
    }
}

impl<S, B> Service<Request<B>> for TonicClientCertificate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let cert = from_extensions(request.extensions());
        set_certificate(request.extensions_mut(), cert);
        self.inner.call(request)
    }
}

/// The leaf of the peer certificates in tonic's connection info: over TCP, or on Unix over
/// a Unix socket.
fn from_extensions(extensions: &http::Extensions) -> Option<ClientCertificate> {
    let certs = extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs);
    #[cfg(unix)]
    let certs = certs.or_else(|| {
        extensions
            .get::<TlsConnectInfo<tonic::transport::server::UdsConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
    });
    let leaf = certs?.first()?.as_ref().to_vec();
    Some(ClientCertificate::from_der(leaf))
}
