//! The issuer over TLS, for mutual-TLS client authentication and certificate-bound
//! access tokens (RFC 8705).
//!
//! The handshake accepts any client certificate whose key signs the handshake, and
//! clients without one: who a certificate authenticates is the token endpoint's
//! decision, per client (`tls_client_auth` wants one issued by the client CA with the
//! registered subject, `self_signed_tls_client_auth` the registered certificate), and
//! it answers `invalid_client` rather than failing the handshake.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{
    WebPkiSupportedAlgorithms, aws_lc_rs, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, Error, ServerConnection, SignatureScheme};

use crate::Secret;
use crate::mtls::{ClientCertificate, MtlsError, client_verifier, config_with_verifier};

/// What [`TestIssuerBuilder::tls`](super::TestIssuerBuilder::tls) was given. `Debug`
/// leaves the key out.
pub(crate) struct TlsSettings {
    pub(crate) cert_chain_pem: Vec<u8>,
    pub(crate) key_pem: Secret,
    pub(crate) client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings").field("client_ca", &self.client_ca_pem.is_some()).finish_non_exhaustive()
    }
}

/// The issuer's TLS: the acceptor, and the client CA that `tls_client_auth` trusts.
pub(crate) struct IssuerTls {
    pub(crate) acceptor: TlsAcceptor,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

impl IssuerTls {
    pub(crate) fn new(settings: &TlsSettings) -> Result<IssuerTls, MtlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let client_ca =
            settings.client_ca_pem.as_deref().map(|pem| client_verifier(pem, Arc::clone(&provider))).transpose()?;
        let verifier = Arc::new(AnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
            hints: client_ca.as_ref().map(|ca| ca.root_hint_subjects().to_vec()).unwrap_or_default(),
        });
        let mut config =
            config_with_verifier(&settings.cert_chain_pem, settings.key_pem.expose(), provider, Some(verifier))?;
        // The server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(IssuerTls { acceptor: TlsAcceptor::from(Arc::new(config)), client_ca })
    }

    /// Whether the client's certificate chains to the client CA, is valid now and may
    /// authenticate a client (RFC 8705 §2.1).
    pub(crate) fn issued_by_client_ca(&self, peer: &PeerCertificates) -> bool {
        let Some(client_ca) = &self.client_ca else { return false };
        let leaf = CertificateDer::from(peer.leaf.der());
        client_ca.verify_client_cert(&leaf, &peer.intermediates[..], UnixTime::now()).is_ok()
    }
}

/// The certificates a client presented on its connection, as a request extension.
#[derive(Clone)]
pub(crate) struct PeerCertificates {
    pub(crate) leaf: ClientCertificate,
    intermediates: Arc<[CertificateDer<'static>]>,
}

impl PeerCertificates {
    pub(crate) fn of(connection: &ServerConnection) -> Option<PeerCertificates> {
        let (leaf, intermediates) = connection.peer_certificates()?.split_first()?;
        Some(PeerCertificates {
            leaf: ClientCertificate::from_der(leaf.as_ref().to_vec()),
            intermediates: intermediates.iter().map(|cert| cert.clone().into_owned()).collect(),
        })
    }
}

/// Asks every client for a certificate, requires none, and accepts any whose key signs
/// the handshake: trust is decided per client at the endpoint.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
    /// The client CA's subject, so that a client with several certificates picks one of it.
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Self-signed certificates (RFC 8705 §2.2) have no chain to check; the
        // signatures below still prove that the client holds the certificate's key.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
