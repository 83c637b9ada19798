//! Mutual TLS (RFC 8705): the client's TLS certificate, as a request extension.
//!
//! A certificate-bound access token carries the SHA-256 thumbprint of the client's
//! certificate in its `cnf` claim (`x5t#S256`, RFC 8705 §3.1). To check that binding, the
//! service behind the TLS connection must know which certificate the client presented. The
//! adapters here put it into every request as a [`ClientCertificate`] extension, where the
//! bearer layer (and any handler) finds it. A request without the extension came from a
//! client that presented no certificate.
//!
//! Which adapter, for which server:
//!
//! | server | adapter | feature |
//! |---|---|---|
//! | hyper or axum, your own accept loop over tokio-rustls | [`ClientCertificate::from_tls_stream`], then [`AddClientCertificateLayer`] around the connection's service; [`server_config`] builds a rustls config that asks for client certificates | `mtls-rustls` |
//! | any other TLS stack with a service per connection | [`ClientCertificate::from_der`], then [`AddClientCertificateLayer`] | none |
//! | tonic, with `ServerTlsConfig` | [`TonicClientCertificateLayer`] in `Server::builder().layer(…)` | `tonic` |
//! | behind a proxy that terminates TLS (nginx, HAProxy, AWS ALB) and passes the certificate in a header | [`ClientCertificateHeaderLayer::dangerous_trust`], **only** if the proxy removes that header from client requests | none |
//!
//! Each adapter goes *outside* [`BearerAuthLayer`](crate::BearerAuthLayer), so the
//! certificate is in the request when the token is validated: in axum, `.layer(bearer)`
//! first and the certificate layer after it (or around the whole router); in tonic and in a
//! `tower::ServiceBuilder`, the certificate layer first. Each adapter also *removes* any
//! `ClientCertificate` already in the request when its connection (or header) has none, so
//! nothing earlier in the stack can hand the bearer layer a certificate the client did not
//! present.
//!
//! An axum router served over rustls, one connection at a time (hyper-util's
//! connection builder speaks HTTP/1.1 and HTTP/2, as negotiated by ALPN):
//!
//! ```no_run
//! # #[cfg(feature = "mtls-rustls")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Extension, Router, routing::get};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//! use tokio::net::TcpListener;
//! use tokio_rustls::TlsAcceptor;
//! use tower::Layer as _;
//! use tower_oauth::mtls::{self, AddClientCertificateLayer, ClientCertificate};
//! use tower_oauth::{BearerAuthLayer, Validator};
//!
//! async fn whoami(cert: Option<Extension<ClientCertificate>>) -> String {
//!     cert.map_or_else(|| "no certificate".to_owned(), |Extension(cert)| cert.thumbprint_b64())
//! }
//!
//! // Asks every client for a certificate issued by the CA, and lets clients without one in.
//! let config = mtls::server_config(
//!     &std::fs::read("server-chain.pem")?,
//!     &std::fs::read("server-key.pem")?,
//!     Some(&std::fs::read("client-ca.pem")?),
//! )?;
//! let acceptor = TlsAcceptor::from(config);
//! let validator = Validator::builder()
//!     .issuer("https://login.example.com")
//!     .audience("https://api.example.com")
//!     .build()?;
//! let app: Router = Router::new().route("/whoami", get(whoami)).layer(BearerAuthLayer::new(validator));
//!
//! let listener = TcpListener::bind("0.0.0.0:8443").await?;
//! loop {
//!     let (tcp, _peer) = listener.accept().await?;
//!     let (acceptor, app) = (acceptor.clone(), app.clone());
//!     tokio::spawn(async move {
//!         let Ok(tls) = acceptor.accept(tcp).await else { return };
//!         // The same certificate for every request on this connection, or none.
//!         let cert = ClientCertificate::from_tls_stream(&tls);
//!         let service = AddClientCertificateLayer::new(cert).layer(app);
//!         let _ = Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! The thumbprint is of the leaf certificate as sent (its DER), as RFC 8705 §3.1 defines it;
//! the chain is not kept. Whether the certificate is trusted is the TLS layer's decision
//! (with [`server_config`], issued by the configured CA); a token bound to it proves that the
//! authorization server issued the token to the holder of its private key.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;

mod add;
#[cfg(feature = "mtls-rustls")]
mod from_rustls;
#[cfg(feature = "tonic")]
mod from_tonic;
mod header;

