//! The client's TLS certificate reaches the service, over real TLS on 127.0.0.1: a rustls
//! server (`mtls::server_config`, a hyper-util accept loop and `AddClientCertificateLayer`,
//! called by reqwest), a tonic server (`TonicClientCertificateLayer`, called by a tonic
//! channel) and a trusted header behind a pretend proxy. The CA and every certificate are
//! made by the test.

#![cfg(all(feature = "mtls-rustls", feature = "tonic", feature = "testing"))]

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Channel, ClientTlsConfig, Server, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer as _;
use tower_oauth::mtls::{
    self, AddClientCertificateLayer, ClientCertificate, ClientCertificateHeaderLayer, TonicClientCertificateLayer,
};

use crate::support::api::{listen, serve};

/// A certificate (PEM and DER) and its key (PEM).
pub(crate) struct Credentials {
    cert: String,
    der: Vec<u8>,
    key: String,
}

impl Credentials {
    /// The `x5t#S256` of the certificate (RFC 8705 §3.1), computed here: the base64url of
    /// the SHA-256 of its DER.
    pub(crate) fn thumbprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The certificate, PEM.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert
    }

    /// The private key, PEM (PKCS#8).
    pub(crate) fn key_pem(&self) -> &str {
        &self.key
    }

    pub(crate) fn reqwest_identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.key, self.cert).as_bytes()).unwrap()
    }

    fn tonic_identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert, &self.key)
    }
}

