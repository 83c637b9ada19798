//! The certificate of a rustls connection, and a rustls server configuration that asks
//! clients for one.

use std::sync::Arc;

use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::{ClientCertificate, MtlsError};

impl ClientCertificate {
    /// The client's certificate on a rustls server connection: the leaf of
    /// `peer_certificates()`, or `None` when the client presented none (or the handshake has
    /// not finished).
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    pub fn from_server_connection(connection: &ServerConnection) -> Option<ClientCertificate> {
        let leaf = connection.peer_certificates()?.first()?;
        Some(ClientCertificate::from_der(leaf.as_ref().to_vec()))
    }

    /// The client's certificate on an accepted tokio-rustls (0.26) stream, or `None` when the
    /// client presented none. See the [module](crate::mtls) example.
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    pub fn from_tls_stream<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Option<ClientCertificate> {
        ClientCertificate::from_server_connection(stream.get_ref().1)
    }
}

/// A rustls server configuration with the server's certificate chain and key, which asks
/// clients for a certificate issued by a CA of `client_ca_pem`, and lets clients without
/// one connect.
///
/// - A client that presents a certificate not issued by one of those CAs (or expired, or
///   not for client authentication, when it has an extended key usage) fails the handshake.
/// - A client that presents none connects; its requests carry no [`ClientCertificate`], so a
///   certificate-bound token is refused for them, and a plain bearer token is not.
/// - With `client_ca_pem` `None`, no certificate is asked for: plain TLS.
///
/// `cert_chain_pem` holds the server's certificate first, then any intermediates;
/// `key_pem` its private key (PKCS #8, PKCS #1 or SEC1). The protocols are TLS 1.3 and 1.2
/// with rustls's safe defaults, on aws-lc-rs whatever the process's default provider;
/// ALPN offers `h2` and `http/1.1`.
///
/// Self-signed client certificates (RFC 8705 §2.2) are not accepted by this verifier: for
/// them, build a `ServerConfig` with a verifier of your own.
///
/// # Errors
///
/// [`MtlsError::Certificate`], [`MtlsError::PrivateKey`] or [`MtlsError::ClientCa`] when a
/// PEM holds nothing usable; [`MtlsError::Tls`] when rustls refuses the key (not the
/// certificate's, or of an unsupported kind).
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, MtlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let verifier = client_ca_pem.map(|pem| client_verifier(pem, Arc::clone(&provider))).transpose()?;
    let mut config = config_with_verifier(cert_chain_pem, key_pem, provider, verifier)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration from PEM with `verifier` deciding about client certificates
/// (none asked for when it is `None`), and no ALPN.
pub(crate) fn config_with_verifier(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    provider: Arc<CryptoProvider>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, MtlsError> {
    let chain = certificates(cert_chain_pem).ok_or(MtlsError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| MtlsError::PrivateKey)?;
    let builder =
        ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(MtlsError::Tls)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(MtlsError::Tls)
}

/// Every certificate of a PEM text; `None` when there is none or one does not parse.
fn certificates(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().ok()?;
    (!certificates.is_empty()).then_some(certificates)
}

/// A verifier that accepts certificates issued by a CA of `pem`, and clients without one.
pub(crate) fn client_verifier(
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, MtlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(pem).ok_or(MtlsError::ClientCa)? {
        roots.add(ca).map_err(|_| MtlsError::ClientCa)?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|_| MtlsError::ClientCa)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca: String,
        chain: String,
        key: String,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        Pki { ca: ca.pem(), chain: cert.pem(), key: key.serialize_pem() }
    }

    #[test]
    fn a_server_config_offers_h2_and_http_1_1() {
        let pki = pki();
        let config = server_config(pki.chain.as_bytes(), pki.key.as_bytes(), Some(pki.ca.as_bytes())).unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let plain = server_config(pki.chain.as_bytes(), pki.key.as_bytes(), None).unwrap();
        assert_eq!(plain.alpn_protocols, config.alpn_protocols);
    }

    #[test]
    fn unusable_pem_is_an_error_without_key_material() {
        let (one, other) = (pki(), pki());
        let (chain, key, ca) = (one.chain.as_bytes(), one.key.as_bytes(), one.ca.as_bytes());
        assert!(matches!(server_config(b"", key, None), Err(MtlsError::Certificate)));
        assert!(matches!(server_config(key, key, None), Err(MtlsError::Certificate)));
        assert!(matches!(server_config(chain, chain, None), Err(MtlsError::PrivateKey)));
        assert!(matches!(server_config(chain, key, Some(b"")), Err(MtlsError::ClientCa)));
        assert!(matches!(server_config(chain, key, Some(key)), Err(MtlsError::ClientCa)));
        // Another key than the certificate's.
        let error = server_config(chain, other.key.as_bytes(), Some(ca)).unwrap_err();
        assert!(matches!(error, MtlsError::Tls(_)), "{error:?}");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
