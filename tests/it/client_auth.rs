//! Client authentication without a plain secret, and the newer grants, from the client's
//! side (`TokenEndpoint`, `Introspector`, `TokenCache`) against the embedded test issuer
//! over real sockets: `private_key_jwt` with each key type, `client_secret_jwt`, the
//! unencoded Basic form, the JWT bearer grant from a file, token exchange, and (over TLS)
//! `tls_client_auth` and `self_signed_tls_client_auth`.
#![cfg(feature = "testing")]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tower_oauth::client::{
    AssertionAudience, AssertionSource, AuthMethod, ClientCredential, ClientKey, ErrorCode, TokenCache, TokenEndpoint,
    TokenError, TokenExchange,
};
use tower_oauth::introspect::{IntrospectionError, Introspector};
use tower_oauth::testing::{GrantType, TestIssuer, TestKey};
use tower_oauth::{Algorithm, BuildError, Validator};

use crate::support::api::{now, validator};
use crate::support::oidc_idp::segment;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The claims of a compact JWS access token, read without verification.
fn claims_of(token: &str) -> Value {
    segment(token, 1)
}

/// The RFC 6749 §5.2 error code of a failed token request.
fn code(error: &TokenError) -> Option<&ErrorCode> {
    error.oauth().map(|response| response.code())
}

/// A key for `alg` with a `kid` of its own.
fn key(alg: Algorithm) -> ClientKey {
    ClientKey::generate_for(alg)
        .expect("a key for a supported algorithm")
        .with_kid(format!("{alg}-{}", fastrand::u32(..)))
}

// ---------------------------------------------------------------- private_key_jwt and client_secret_jwt

#[tokio::test]
async fn private_key_jwt_with_each_key_type_gets_a_token() -> TestResult {
    let algorithms = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];
    let keys: Vec<(String, ClientKey)> =
        algorithms.iter().map(|alg| (format!("pkjwt-{}", alg.as_str().to_lowercase()), key(*alg))).collect();
    let mut builder = TestIssuer::builder();
    for (id, key) in &keys {
        builder = builder.client_jwks(id.as_str(), &key.public_jwk());
    }
    let issuer = builder.start().await?;
    let validator = validator(&issuer);

    for (id, key) in &keys {
        assert!(key.kid().is_some());
        let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), id.as_str(), key.clone()).build()?;
        let response = endpoint.request_token().await.map_err(|e| format!("{id}: {e:?}"))?;
        let claims = validator.validate(response.access_token()).await?;
        assert_eq!(claims.client_id(), Some(id.as_str()), "{id}");
    }
    assert_eq!(issuer.grant_requests(GrantType::ClientCredentials), keys.len() as u64);
    Ok(())
}

#[tokio::test]
async fn assertions_aimed_at_the_issuer_or_the_endpoint_are_taken_and_elsewhere_refused() -> TestResult {
    let key = key(Algorithm::ES256);
    let issuer = TestIssuer::builder().client_jwks("svc", &key.public_jwk()).start().await?;

    // Discovered: `aud` is the issuer (FAPI 2.0), the default.
    let mut discovered = TokenEndpoint::discover(issuer.issuer(), "svc", key.clone()).build()?;
    let token = discovered.request_token().await?;
    assert_eq!(claims_of(token.access_token())["client_id"], "svc");
    // Configured by URL, aimed at the endpoint.
    let mut by_url = TokenEndpoint::builder(issuer.token_endpoint(), "svc", key.clone())
        .assertion_audience(AssertionAudience::Endpoint)
        .build()?;
    by_url.request_token().await?;
    // A named issuer, as given.
    let mut named = TokenEndpoint::builder(issuer.token_endpoint(), "svc", key.clone())
        .assertion_audience(AssertionAudience::Value(issuer.issuer().to_owned()))
        .build()?;
    named.request_token().await?;
    // Another audience: the issuer refuses the client.
    let mut elsewhere = TokenEndpoint::builder(issuer.token_endpoint(), "svc", key.clone())
        .assertion_audience(AssertionAudience::Value("https://elsewhere.example".into()))
        .build()?;
    let error = elsewhere.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
    assert!(matches!(error, TokenError::OAuth(_)), "{error:?}");

    // Each request has an assertion of its own: the issuer refuses a replayed `jti`, so a
    // second request of the same endpoint must succeed on a fresh one.
    discovered.request_token().await?;
    Ok(())
}