/// A CA, which issues certificates for servers and clients.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Credentials {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Credentials { cert: cert.pem(), der: cert.der().to_vec(), key: key.serialize_pem() }
    }

    /// The CA's certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for 127.0.0.1.
    pub(crate) fn server(&self) -> Credentials {
        self.issue("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub(crate) fn client(&self, name: &str) -> Credentials {
        self.issue(name, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The handler of every server here: the thumbprint of the request's certificate, or `none`.
async fn whoami(cert: Option<Extension<ClientCertificate>>) -> String {
    cert.map_or_else(|| "none".to_owned(), |Extension(cert)| cert.thumbprint_b64())
}

/// A rustls server on 127.0.0.1 that asks for client certificates issued by `ca` (and lets
/// clients without one in), with the module's accept loop; returns the URL of `/whoami`.
async fn rustls_server(ca: &Ca, server: &Credentials) -> String {
    let app = Router::new().route("/whoami", get(whoami));
    format!("{}/whoami", serve_rustls(ca, server, app).await)
}

/// Serves `app` over TLS on 127.0.0.1, each request carrying its connection's client
/// certificate (issued by `ca`, or none); returns the base URL, `https://127.0.0.1:PORT`.
pub(crate) async fn serve_rustls(ca: &Ca, server: &Credentials, app: Router) -> String {
    let config = mtls::server_config(server.cert.as_bytes(), server.key.as_bytes(), Some(ca.pem.as_bytes())).unwrap();
    let acceptor = TlsAcceptor::from(config);
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = AddClientCertificateLayer::new(ClientCertificate::from_tls_stream(&tls)).layer(app);
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    url.replacen("http://", "https://", 1)
}

/// A reqwest client that trusts only `ca`, presenting `identity` when there is one.
pub(crate) fn reqwest_client(ca: &Ca, identity: Option<&Credentials>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .no_proxy();
    match identity {
        Some(identity) => builder.identity(identity.reqwest_identity()),
        None => builder,
    }
}

async fn get_whoami(client: &reqwest::Client, url: &str) -> (http::Version, String) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    (response.version(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_client_certificate_reaches_the_handler_over_rustls_and_http2() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    let alice = ca.client("alice");
    let client = reqwest_client(&ca, Some(&alice)).build().unwrap();
    let (version, seen) = get_whoami(&client, &url).await;
    assert_eq!(version, http::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(seen, alice.thumbprint());
    // The next request on the same connection carries it too.
    assert_eq!(get_whoami(&client, &url).await.1, alice.thumbprint());
}

#[tokio::test]
async fn a_client_certificate_reaches_the_handler_over_http1() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    let alice = ca.client("alice");
    let client = reqwest_client(&ca, Some(&alice)).http1_only().build().unwrap();
    let (version, seen) = get_whoami(&client, &url).await;
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(seen, alice.thumbprint());
}

#[tokio::test]
async fn a_client_without_a_certificate_connects_and_the_handler_sees_none() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    let client = reqwest_client(&ca, None).build().unwrap();
    assert_eq!(get_whoami(&client, &url).await.1, "none");
}

#[tokio::test]
async fn each_connection_sees_its_own_certificate() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    let (alice, bob) = (ca.client("alice"), ca.client("bob"));
    let clients = [
        (reqwest_client(&ca, Some(&alice)).build().unwrap(), alice.thumbprint()),
        (reqwest_client(&ca, Some(&bob)).build().unwrap(), bob.thumbprint()),
        (reqwest_client(&ca, None).build().unwrap(), "none".to_owned()),
    ];
    assert_ne!(alice.thumbprint(), bob.thumbprint());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        for (client, expected) in &clients {
            let (client, expected, url) = (client.clone(), expected.clone(), url.clone());
            calls.spawn(async move { assert_eq!(get_whoami(&client, &url).await.1, expected) });
        }
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    let stranger = Ca::new("another ca").client("mallory");
    let client = reqwest_client(&ca, Some(&stranger)).build().unwrap();
    let error = client.get(&url).send().await.unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");
}

#[tokio::test]
async fn a_server_certificate_cannot_authenticate_a_client() {
    let ca = Ca::new("test ca");
    let url = rustls_server(&ca, &ca.server()).await;
    // Issued by the right CA, but for servers only (extended key usage).
    let server_only = ca.server();
    let client = reqwest_client(&ca, Some(&server_only)).build().unwrap();
    assert!(client.get(&url).send().await.is_err());
}

/// A tonic server over TLS on 127.0.0.1 with tonic-health behind
/// `TonicClientCertificateLayer`; records the certificate each request carried (its
/// thumbprint, or `none`). Returns its `https` URL and the record.
async fn tonic_server(ca: &Ca, server: &Credentials) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let tls = ServerTlsConfig::new()
        .identity(server.tonic_identity())
        .client_ca_root(tonic::transport::Certificate::from_pem(&ca.pem))
        .client_auth_optional(true);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (listener, url) = listen().await;
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .layer(TonicClientCertificateLayer::new())
        .layer(tower::util::MapRequestLayer::new(move |request: http::Request<tonic::body::Body>| {
            let cert = request.extensions().get::<ClientCertificate>();
            record.lock().unwrap().push(cert.map_or_else(|| "none".to_owned(), ClientCertificate::thumbprint_b64));
            request
        }))
        .add_service(health);
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    (url.replacen("http://", "https://", 1), seen)
}

async fn health_check(url: &str, ca: &Ca, identity: Option<&Credentials>) -> Result<(), tonic::Status> {
    let mut tls = ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem));
    if let Some(identity) = identity {
        tls = tls.identity(identity.tonic_identity());
    }
    let channel = Channel::from_shared(url.to_owned()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

#[tokio::test]
async fn a_client_certificate_reaches_a_tonic_service() {
    let ca = Ca::new("test ca");
    let (url, seen) = tonic_server(&ca, &ca.server()).await;
    let alice = ca.client("alice");
    health_check(&url, &ca, Some(&alice)).await.unwrap();
    health_check(&url, &ca, None).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [alice.thumbprint(), "none".to_owned()]);
}

#[tokio::test]
async fn a_trusted_header_from_the_proxy_becomes_the_certificate() {
    let ca = Ca::new("test ca");
    let alice = ca.client("alice");
    let app = Router::new()
        .route(
            "/whoami",
            get(|headers: http::HeaderMap, cert: Option<Extension<ClientCertificate>>| async move {
                assert!(!headers.contains_key("x-client-cert"), "the trusted header reached the handler");
                whoami(cert).await
            }),
        )
        .layer(ClientCertificateHeaderLayer::dangerous_trust(http::HeaderName::from_static("x-client-cert")));
    let url = format!("{}/whoami", serve(app).await);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |value: Option<String>| {
        let request = client.get(&url);
        let request = match value {
            Some(value) => request.header("x-client-cert", value),
            None => request,
        };
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    // As nginx's $ssl_client_escaped_cert: URL-encoded PEM.
    let escaped: String = alice
        .cert
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect();
    assert_eq!(call(Some(escaped)).await, alice.thumbprint());
    // As RFC 9440's Client-Cert.
    let sf = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(&alice.der));
    assert_eq!(call(Some(sf)).await, alice.thumbprint());
    assert_eq!(call(Some("not a certificate".to_owned())).await, "none");
    assert_eq!(call(None).await, "none");
}
