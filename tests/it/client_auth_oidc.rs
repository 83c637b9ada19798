//! Client authentication and the newer grants against an independent server,
//! node-oidc-provider (`tests/oidc/idp.mjs`): `private_key_jwt` with keys made here and
//! registered through `IDP_CLIENT_JWKS`, `client_secret_jwt` (`rs-csjwt`), token exchange
//! (`rs-exchange`), and over mutual TLS `tls_client_auth` (`rs-mtls`),
//! `self_signed_tls_client_auth` (`rs-mtls-self`) and the mTLS endpoint alias.
#![cfg(feature = "testing")]

use serde_json::{Value, json};
use tower_oauth::client::{
    AssertionAudience, AuthMethod, ClientKey, ErrorCode, TokenEndpoint, TokenError, TokenExchange,
};
use tower_oauth::{Algorithm, Validator};

use crate::support::oidc_idp::{API, CLIENT, Idp, IdpProcess, Mode, TestResult, segment};

/// The token-exchange client and its only allowed target.
const EXCHANGE_CLIENT: (&str, &str) = ("rs-exchange", "exchange-secret");
const DOWNSTREAM: &str = "https://downstream.example.test";
/// The resource whose tokens are the exchange's subject tokens.
const GATEWAY: &str = "https://gateway.example.test";
const CSJWT_CLIENT: (&str, &str) = ("rs-csjwt", "csjwt-secret-with-32-bytes-or-more!!");

fn code(error: &TokenError) -> Option<&ErrorCode> {
    error.oauth().map(|response| response.code())
}