#[tokio::test]
async fn a_key_the_issuer_does_not_know_is_invalid_client() -> TestResult {
    let registered = key(Algorithm::ES256);
    let issuer = TestIssuer::builder().client_jwks("svc", &registered.public_jwk()).start().await?;
    // Unregistered, with and without the registered key's `kid`, and another type of key.
    let strangers = [
        ClientKey::generate_for(Algorithm::ES256)?.with_kid(registered.kid().unwrap_or_default()),
        ClientKey::generate_for(Algorithm::ES256)?,
        key(Algorithm::RS256),
    ];
    for stranger in strangers {
        let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "svc", stranger.clone()).build()?;
        let error = endpoint.request_token().await.unwrap_err();
        assert!(
            matches!(&error, TokenError::OAuth(r) if *r.code() == ErrorCode::InvalidClient),
            "{stranger:?}: {error:?}"
        );
        assert_eq!(error.status(), Some(http::StatusCode::UNAUTHORIZED));
    }
    // A client with no keys at all.
    let mut unknown = TokenEndpoint::builder(issuer.token_endpoint(), "nobody", registered).build()?;
    assert_eq!(code(&unknown.request_token().await.unwrap_err()), Some(&ErrorCode::InvalidClient));
    assert_eq!(issuer.grant_requests(GrantType::ClientCredentials), 4);
    Ok(())
}

#[tokio::test]
async fn client_secret_jwt_signs_with_the_secret_which_never_travels() -> TestResult {
    const SECRET: &str = "a-client-secret-of-at-least-32-bytes!";
    let issuer = TestIssuer::builder().client("csjwt", SECRET).start().await?;
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "csjwt", SECRET)
        .auth_method(AuthMethod::ClientSecretJwt)
        .build()?;
    let response = endpoint.request_token().await?;
    assert_eq!(validator(&issuer).validate(response.access_token()).await?.client_id(), Some("csjwt"));

    let mut wrong = TokenEndpoint::builder(issuer.token_endpoint(), "csjwt", "another-secret-of-at-least-32-bytes!!")
        .auth_method(AuthMethod::ClientSecretJwt)
        .build()?;
    let error = wrong.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn introspection_with_private_key_jwt() -> TestResult {
    let key = key(Algorithm::PS256);
    let issuer = TestIssuer::builder().client_jwks("rs", &key.public_jwk()).start().await?;
    let token = issuer.mint().subject("alice").sign();

    let introspector = Introspector::builder(issuer.introspection_endpoint(), "rs", key.clone()).build()?;
    let answer = introspector.introspect(&token).await?;
    let claims: Value = serde_json::from_str(answer.claims_json())?;
    assert_eq!((&claims["active"], &claims["sub"]), (&json!(true), &json!("alice")));
    issuer.revoke(&token);
    introspector.forget(&token);
    assert!(matches!(introspector.introspect(&token).await, Err(IntrospectionError::Inactive)));

    // Discovered, the assertion is aimed at the issuer; that works too.
    let discovered = Introspector::discover(issuer.issuer(), "rs", key).build()?;
    assert!(discovered.introspect(&issuer.mint().sign()).await.is_ok());

    // A key the issuer does not know: the endpoint refuses us, which is no verdict on the token.
    let stranger =
        Introspector::builder(issuer.introspection_endpoint(), "rs", ClientKey::generate_for(Algorithm::PS256)?)
            .build()?;
    let error = stranger.introspect(&issuer.mint().sign()).await.unwrap_err();
    assert!(
        matches!(error, IntrospectionError::Rejected { status, .. } if status == http::StatusCode::UNAUTHORIZED),
        "{error:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------- client_secret_basic and its encoding

/// An id and a secret that RFC 6749 §2.3.1's form-encoding changes.
const RESERVED: (&str, &str) = ("svc:client", "s3cr&t+%/=");
/// The same secret with an id the encoding leaves alone. (The unencoded form cannot carry
/// an id with a colon: RFC 7617 §2 splits user-id and password at the first one.)
const RESERVED_SECRET: (&str, &str) = ("svc.client", "s3cr&t+%/=");

#[tokio::test]
async fn a_server_that_does_not_form_decode_basic_needs_the_unencoded_form_and_says_so() -> TestResult {
    let issuer = TestIssuer::builder()
        .client(RESERVED.0, RESERVED.1)
        .client(RESERVED_SECRET.0, RESERVED_SECRET.1)
        .basic_without_form_decoding()
        .start()
        .await?;

    for (id, secret) in [RESERVED, RESERVED_SECRET] {
        let mut encoded = TokenEndpoint::builder(issuer.token_endpoint(), id, secret).build()?;
        let error = encoded.request_token().await.unwrap_err();
        let TokenError::BasicEncoding(refusal) = &error else { panic!("{id}: not BasicEncoding: {error:?}") };
        // The issuer's refusal is a bare 403, kept as the source.
        assert!(matches!(**refusal, TokenError::Forbidden), "{id}: {refusal:?}");
        assert!(error.to_string().contains("ClientSecretBasicUnencoded"), "{error}");
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(std::error::Error::source(&error).is_some());
        assert_eq!(error.oauth(), None, "a bare 403 has no RFC 6749 error");
    }

    let unencoded = |(id, secret): (&str, &str)| {
        TokenEndpoint::builder(issuer.token_endpoint(), id, secret)
            .auth_method(AuthMethod::ClientSecretBasicUnencoded)
            .build()
    };
    let response = unencoded(RESERVED_SECRET)?.request_token().await?;
    assert_eq!(validator(&issuer).validate(response.access_token()).await?.client_id(), Some(RESERVED_SECRET.0));
    // An id with a colon cannot be sent unencoded (RFC 7617 §2): refused when built.
    assert!(matches!(unencoded(RESERVED), Err(BuildError::AuthMethod(_))));

    // A wrong secret in the unencoded form is no encoding matter.
    let error = unencoded((RESERVED_SECRET.0, "wrong"))?.request_token().await.unwrap_err();
    assert!(matches!(error, TokenError::Forbidden), "{error:?}");
    Ok(())
}

#[tokio::test]
async fn a_server_that_form_decodes_basic_takes_the_rfc_encoding() -> TestResult {
    let issuer = TestIssuer::builder().client(RESERVED.0, RESERVED.1).start().await?;
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), RESERVED.0, RESERVED.1).build()?;
    let response = endpoint.request_token().await?;
    assert_eq!(validator(&issuer).validate(response.access_token()).await?.client_id(), Some(RESERVED.0));

    // A wrong secret there: the server's invalid_client, wrapped with the encoding hint
    // (the credentials have characters the encoding changes), and reachable via `oauth()`.
    let mut wrong = TokenEndpoint::builder(issuer.token_endpoint(), RESERVED.0, "s3cr&t+%/=x").build()?;
    let error = wrong.request_token().await.unwrap_err();
    assert!(matches!(error, TokenError::BasicEncoding(_)), "{error:?}");
    assert_eq!(code(&error), Some(&ErrorCode::InvalidClient));
    Ok(())
}

