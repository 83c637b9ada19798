//! The issuer over TLS (RFC 8705): `tls_client_auth`, `self_signed_tls_client_auth`, and
//! access tokens bound to the client's certificate. The CAs and certificates are made
//! here.

use rcgen::{CertificateParams, DnType, KeyPair};
use tower_oauth::mtls::ClientCertificate;

use super::*;
use crate::mtls::{Ca, Credentials, reqwest_client};

/// A self-signed client certificate: its identity for reqwest, and its `x5t#S256`.
fn self_signed(name: &str) -> (reqwest::Identity, String) {
    let key = KeyPair::generate().expect("a P-256 key");
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a valid name");
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    let identity = reqwest::Identity::from_pem(format!("{}{}", key.serialize_pem(), cert.pem()).as_bytes())
        .expect("a PEM identity");
    (identity, ClientCertificate::from_der(cert.der().to_vec()).thumbprint_b64())
}

/// An issuer over TLS with a server certificate of `ca`, trusting `ca` for client
/// certificates, and an HTTP client that trusts `ca`.
async fn tls_issuer(ca: &Ca, builder: tower_oauth::testing::TestIssuerBuilder) -> std::io::Result<TestIssuer> {
    let server = ca.server();
    builder.tls(server.cert_pem().as_bytes(), server.key_pem().as_bytes(), Some(ca.pem().as_bytes())).start().await
}

fn https(ca: &Ca, identity: Option<&Credentials>) -> reqwest::Client {
    reqwest_client(ca, identity).build().expect("an HTTPS client")
}

fn https_with(ca: &Ca, identity: reqwest::Identity) -> reqwest::Client {
    reqwest_client(ca, None).identity(identity).build().expect("an HTTPS client")
}

/// A `client_credentials` request of `client_id` with no credentials but its connection's.
async fn tls_token(client: &reqwest::Client, issuer: &TestIssuer, client_id: &str) -> Result<Reply, reqwest::Error> {
    post_form(client, &issuer.token_endpoint(), None, &[("grant_type", "client_credentials"), ("client_id", client_id)])
        .await
}

fn assert_invalid_client(reply: &Reply, what: &str, description: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.json);
    assert_eq!(reply.json["error"], "invalid_client", "{what}");
    assert_eq!(reply.json["error_description"], description, "{what}");
}

#[tokio::test]
async fn over_tls_the_issuer_is_https_and_advertises_mutual_tls() -> TestResult {
    let ca = Ca::new("test ca");
    let issuer = tls_issuer(&ca, TestIssuer::builder().path_prefix("/realms/mtls")).await?;
    assert_eq!(issuer.issuer(), format!("https://{}/realms/mtls", issuer.addr()));
    let reply = Reply::read(
        https(&ca, None).get(format!("{}/.well-known/openid-configuration", issuer.issuer())).send().await?,
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK);
    let metadata = reply.json;
    assert_eq!(metadata["issuer"], issuer.issuer());
    assert_eq!(metadata["token_endpoint"], issuer.token_endpoint());
    assert!(issuer.token_endpoint().starts_with("https://"));
    let methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth"
    ]);
    assert_eq!(metadata["token_endpoint_auth_methods_supported"], methods);
    assert_eq!(metadata["introspection_endpoint_auth_methods_supported"], methods);
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(metadata["mtls_endpoint_aliases"]["token_endpoint"], issuer.token_endpoint());
    assert_eq!(metadata["mtls_endpoint_aliases"]["introspection_endpoint"], issuer.introspection_endpoint());

    // Plain HTTP is not served.
    let plain = format!("http://{}/realms/mtls/.well-known/openid-configuration", issuer.addr());
    assert!(client().get(plain).send().await.is_err());
    Ok(())
}