/// `IDP_CLIENT_JWKS` for these clients and their keys' public halves.
fn client_jwks(clients: &[(&str, &ClientKey)]) -> String {
    let mut map = serde_json::Map::new();
    for (id, key) in clients {
        let jwk: Value = serde_json::from_str(&key.public_jwk()).expect("a public JWK is JSON");
        map.insert((*id).to_owned(), json!({ "keys": [jwk] }));
    }
    Value::Object(map).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_with_rs256_and_es256_keys_made_here() -> TestResult {
    let rs256 = ClientKey::generate_for(Algorithm::RS256)?.with_kid("rs-2026");
    let es256 = ClientKey::generate_for(Algorithm::ES256)?.with_kid("es-2026");
    let unregistered = ClientKey::generate_for(Algorithm::ES256)?.with_kid("es-2026");
    let jwks = client_jwks(&[("rs-pkjwt-rs256", &rs256), ("rs-pkjwt-es256", &es256)]);
    let idp = IdpProcess::start_with(Mode::Default, &[("IDP_CLIENT_JWKS", &jwks)]).await?;
    let validator = Validator::builder().issuer(&idp.issuer).audience(API).build()?;

    for (id, key) in [("rs-pkjwt-rs256", &rs256), ("rs-pkjwt-es256", &es256)] {
        // Discovered: the assertion's `aud` is the issuer.
        let mut endpoint = TokenEndpoint::discover(&idp.issuer, id, key.clone()).resource(API).scope("read").build()?;
        let response = endpoint.request_token().await.map_err(|e| format!("{id}: {e:?}"))?;
        let claims = validator.validate(response.access_token()).await?;
        assert_eq!(claims.client_id(), Some(id));
        assert!(claims.has_scope("read") && !claims.has_scope("write"));
        // A second request: a fresh assertion (oidc-provider takes each `jti` once).
        endpoint.request_token().await.map_err(|e| format!("{id}, again: {e:?}"))?;
        // Aimed at the token endpoint instead.
        let mut at_endpoint = TokenEndpoint::discover(&idp.issuer, id, key.clone())
            .assertion_audience(AssertionAudience::Endpoint)
            .resource(API)
            .build()?;
        at_endpoint.request_token().await.map_err(|e| format!("{id}, aud endpoint: {e:?}"))?;
    }

    // A key the IdP does not hold, with a registered kid; an audience it is not.
    let mut stranger = TokenEndpoint::discover(&idp.issuer, "rs-pkjwt-es256", unregistered).resource(API).build()?;
    let error = stranger.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
    let mut elsewhere = TokenEndpoint::discover(&idp.issuer, "rs-pkjwt-es256", es256)
        .assertion_audience(AssertionAudience::Value("https://elsewhere.example".into()))
        .resource(API)
        .build()?;
    let error = elsewhere.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_jwt_authenticates_rs_csjwt() -> TestResult {
    let idp = IdpProcess::start().await?;
    let mut endpoint = TokenEndpoint::discover(&idp.issuer, CSJWT_CLIENT.0, CSJWT_CLIENT.1)
        .auth_method(AuthMethod::ClientSecretJwt)
        .resource(API)
        .build()?;
    let response = endpoint.request_token().await?;
    assert_eq!(segment(response.access_token(), 1)["client_id"], CSJWT_CLIENT.0);

    let mut wrong = TokenEndpoint::discover(&idp.issuer, CSJWT_CLIENT.0, "csjwt-secret-with-32-bytes-or-more!?")
        .auth_method(AuthMethod::ClientSecretJwt)
        .resource(API)
        .build()?;
    let error = wrong.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_of_a_gateway_token_for_the_downstream_service() -> TestResult {
    let idp = Idp::start().await?;
    let subject = idp.token(CLIENT, GATEWAY, "read write").await?;
    let exchange = |audience: &str, subject: &str| {
        TokenEndpoint::discover(&idp.issuer, EXCHANGE_CLIENT.0, EXCHANGE_CLIENT.1)
            .token_exchange(TokenExchange::access_token(subject))
            .audience(audience)
            .build()
    };

    let response = exchange(DOWNSTREAM, &subject)?.request_token().await?;
    let token = response.access_token();
    let claims = segment(token, 1);
    assert_eq!((&claims["sub"], &claims["aud"]), (&json!(CLIENT.0), &json!(DOWNSTREAM)), "{claims}");
    assert_eq!(claims["act"]["sub"], EXCHANGE_CLIENT.0, "{claims}");
    assert_eq!(claims["client_id"], EXCHANGE_CLIENT.0);
    let validator = Validator::builder().issuer(&idp.issuer).audience(DOWNSTREAM).build()?;
    let validated = validator.validate(token).await?;
    assert!(validated.has_scope("read") && validated.has_scope("write"));

    let error = exchange(API, &subject)?.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidTarget), "{error:?}");
    let error = exchange(DOWNSTREAM, "garbage")?.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidGrant), "{error:?}");
    assert!(!format!("{error:?}{error}").contains(&subject));

    let stats = idp.stats().await?;
    assert_eq!((&stats["token_exchange"], &stats["token_exchange_issued"]), (&json!(3), &json!(1)), "{stats}");
    Ok(())
}

#[cfg(feature = "mtls-rustls")]
mod mutual_tls {
    use std::path::PathBuf;

    use rcgen::{CertificateParams, DnType, KeyPair};
    use tower_oauth::client::ClientCredential;
    use tower_oauth::mtls::ClientCertificate;

    use super::*;
    use crate::mtls::{Ca, Credentials, reqwest_client};
    use crate::support::oidc_idp::{Error, REQUEST_TIMEOUT};

    /// PEM files in a directory of their own, removed when dropped.
    struct PemFiles(PathBuf);

