//! [`AddClientCertificateLayer`]: one connection's certificate, into each of its requests.

use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientCertificate, set_certificate};

/// Puts one connection's [`ClientCertificate`] into each request, for a service made per
/// connection (a hyper accept loop, say: see the [module](crate::mtls) example).
///
/// With `None` (the client presented no certificate) it *removes* any `ClientCertificate`
/// already in a request, so the service behind it sees exactly what the connection said.
/// Goes outside [`BearerAuthLayer`](crate::BearerAuthLayer).
#[derive(Clone)]
pub struct AddClientCertificateLayer {
    cert: Option<ClientCertificate>,
}

impl AddClientCertificateLayer {
    /// A layer that gives every request `cert`, or no certificate when it is `None`.
    pub fn new(cert: Option<ClientCertificate>) -> Self {
        AddClientCertificateLayer { cert }
    }
}

impl fmt::Debug for AddClientCertificateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddClientCertificateLayer").field("cert", &self.cert).finish()
    }
}

impl<S> Layer<S> for AddClientCertificateLayer {
    type Service = AddClientCertificate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AddClientCertificate { inner, cert: self.cert.clone() }
    }
}

/// The service of [`AddClientCertificateLayer`].
#[derive(Clone)]
pub struct AddClientCertificate<S> {
    inner: S,
    cert: Option<ClientCertificate>,
}

impl<S> AddClientCertificate<S> {
    /// Wraps `inner`, giving every request `cert`, or no certificate when it is `None`.
    pub fn new(inner: S, cert: Option<ClientCertificate>) -> Self {
        AddClientCertificate { inner, cert }
    }

    /// The layer, for `ServiceBuilder` and axum's `.layer(…)`.
    pub fn layer(cert: Option<ClientCertificate>) -> AddClientCertificateLayer {
        AddClientCertificateLayer::new(cert)
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

impl<S: fmt::Debug> fmt::Debug for AddClientCertificate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddClientCertificate").field("inner", &self.inner).field("cert", &self.cert).finish()
    }
}

impl<S, B> Service<Request<B>> for AddClientCertificate<S>
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
        set_certificate(request.extensions_mut(), self.cert.clone());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    /// A service that answers with the thumbprint of the request's certificate, or `none`.
    fn echo() -> impl Service<Request<()>, Response = String, Error = Infallible, Future: Send> + Clone {
        tower::service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(
                request
                    .extensions()
                    .get::<ClientCertificate>()
                    .map_or_else(|| "none".to_owned(), |c| c.thumbprint_b64()),
            )
        })
    }

    fn spoofed() -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(ClientCertificate::from_der(&b"spoofed"[..]));
        request
    }

    #[tokio::test]
    async fn the_connections_certificate_reaches_the_inner_service() {
        let cert = ClientCertificate::from_der(&b"client"[..]);
        let service = AddClientCertificateLayer::new(Some(cert.clone())).layer(echo());
        assert_eq!(service.clone().oneshot(Request::new(())).await.unwrap(), cert.thumbprint_b64());
        // A certificate already in the request is replaced by the connection's.
        assert_eq!(service.oneshot(spoofed()).await.unwrap(), cert.thumbprint_b64());
    }

    #[tokio::test]
    async fn without_a_certificate_a_spoofed_extension_is_removed() {
        let service = AddClientCertificate::new(echo(), None);
        assert_eq!(service.clone().oneshot(spoofed()).await.unwrap(), "none");
        assert_eq!(service.oneshot(Request::new(())).await.unwrap(), "none");
    }

    #[test]
    fn the_inner_service_is_reachable() {
        let mut service = AddClientCertificate::new(7_u8, None);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
        assert!(format!("{:?}", AddClientCertificate::<()>::layer(None)).contains("cert: None"));
    }
}