pub use add::{AddClientCertificate, AddClientCertificateLayer};
#[cfg(feature = "mtls-rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
pub use from_rustls::server_config;
#[cfg(all(feature = "mtls-rustls", feature = "testing"))]
pub(crate) use from_rustls::{client_verifier, config_with_verifier};
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use from_tonic::{TonicClientCertificate, TonicClientCertificateLayer};
pub use header::{ClientCertificateHeader, ClientCertificateHeaderLayer, MAX_HEADER_VALUE_SIZE};

/// base64url without padding, as in JOSE (`x5t#S256`).
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The client's TLS certificate (the leaf, in DER), as a request extension.
///
/// Its SHA-256 thumbprint, the `x5t#S256` of RFC 8705 §3.1, is computed once, when it is
/// made. Cheap to clone (the DER is shared). `Debug` shows the thumbprint only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientCertificate {
    der: Bytes,
    thumbprint: [u8; 32],
}

impl ClientCertificate {
    /// A certificate from its DER encoding: the leaf certificate exactly as the client sent
    /// it. The bytes are not parsed; the TLS layer has already checked them.
    pub fn from_der(der: impl Into<Bytes>) -> ClientCertificate {
        let der = der.into();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let mut thumbprint = [0; 32];
        thumbprint.copy_from_slice(digest.as_ref());
        ClientCertificate { der, thumbprint }
    }

    /// The first `CERTIFICATE` of a PEM text (further ones, a chain, are ignored). Text around
    /// the PEM block is ignored too, as is whitespace inside it.
    ///
    /// # Errors
    ///
    /// [`MtlsError::Certificate`] when there is no `CERTIFICATE` block, its base64 does not
    /// decode, or what it holds is not one DER `SEQUENCE`.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCertificate, MtlsError> {
        header::first_pem_certificate(pem).map(ClientCertificate::from_der).ok_or(MtlsError::Certificate)
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 of the DER: RFC 8705 §3.1's `x5t#S256`, as raw bytes.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// The SHA-256 of the DER, base64url without padding: the form of `x5t#S256` in a
    /// token's `cnf` claim.
    pub fn thumbprint_b64(&self) -> String {
        B64URL.encode(self.thumbprint)
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate").field("x5t#S256", &self.thumbprint_b64()).finish()
    }
}

/// A certificate, key or CA bundle could not be used. The messages never include key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MtlsError {
    /// No certificate could be read: no `CERTIFICATE` block in the PEM, base64 that does not
    /// decode, or bytes that are not DER.
    #[error("no certificate in pem")]
    Certificate,
    /// No private key could be read from the PEM (PKCS #8, PKCS #1 or SEC1).
    #[error("no private key in pem")]
    PrivateKey,
    /// The client CA bundle holds no certificate, or one that cannot be a trust anchor.
    #[error("no usable client ca in pem")]
    ClientCa,
    /// rustls refused the configuration: the key does not match the certificate, or is of
    /// a kind it does not support.
    #[cfg(feature = "mtls-rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    #[error("tls configuration refused")]
    Tls(#[source] tokio_rustls::rustls::Error),
}

/// Puts `cert` into the request's extensions, or removes any certificate there when it is
/// `None`: what every adapter does, so a certificate never outlives the connection's word.
fn set_certificate(extensions: &mut http::Extensions, cert: Option<ClientCertificate>) {
    match cert {
        Some(cert) => {
            extensions.insert(cert);
        }
        None => {
            extensions.remove::<ClientCertificate>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_is_the_sha256_of_the_der() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        let cert = ClientCertificate::from_der(&b"abc"[..]);
        let expected: [u8; 32] = [
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03,
            0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
        ];
        assert_eq!(cert.thumbprint(), &expected);
        assert_eq!(cert.thumbprint_b64(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(cert.der(), b"abc");
    }

    #[test]
    fn the_thumbprint_of_a_real_certificate_is_the_sha256_of_its_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap().self_signed(&key).unwrap();
        let cert = ClientCertificate::from_der(der.der().to_vec());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.der());
        assert_eq!(&cert.thumbprint()[..], digest.as_ref());
        assert_eq!(cert.der(), &der.der()[..]);
        assert_eq!(ClientCertificate::from_pem(der.pem().as_bytes()).unwrap(), cert);
    }

    #[test]
    fn debug_shows_the_thumbprint_only() {
        let cert = ClientCertificate::from_der(&b"abc"[..]);
        assert_eq!(
            format!("{cert:?}"),
            r#"ClientCertificate { x5t#S256: "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0" }"#
        );
    }

    #[test]
    fn pem_without_a_certificate_is_an_error() {
        assert!(matches!(ClientCertificate::from_pem(b"hello"), Err(MtlsError::Certificate)));
        assert_eq!(MtlsError::Certificate.to_string(), "no certificate in pem");
    }
}