// ---------------------------------------------------------------- the JWT bearer grant (RFC 7523 §2.1)

const TRUSTED: &str = "https://workload-idp.example";

/// A file in a directory of its own, removed when dropped.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str) -> std::io::Result<TempFile> {
        let dir = std::env::temp_dir().join(format!(
            "tower-oauth-client-auth-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir)?;
        Ok(TempFile { path: dir.join(name), dir })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An assertion from [`TRUSTED`] about `sub` for `issuer`, expiring at `exp`.
fn assertion(key: &TestKey, issuer: &TestIssuer, sub: &str, exp: i64) -> String {
    let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "JWT"});
    let claims = json!({
        "iss": TRUSTED, "sub": sub, "aud": issuer.issuer(), "iat": now(), "exp": exp,
        "jti": format!("{:032x}", fastrand::u128(..)),
    });
    key.sign_compact(&header.to_string(), &claims.to_string())
}

async fn bearer_issuer() -> std::io::Result<(TestIssuer, TestKey)> {
    let key = TestKey::generate(Algorithm::ES256);
    let issuer = TestIssuer::builder().trust_assertion_issuer(TRUSTED, &key.public_jwk().to_string()).start().await?;
    Ok((issuer, key))
}

#[tokio::test]
async fn the_jwt_bearer_assertion_is_read_from_its_file_at_each_request() -> TestResult {
    let (issuer, key) = bearer_issuer().await?;
    let file = TempFile::new("token")?;
    std::fs::write(&file.path, format!("{}\n", assertion(&key, &issuer, "alice", now() + 60)))?;
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "workload", ClientCredential::None)
        .jwt_bearer(AssertionSource::file(&file.path))
        .scope("read")
        .build()?;

    let first = endpoint.request_token().await?;
    let claims = validator(&issuer).validate(first.access_token()).await?;
    assert_eq!(claims.subject(), Some("alice"));
    assert_eq!(first.scope(), Some("read"));

    // Rotated by whatever writes it: the next token is for the new subject.
    std::fs::write(&file.path, assertion(&key, &issuer, "bob", now() + 60))?;
    let second = endpoint.request_token().await?;
    assert_eq!(claims_of(second.access_token())["sub"], "bob");
    assert_eq!(issuer.grant_requests(GrantType::JwtBearer), 2);

    // An authenticated client becomes the token's client_id.
    std::fs::write(&file.path, assertion(&key, &issuer, "carol", now() + 60))?;
    let mut authenticated = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .jwt_bearer(AssertionSource::file(&file.path))
    .build()?;
    let claims = claims_of(authenticated.request_token().await?.access_token());
    assert_eq!((&claims["sub"], &claims["client_id"]), (&json!("carol"), &json!(TestIssuer::DEFAULT_CLIENT_ID)));
    Ok(())
}