    impl PemFiles {
        fn new() -> Result<PemFiles, Error> {
            let dir = std::env::temp_dir().join(format!(
                "tower-oauth-client-auth-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir(&dir)?;
            Ok(PemFiles(dir))
        }

        fn write(&self, name: &str, pem: &str) -> Result<String, Error> {
            let path = self.0.join(name);
            std::fs::write(&path, pem)?;
            Ok(path.to_str().ok_or("a temporary path that is not UTF-8")?.to_owned())
        }
    }

    impl Drop for PemFiles {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A client that trusts only `ca` and presents `identity` if given.
    fn tls_client(ca: &Ca, identity: Option<reqwest::Identity>) -> Result<reqwest::Client, Error> {
        let builder = reqwest_client(ca, None).redirect(reqwest::redirect::Policy::none()).timeout(REQUEST_TIMEOUT);
        Ok(match identity {
            Some(identity) => builder.identity(identity),
            None => builder,
        }
        .build()?)
    }

    /// A self-signed certificate: its PEM, its identity for reqwest, and its `x5t#S256`.
    fn self_signed(name: &str) -> (String, reqwest::Identity, String) {
        let key = KeyPair::generate().expect("a P-256 key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a valid name");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a self-signed certificate");
        let identity = reqwest::Identity::from_pem(format!("{}{}", key.serialize_pem(), cert.pem()).as_bytes())
            .expect("a PEM identity");
        (cert.pem(), identity, ClientCertificate::from_der(cert.der().to_vec()).thumbprint_b64())
    }

    /// The IdP in mutual-TLS mode with `rs-mtls-self` registered for `self_signed_pem`, and
    /// the alias when `aliases`.
    async fn mtls_idp(ca: &Ca, self_signed_pem: &str, aliases: bool) -> Result<(IdpProcess, PemFiles), Error> {
        let server = ca.server();
        let files = PemFiles::new()?;
        let mut env = vec![
            ("IDP_TLS_CERT", files.write("server.pem", server.cert_pem())?),
            ("IDP_TLS_KEY", files.write("server.key", server.key_pem())?),
            ("IDP_TLS_CLIENT_CA", files.write("ca.pem", ca.pem())?),
            ("IDP_MTLS_SELF_SIGNED_CERT", files.write("self-signed.pem", self_signed_pem)?),
        ];
        if aliases {
            env.push(("IDP_MTLS_ALIASES", "1".to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
        Ok((IdpProcess::start_with(Mode::Default, &env).await?, files))
    }

    async fn stats(ca: &Ca, issuer: &str) -> Result<Value, Error> {
        Ok(tls_client(ca, None)?.get(format!("{issuer}/__stats")).send().await?.error_for_status()?.json().await?)
    }

    fn identity(credentials: &Credentials) -> reqwest::Identity {
        credentials.reqwest_identity()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_client_auth_and_self_signed_get_certificate_bound_tokens() -> TestResult {
        let ca = Ca::new("interop client ca");
        let (self_signed_pem, self_signed_identity, self_signed_thumbprint) = self_signed("rs-mtls-self");
        let (idp, _files) = mtls_idp(&ca, &self_signed_pem, false).await?;
        let client_cert = ca.client("rs-mtls");
        let token_url = format!("{}/token", idp.issuer);

        // tls_client_auth, by URL and discovered (no alias: the token endpoint itself).
        let mut by_url = TokenEndpoint::builder(&token_url, "rs-mtls", ClientCredential::TlsCertificate)
            .http_client(tls_client(&ca, Some(identity(&client_cert)))?)
            .resource(API)
            .build()?;
        let response = by_url.request_token().await?;
        assert!(!response.is_dpop());
        let claims = segment(response.access_token(), 1);
        assert_eq!(claims["cnf"]["x5t#S256"], client_cert.thumbprint(), "{claims}");
        assert_eq!(claims["client_id"], "rs-mtls");
        let mut discovered = TokenEndpoint::discover(&idp.issuer, "rs-mtls", ClientCredential::TlsCertificate)
            .http_client(tls_client(&ca, Some(identity(&client_cert)))?)
            .resource(API)
            .build()?;
        let claims = segment(discovered.request_token().await?.access_token(), 1);
        assert_eq!(claims["cnf"]["x5t#S256"], client_cert.thumbprint(), "{claims}");

        // Without a certificate, or with another subject's: invalid_client.
        for (what, identity) in [("none", None), ("another subject", Some(identity(&ca.client("rs-other"))))] {
            let mut refused = TokenEndpoint::builder(&token_url, "rs-mtls", ClientCredential::TlsCertificate)
                .http_client(tls_client(&ca, identity)?)
                .resource(API)
                .build()?;
            let error = refused.request_token().await.unwrap_err();
            assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{what}: {error:?}");
        }

        // self_signed_tls_client_auth with exactly the registered certificate.
        let mut self_signed_endpoint =
            TokenEndpoint::builder(&token_url, "rs-mtls-self", ClientCredential::TlsCertificate)
                .auth_method(AuthMethod::SelfSignedTlsClientAuth)
                .http_client(tls_client(&ca, Some(self_signed_identity))?)
                .resource(API)
                .build()?;
        let claims = segment(self_signed_endpoint.request_token().await?.access_token(), 1);
        assert_eq!(claims["cnf"]["x5t#S256"], self_signed_thumbprint, "{claims}");
        assert_eq!(claims["client_id"], "rs-mtls-self");
        let (_, other_identity, _) = self_signed("rs-mtls-self");
        let mut impostor = TokenEndpoint::builder(&token_url, "rs-mtls-self", ClientCredential::TlsCertificate)
            .auth_method(AuthMethod::SelfSignedTlsClientAuth)
            .http_client(tls_client(&ca, Some(other_identity))?)
            .resource(API)
            .build()?;
        let error = impostor.request_token().await.unwrap_err();
        assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");

        assert_eq!(stats(&ca, &idp.issuer).await?["mtls_token"], 0, "no alias in this mode");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_discovered_mtls_client_uses_the_mtls_endpoint_alias() -> TestResult {
        let ca = Ca::new("interop client ca");
        let (self_signed_pem, _, _) = self_signed("rs-mtls-self");
        let (idp, _files) = mtls_idp(&ca, &self_signed_pem, true).await?;
        let client_cert = ca.client("rs-mtls");
        let before = stats(&ca, &idp.issuer).await?;
        assert_eq!(before["mtls_token"], 0);

        let mut discovered = TokenEndpoint::discover(&idp.issuer, "rs-mtls", ClientCredential::TlsCertificate)
            .http_client(tls_client(&ca, Some(identity(&client_cert)))?)
            .resource(API)
            .build()?;
        let claims = segment(discovered.request_token().await?.access_token(), 1);
        assert_eq!(claims["cnf"]["x5t#S256"], client_cert.thumbprint(), "{claims}");
        let after = stats(&ca, &idp.issuer).await?;
        assert_eq!(after["mtls_token"], 1, "{after}");
        assert_eq!(after["token"], before["token"].as_u64().unwrap_or_default() + 1, "{after}");

        // A client authenticated by its secret, with no TLS identity of its own, stays at
        // the token endpoint.
        let mut secret = TokenEndpoint::discover(&idp.issuer, CLIENT.0, CLIENT.1)
            .http_client(tls_client(&ca, None)?)
            .resource(API)
            .build()?;
        secret.request_token().await?;
        let last = stats(&ca, &idp.issuer).await?;
        assert_eq!(last["mtls_token"], 1, "{last}");
        assert_eq!(last["token"], after["token"].as_u64().unwrap_or_default() + 1, "{last}");

        // By URL the alias is not used.
        let mut by_url =
            TokenEndpoint::builder(format!("{}/token", idp.issuer), "rs-mtls", ClientCredential::TlsCertificate)
                .http_client(tls_client(&ca, Some(identity(&client_cert)))?)
                .resource(API)
                .build()?;
        by_url.request_token().await?;
        assert_eq!(stats(&ca, &idp.issuer).await?["mtls_token"], 1);
        Ok(())
    }
}