#[tokio::test]
async fn tls_client_auth_takes_a_certificate_of_the_client_ca_with_the_registered_subject() -> TestResult {
    let ca = Ca::new("client ca");
    let issuer = tls_issuer(&ca, TestIssuer::builder().tls_client("mtls-client", "cn=mtls-client")).await?;
    let credentials = ca.client("mtls-client");
    let client = https(&ca, Some(&credentials));

    let reply = tls_token(&client, &issuer, "mtls-client").await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let (_, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &issuer.jwks())?;
    assert_eq!(claims["client_id"], "mtls-client");
    // RFC 8705 §3.1: bound to the certificate.
    assert_eq!(claims["cnf"], json!({ "x5t#S256": credentials.thumbprint() }));
    assert_eq!(reply.json["token_type"], "Bearer");

    // The same at the introspection endpoint.
    let token = issuer.mint().sign();
    let introspection =
        post_form(&client, &issuer.introspection_endpoint(), None, &[("token", &token), ("client_id", "mtls-client")])
            .await?;
    assert_eq!(introspection.json["active"], true, "{}", introspection.json);

    // Refused: no certificate, another subject, a certificate of another CA with the
    // right subject.
    assert_invalid_client(
        &tls_token(&https(&ca, None), &issuer, "mtls-client").await?,
        "no certificate",
        "a client certificate is required",
    );
    let someone_else = https(&ca, Some(&ca.client("someone-else")));
    assert_invalid_client(
        &tls_token(&someone_else, &issuer, "mtls-client").await?,
        "another subject",
        "the client certificate's subject does not match",
    );
    let stranger_ca = Ca::new("client ca");
    let impostor = https(&ca, Some(&stranger_ca.client("mtls-client")));
    assert_invalid_client(
        &tls_token(&impostor, &issuer, "mtls-client").await?,
        "another CA",
        "the client certificate is not issued by the client CA",
    );
    let introspection = post_form(
        &someone_else,
        &issuer.introspection_endpoint(),
        None,
        &[("token", &token), ("client_id", "mtls-client")],
    )
    .await?;
    assert_invalid_client(
        &introspection,
        "another subject at introspection",
        "the client certificate's subject does not match",
    );

    // A client not registered for mutual TLS gains nothing from its certificate.
    let unregistered = tls_token(&client, &issuer, TestIssuer::DEFAULT_CLIENT_ID).await?;
    assert_invalid_client(&unregistered, "not registered for mutual TLS", "client authentication required");
    Ok(())
}

#[tokio::test]
async fn self_signed_tls_client_auth_takes_the_registered_certificate_only() -> TestResult {
    let ca = Ca::new("client ca");
    let (identity, thumbprint) = self_signed("device-7");
    let (other_identity, _) = self_signed("device-7");
    let builder = TestIssuer::builder().self_signed_tls_client("device", &thumbprint);
    let issuer = tls_issuer(&ca, builder).await?;

    let reply = tls_token(&https_with(&ca, identity), &issuer, "device").await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(access_token_claims(&reply)["cnf"], json!({ "x5t#S256": thumbprint }));
    assert_eq!(access_token_claims(&reply)["client_id"], "device");

    assert_invalid_client(
        &tls_token(&https_with(&ca, other_identity), &issuer, "device").await?,
        "another certificate",
        "the client certificate is not the registered one",
    );
    let issued = https(&ca, Some(&ca.client("device")));
    assert_invalid_client(
        &tls_token(&issued, &issuer, "device").await?,
        "a CA-issued certificate",
        "the client certificate is not the registered one",
    );
    assert_invalid_client(
        &tls_token(&https(&ca, None), &issuer, "device").await?,
        "no certificate",
        "a client certificate is required",
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_binds_the_token_whatever_the_client_authenticated_with() -> TestResult {
    let ca = Ca::new("client ca");
    let issuer = tls_issuer(&ca, TestIssuer::builder()).await?;
    let credentials = ca.client("any-client");
    let grant = [("grant_type", "client_credentials")];

    let bound =
        post_form(&https(&ca, Some(&credentials)), &issuer.token_endpoint(), Some(&default_basic()), &grant).await?;
    assert_eq!(bound.status, StatusCode::OK, "{}", bound.json);
    assert_eq!(access_token_claims(&bound)["cnf"], json!({ "x5t#S256": credentials.thumbprint() }));
    assert_eq!(access_token_claims(&bound)["client_id"], TestIssuer::DEFAULT_CLIENT_ID);

    let unbound = post_form(&https(&ca, None), &issuer.token_endpoint(), Some(&default_basic()), &grant).await?;
    assert_eq!(unbound.status, StatusCode::OK, "{}", unbound.json);
    assert!(access_token_claims(&unbound).get("cnf").is_none());
    Ok(())
}

#[tokio::test]
async fn mutual_tls_registrations_that_cannot_work_fail_the_start() {
    let ca = Ca::new("client ca");
    let cases: Vec<(&str, tower_oauth::testing::TestIssuerBuilder)> = vec![
        ("tls_client without tls", TestIssuer::builder().tls_client("c", "CN=c")),
        ("self_signed_tls_client without tls", TestIssuer::builder().self_signed_tls_client("c", &"A".repeat(43))),
    ];
    for (what, builder) in cases {
        let error = builder.start().await.expect_err(what);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{what}");
    }
    for (what, builder) in [
        ("a subject that is no DN", TestIssuer::builder().tls_client("c", "nonsense")),
        ("a thumbprint that is too short", TestIssuer::builder().self_signed_tls_client("c", "AAAA")),
    ] {
        let error = tls_issuer(&ca, builder).await.expect_err(what);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{what}");
    }
    let server = ca.server();
    let builder = TestIssuer::builder().tls(server.cert_pem().as_bytes(), server.key_pem().as_bytes(), None);
    let shown = format!("{builder:?}");
    assert!(!shown.contains("PRIVATE") && !shown.contains(server.key_pem()), "{shown}");
    let error = TestIssuer::builder()
        .tls(server.cert_pem().as_bytes(), b"no key here", None)
        .start()
        .await
        .expect_err("a PEM without a key");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!error.to_string().contains("PRIVATE"), "{error}");
}