#[tokio::test]
async fn an_expired_or_untrusted_assertion_is_invalid_grant() -> TestResult {
    let (issuer, key) = bearer_issuer().await?;
    let expired = assertion(&key, &issuer, "alice", now() - 120);
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "workload", ClientCredential::None)
        .jwt_bearer(AssertionSource::fixed(expired.as_str()))
        .build()?;
    let error = endpoint.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidGrant), "{error:?}");
    assert!(!format!("{error:?}").contains(&expired), "the assertion is not shown");

    let stranger = TestKey::generate(Algorithm::ES256).with_kid(key.kid());
    let forged = assertion(&stranger, &issuer, "alice", now() + 60);
    let mut endpoint = TokenEndpoint::builder(issuer.token_endpoint(), "workload", ClientCredential::None)
        .jwt_bearer(AssertionSource::from_fn(move || Ok(forged.clone().into())))
        .build()?;
    assert_eq!(code(&endpoint.request_token().await.unwrap_err()), Some(&ErrorCode::InvalidGrant));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_assertion_file_fails_locally_and_the_cache_backs_off() -> TestResult {
    let (issuer, key) = bearer_issuer().await?;
    let file = TempFile::new("missing")?;
    let endpoint = || {
        TokenEndpoint::builder(issuer.token_endpoint(), "workload", ClientCredential::None)
            .jwt_bearer(AssertionSource::file(&file.path))
            .build()
    };

    let error = endpoint()?.request_token().await.unwrap_err();
    let TokenError::Assertion(io) = &error else { panic!("not Assertion: {error:?}") };
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(!error.is_transient());
    assert_eq!(issuer.grant_requests(GrantType::JwtBearer), 0, "nothing is sent without an assertion");

    // Callers hammering a cache whose every fetch fails: a few fetches, not one per call.
    let cache = TokenCache::new(endpoint()?)?;
    let hammer = |cache: TokenCache| async move {
        let started = std::time::Instant::now();
        let mut calls = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            assert!(cache.token().await.is_err());
            calls += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        calls
    };
    let calls = hammer(cache.clone()).await;
    assert!(calls > 20, "{calls} calls");
    // 1 s doubling (±20 %): the first fetch and at most two retries within 1.5 s.
    assert!((1..=3).contains(&cache.fetch_attempts()), "{} fetches for {calls} calls", cache.fetch_attempts());
    assert_eq!(issuer.grant_requests(GrantType::JwtBearer), 0);
    // Its background retries stop with it.
    drop(cache);

    // The same with an assertion the issuer refuses: the issuer sees a few requests only.
    std::fs::write(&file.path, assertion(&key, &issuer, "alice", now() - 120))?;
    let cache = TokenCache::new(endpoint()?)?;
    let calls = hammer(cache.clone()).await;
    let requests = issuer.grant_requests(GrantType::JwtBearer);
    assert!((1..=3).contains(&requests), "{requests} token requests for {calls} calls");
    assert_eq!(requests, cache.fetch_attempts());
    drop(cache);

    // And once the file is good, a fresh cache gets a token at once.
    std::fs::write(&file.path, assertion(&key, &issuer, "alice", now() + 60))?;
    let token = TokenCache::new(endpoint()?)?.token().await?;
    assert_eq!(claims_of(token.expose())["sub"], "alice");
    Ok(())
}

// ---------------------------------------------------------------- token exchange (RFC 8693)

const DOWNSTREAM: &str = "https://downstream.example";

#[tokio::test]
async fn token_exchange_gets_a_token_for_an_allowed_audience_naming_the_actor() -> TestResult {
    let issuer = TestIssuer::builder()
        .client(TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
        .client("gateway", "gateway-secret")
        .exchange_policy("gateway", [DOWNSTREAM])
        .start()
        .await?;
    // The subject token: one the issuer gave a client, for alice.
    let subject = issuer.mint().subject("alice").scope("read write").sign();
    let exchange = |audience: &str, subject: &str| {
        TokenEndpoint::builder(issuer.token_endpoint(), "gateway", "gateway-secret")
            .token_exchange(TokenExchange::access_token(subject))
            .audience(audience)
            .build()
    };

    let response = exchange(DOWNSTREAM, &subject)?.request_token().await?;
    let claims = claims_of(response.access_token());
    assert_eq!((&claims["sub"], &claims["aud"]), (&json!("alice"), &json!(DOWNSTREAM)), "{claims}");
    assert_eq!(claims["act"], json!({"sub": "gateway"}), "{claims}");
    assert_eq!(claims["client_id"], "gateway");
    let validated = Validator::builder().issuer(issuer.issuer()).audience(DOWNSTREAM).build()?;
    assert_eq!(validated.validate(response.access_token()).await?.subject(), Some("alice"));
    // Narrowed scope.
    let mut narrowed = TokenEndpoint::builder(issuer.token_endpoint(), "gateway", "gateway-secret")
        .token_exchange(TokenExchange::access_token(subject.as_str()))
        .audience(DOWNSTREAM)
        .scope("read")
        .build()?;
    assert_eq!(claims_of(narrowed.request_token().await?.access_token())["scope"], "read");

    let error = exchange("https://not-allowed.example", &subject)?.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidTarget), "{error:?}");
    let error = exchange(DOWNSTREAM, "not-a-token-of-this-issuer")?.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidGrant), "{error:?}");
    let expired = issuer.mint().subject("alice").expired().sign();
    let error = exchange(DOWNSTREAM, &expired)?.request_token().await.unwrap_err();
    assert_eq!(code(&error), Some(&ErrorCode::InvalidGrant), "{error:?}");
    assert!(!format!("{error:?}{error}").contains(&expired), "the subject token is not shown");

    // A client without an exchange policy.
    let mut other = TokenEndpoint::builder(
        issuer.token_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .token_exchange(TokenExchange::access_token(subject.as_str()))
    .audience(DOWNSTREAM)
    .build()?;
    assert_eq!(code(&other.request_token().await.unwrap_err()), Some(&ErrorCode::UnauthorizedClient));
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 6);
    Ok(())
}

#[tokio::test]
async fn token_exchange_with_an_actor_token_and_private_key_jwt() -> TestResult {
    let key = key(Algorithm::EdDSA);
    let issuer = TestIssuer::builder()
        .client_jwks("gateway", &key.public_jwk())
        .exchange_policy("gateway", [DOWNSTREAM])
        .start()
        .await?;
    let subject = issuer.mint().subject("alice").sign();
    let actor = issuer.mint().subject("batch-job").sign();
    let mut endpoint = TokenEndpoint::discover(issuer.issuer(), "gateway", key)
        .token_exchange(
            TokenExchange::access_token(subject.as_str())
                .actor_token(actor.as_str(), tower_oauth::client::token_type::ACCESS_TOKEN)
                .requested_token_type(tower_oauth::client::token_type::ACCESS_TOKEN),
        )
        .resource(DOWNSTREAM)
        .build()?;
    let claims = claims_of(endpoint.request_token().await?.access_token());
    assert_eq!((&claims["sub"], &claims["act"]), (&json!("alice"), &json!({"sub": "batch-job"})), "{claims}");
    Ok(())
}

// ---------------------------------------------------------------- mutual TLS (RFC 8705)

#[cfg(feature = "mtls-rustls")]
mod mutual_tls {
    use rcgen::{CertificateParams, DnType, KeyPair};
    use tower_oauth::mtls::ClientCertificate;

    use super::*;
    use crate::mtls::{Ca, Credentials, reqwest_client};

    async fn tls_issuer(ca: &Ca, builder: tower_oauth::testing::TestIssuerBuilder) -> std::io::Result<TestIssuer> {
        let server = ca.server();
        builder.tls(server.cert_pem().as_bytes(), server.key_pem().as_bytes(), Some(ca.pem().as_bytes())).start().await
    }

    fn https(ca: &Ca, identity: Option<&Credentials>) -> reqwest::Client {
        reqwest_client(ca, identity).build().expect("an HTTPS client")
    }

    #[tokio::test]
    async fn tls_client_auth_gets_a_token_bound_to_the_certificate() -> TestResult {
        let ca = Ca::new("client ca");
        let issuer = tls_issuer(&ca, TestIssuer::builder().tls_client("mtls-client", "CN=mtls-client")).await?;
        let credentials = ca.client("mtls-client");

        let mut endpoint =
            TokenEndpoint::builder(issuer.token_endpoint(), "mtls-client", ClientCredential::TlsCertificate)
                .http_client(https(&ca, Some(&credentials)))
                .build()?;
        let response = endpoint.request_token().await?;
        let claims = claims_of(response.access_token());
        assert_eq!(claims["cnf"], json!({"x5t#S256": credentials.thumbprint()}), "{claims}");
        assert_eq!(claims["client_id"], "mtls-client");
        assert!(!response.is_dpop());

        // Discovered: the metadata's mtls_endpoint_aliases (here the endpoint itself).
        let mut discovered = TokenEndpoint::discover(issuer.issuer(), "mtls-client", ClientCredential::TlsCertificate)
            .http_client(https(&ca, Some(&credentials)))
            .build()?;
        assert_eq!(claims_of(discovered.request_token().await?.access_token())["client_id"], "mtls-client");

        // No certificate, or another subject's: invalid_client.
        for (what, identity) in [("none", None), ("another subject", Some(ca.client("someone-else")))] {
            let mut refused =
                TokenEndpoint::builder(issuer.token_endpoint(), "mtls-client", ClientCredential::TlsCertificate)
                    .http_client(https(&ca, identity.as_ref()))
                    .build()?;
            let error = refused.request_token().await.unwrap_err();
            assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{what}: {error:?}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_certificate_binds_a_token_whatever_the_client_authenticated_with() -> TestResult {
        let ca = Ca::new("client ca");
        let key = key(Algorithm::ES256);
        let issuer = tls_issuer(&ca, TestIssuer::builder().client_jwks("svc", &key.public_jwk())).await?;
        let credentials = ca.client("svc");
        let mut endpoint = TokenEndpoint::discover(issuer.issuer(), "svc", key.clone())
            .http_client(https(&ca, Some(&credentials)))
            .build()?;
        let claims = claims_of(endpoint.request_token().await?.access_token());
        assert_eq!(claims["cnf"]["x5t#S256"], credentials.thumbprint(), "{claims}");
        let mut unbound = TokenEndpoint::discover(issuer.issuer(), "svc", key).http_client(https(&ca, None)).build()?;
        assert!(claims_of(unbound.request_token().await?.access_token()).get("cnf").is_none());
        Ok(())
    }

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

    #[tokio::test]
    async fn self_signed_tls_client_auth_presents_the_registered_certificate() -> TestResult {
        let ca = Ca::new("client ca");
        let (identity, thumbprint) = self_signed("device-7");
        let (other, _) = self_signed("device-7");
        let issuer = tls_issuer(&ca, TestIssuer::builder().self_signed_tls_client("device", &thumbprint)).await?;
        let endpoint = |identity: reqwest::Identity| {
            let client = reqwest_client(&ca, None).identity(identity).build().expect("an HTTPS client");
            TokenEndpoint::builder(issuer.token_endpoint(), "device", ClientCredential::TlsCertificate)
                .auth_method(AuthMethod::SelfSignedTlsClientAuth)
                .http_client(client)
                .build()
        };
        let response = endpoint(identity)?.request_token().await?;
        let claims = claims_of(response.access_token());
        assert_eq!((&claims["cnf"], &claims["client_id"]), (&json!({"x5t#S256": thumbprint}), &json!("device")));

        let error = endpoint(other)?.request_token().await.unwrap_err();
        assert_eq!(code(&error), Some(&ErrorCode::InvalidClient), "{error:?}");
        Ok(())
    }
}
