//! The `client_credentials` example's contract (the variables its docs list), run as a
//! real process: its environment, its one line per failed request, its closing JSON line
//! and exit code.
#![cfg(all(feature = "testing", feature = "reqwest-middleware", feature = "axum"))]

use std::path::PathBuf;
use std::process::Output;

use tower_oauth::testing::{Endpoint, TestIssuer};

use crate::support::api::ok_api;
use crate::support::server::{Canned, Scripted};

/// The example binary `cargo test` built next to this test's own.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

async fn run(envs: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(example("client_credentials"));
    command.env_clear().env("RUST_LOG", "off");
    for (name, value) in envs {
        command.env(name, value);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output()).await.unwrap().unwrap()
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_succeeds_with_one_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = ok_api(&issuer).await;
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET),
        ("OAUTH_SCOPE", "read"),
        ("TARGET_URL", &api),
        ("REQUESTS", "40"),
        ("CONCURRENCY", "8"),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":40,"ok":40,"failed":0}"#]);
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_post_authentication_and_the_refresh_token_grant_work_too() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = ok_api(&issuer).await;
    let refresh = issuer.issue_refresh_token(TestIssuer::DEFAULT_CLIENT_ID, "read write", "dave");
    let output = run(&[
        ("OAUTH_ISSUER", issuer.issuer()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET),
        ("OAUTH_AUTH_METHOD", "post"),
        ("OAUTH_GRANT", "refresh_token"),
        ("OAUTH_REFRESH_TOKEN", &refresh),
        ("OAUTH_SCOPE", "read"),
        ("TARGET_URL", &api),
        ("REQUESTS", "3"),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":3,"ok":3,"failed":0}"#]);
    // The example's discovery and the API's own.
    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 2);
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_get_a_line_each_and_a_non_zero_exit() {
    let issuer = TestIssuer::start().await.unwrap();
    let api = Scripted::start(Canned::status(503)).await;
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET),
        ("TARGET_URL", &api.url("/x")),
        ("REQUESTS", "3"),
    ])
    .await;
    assert!(!output.status.success());
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[..3].iter().all(|l| l.contains("failed") && l.contains("503")), "{lines:?}");
    assert_eq!(lines[3], r#"{"requests":3,"ok":0,"failed":3}"#);

    // A wrong secret: every request fails with the typed token error, and no secret shows.
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", "not-the-secret"),
        ("TARGET_URL", &api.url("/x")),
    ])
    .await;
    assert!(!output.status.success());
    let lines = stdout_lines(&output);
    assert!(lines[0].contains("invalid_client"), "{lines:?}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("not-the-secret"));
    assert_eq!(lines[1], r#"{"requests":1,"ok":0,"failed":1}"#);
}

#[tokio::test]
async fn a_malformed_redis_token_key_is_refused_clearly() {
    let output = run(&[
        ("OAUTH_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("OAUTH_CLIENT_ID", "c"),
        ("OAUTH_CLIENT_SECRET", "s"),
        ("TARGET_URL", "http://127.0.0.1:9/"),
        ("REDIS_URL", "redis://127.0.0.1:9"),
        ("REDIS_TOKEN_KEY", "abcd"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REDIS_TOKEN_KEY must be"), "{stderr}");
}

/// `OAUTH_DPOP=1`: DPoP-bound tokens from an issuer that wants nonces, sent with a proof to
/// the `resource_server` example that requires DPoP and nonces too; with `OAUTH_DPOP_KEY`,
/// the key comes from a private JWK file and the token is bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_reach_a_resource_server_that_requires_dpop() {
    let issuer = TestIssuer::builder().require_dpop().dpop_nonce().start().await.unwrap();
    let (_server, url) = crate::resource_server::start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("OAUTH_DPOP", "required".to_owned()),
        ("OAUTH_DPOP_NONCE", "1".to_owned()),
    ])
    .await;
    let key = tower_oauth::DpopKey::generate().unwrap();
    let key_file = std::env::temp_dir().join(format!("dpop-key-{}.json", std::process::id()));
    std::fs::write(&key_file, key.private_jwk().unwrap().expose()).unwrap();
    let target = format!("{url}/me");
    let common = [
        ("OAUTH_TOKEN_URL", issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID.to_owned()),
        ("OAUTH_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET.to_owned()),
        ("TARGET_URL", target.clone()),
        ("REQUESTS", "5".to_owned()),
        ("CONCURRENCY", "2".to_owned()),
    ];
    let with = |extra: &[(&'static str, String)]| {
        common.iter().cloned().chain(extra.iter().cloned()).collect::<Vec<(&str, String)>>()
    };
    let envs = with(&[("OAUTH_DPOP", "1".to_owned()), ("OAUTH_DPOP_KEY", key_file.display().to_string())]);
    let output = run(&envs.iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>()).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":5,"ok":5,"failed":0}"#]);
    // The issuer wanted a nonce: the first token request was answered `use_dpop_nonce`.
    assert_eq!(issuer.requests(Endpoint::Token), 2);
    // Without DPoP, neither the issuer nor the API has anything for this client.
    let envs = with(&[]);
    let output = run(&envs.iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>()).await;
    assert!(!output.status.success(), "{output:?}");
    std::fs::remove_file(&key_file).unwrap();
}

/// Runs the example with `envs` (owned values) and returns its output.
async fn run_owned(envs: &[(&str, String)]) -> Output {
    run(&envs.iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>()).await
}

/// A file of this test process that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: impl AsRef<[u8]>) -> TempFile {
        let path = std::env::temp_dir().join(format!("client-credentials-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `OAUTH_AUTH_METHOD=private_key_jwt`: the client signs its assertions with the private
/// JWK of `OAUTH_CLIENT_KEY`, and needs no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_signs_with_the_key_file_and_needs_no_secret() {
    let key = tower_oauth::client::ClientKey::generate_for(tower_oauth::Algorithm::ES256).unwrap().with_kid("svc-1");
    let issuer = TestIssuer::builder().client_jwks("svc", &key.public_jwk()).start().await.unwrap();
    let api = ok_api(&issuer).await;
    let key_file = TempFile::new("private-key.json", key.private_jwk().unwrap().expose());
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", "svc"),
        ("OAUTH_AUTH_METHOD", "private_key_jwt"),
        ("OAUTH_CLIENT_KEY", &key_file.path()),
        ("TARGET_URL", &api),
        ("REQUESTS", "3"),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":3,"ok":3,"failed":0}"#]);
    assert_eq!(issuer.requests(Endpoint::Token), 1);

    // Another key under the same kid is refused by the issuer.
    let stranger =
        tower_oauth::client::ClientKey::generate_for(tower_oauth::Algorithm::ES256).unwrap().with_kid("svc-1");
    let stranger_file = TempFile::new("stranger-key.json", stranger.private_jwk().unwrap().expose());
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", "svc"),
        ("OAUTH_AUTH_METHOD", "private_key_jwt"),
        ("OAUTH_CLIENT_KEY", &stranger_file.path()),
        ("TARGET_URL", &api),
    ])
    .await;
    assert!(!output.status.success(), "{output:?}");
    let lines = stdout_lines(&output);
    assert!(lines[0].contains("invalid_client"), "{lines:?}");
    assert_eq!(lines[1], r#"{"requests":1,"ok":0,"failed":1}"#);
}

/// `OAUTH_AUTH_METHOD=client_secret_jwt`: an HS256 assertion keyed by the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_jwt_signs_with_the_secret() {
    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes-for-hs256";
    let issuer = TestIssuer::builder().client("svc", SECRET).start().await.unwrap();
    let api = ok_api(&issuer).await;
    let output = run(&[
        ("OAUTH_ISSUER", issuer.issuer()),
        ("OAUTH_CLIENT_ID", "svc"),
        ("OAUTH_CLIENT_SECRET", SECRET),
        ("OAUTH_AUTH_METHOD", "client_secret_jwt"),
        ("TARGET_URL", &api),
        ("REQUESTS", "2"),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":2,"ok":2,"failed":0}"#]);
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

/// `OAUTH_AUTH_METHOD=basic_unencoded`, for a server that compares Basic credentials as
/// sent: the RFC's form-encoded `basic` is refused there, the unencoded form accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_unencoded_suits_a_server_that_does_not_decode_basic_credentials() {
    const SECRET: &str = "s3cret+/=&:%x";
    let issuer = TestIssuer::builder().client("svc", SECRET).basic_without_form_decoding().start().await.unwrap();
    let api = ok_api(&issuer).await;
    let with = |method: &'static str| {
        [
            ("OAUTH_TOKEN_URL", issuer.token_endpoint()),
            ("OAUTH_CLIENT_ID", "svc".to_owned()),
            ("OAUTH_CLIENT_SECRET", SECRET.to_owned()),
            ("OAUTH_AUTH_METHOD", method.to_owned()),
            ("TARGET_URL", api.clone()),
        ]
    };
    let output = run_owned(&with("basic_unencoded")).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":1,"ok":1,"failed":0}"#]);

    let output = run_owned(&with("basic")).await;
    assert!(!output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("{\"requests\":1,\"ok\":0,\"failed\":1}\n"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}

/// `OAUTH_GRANT=jwt_bearer`: the assertion of `OAUTH_ASSERTION_FILE` (here a token of
/// another issuer that this one trusts) is traded for an access token; with
/// `OAUTH_AUTH_METHOD=none` the client sends only its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_grant_sends_the_assertion_file() {
    let workload_idp = TestIssuer::start().await.unwrap();
    let issuer = TestIssuer::builder()
        .trust_assertion_issuer(workload_idp.issuer(), &workload_idp.jwks().to_string())
        .start()
        .await
        .unwrap();
    let api = ok_api(&issuer).await;
    let assertion = workload_idp.mint().subject("workload-7").audience(issuer.token_endpoint()).sign();
    let assertion_file = TempFile::new("assertion.jwt", format!("{assertion}\n"));
    let common = [
        ("OAUTH_TOKEN_URL", issuer.token_endpoint()),
        ("OAUTH_GRANT", "jwt_bearer".to_owned()),
        ("OAUTH_ASSERTION_FILE", assertion_file.path()),
        ("TARGET_URL", api.clone()),
        ("REQUESTS", "2".to_owned()),
    ];
    let mut envs = common.to_vec();
    envs.extend([("OAUTH_CLIENT_ID", "workload".to_owned()), ("OAUTH_AUTH_METHOD", "none".to_owned())]);
    let output = run_owned(&envs).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":2,"ok":2,"failed":0}"#]);
    assert_eq!(issuer.grant_requests(tower_oauth::testing::GrantType::JwtBearer), 1);

    // With client authentication too (the default Basic).
    let assertion = workload_idp.mint().subject("workload-8").audience(issuer.token_endpoint()).sign();
    let assertion_file = TempFile::new("assertion-2.jwt", &assertion);
    let mut envs = common.to_vec();
    envs.extend([
        ("OAUTH_ASSERTION_FILE", assertion_file.path()),
        ("OAUTH_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID.to_owned()),
        ("OAUTH_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET.to_owned()),
    ]);
    let output = run_owned(&envs).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(issuer.grant_requests(tower_oauth::testing::GrantType::JwtBearer), 2);

    // A missing file is a clear error at start.
    let mut envs = common.to_vec();
    envs.extend([
        ("OAUTH_ASSERTION_FILE", format!("{}.missing", assertion_file.path())),
        ("OAUTH_CLIENT_ID", "workload".to_owned()),
        ("OAUTH_AUTH_METHOD", "none".to_owned()),
    ]);
    let output = run_owned(&envs).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("OAUTH_ASSERTION_FILE: cannot read"), "{output:?}");
}

/// `OAUTH_GRANT=token_exchange`: the `OAUTH_SUBJECT_TOKEN` (a caller's token) is exchanged
/// for one to `OAUTH_AUDIENCE`, for the caller, with the client as the actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_trades_the_subject_token_for_the_audience() {
    use tower_oauth::{BearerAuthLayer, Validator};
    let issuer = TestIssuer::builder()
        .client("gateway", "gateway-secret")
        .exchange_policy("gateway", ["orders-api"])
        .start()
        .await
        .unwrap();
    let orders = Validator::builder().issuer(issuer.issuer()).audience("orders-api").build().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<tower_oauth::Claims>();
    let app = axum::Router::new()
        .route(
            "/me",
            axum::routing::get(move |claims: tower_oauth::Claims| {
                let _ = seen_tx.send(claims);
                async { "ok" }
            }),
        )
        .layer(BearerAuthLayer::new(orders));
    let api = format!("{}/me", crate::support::api::serve(app).await);
    let subject = issuer.mint().subject("alice").scope("read").sign();
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", "gateway"),
        ("OAUTH_CLIENT_SECRET", "gateway-secret"),
        ("OAUTH_GRANT", "token_exchange"),
        ("OAUTH_SUBJECT_TOKEN", &subject),
        ("OAUTH_AUDIENCE", "orders-api"),
        ("TARGET_URL", &api),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":1,"ok":1,"failed":0}"#]);
    assert_eq!(issuer.grant_requests(tower_oauth::testing::GrantType::TokenExchange), 1);
    let claims = serde_json::to_value(seen.recv().await.unwrap()).unwrap();
    assert_eq!((&claims["sub"], &claims["aud"]), (&serde_json::json!("alice"), &serde_json::json!("orders-api")));
    assert_eq!(claims["act"], serde_json::json!({ "sub": "gateway" }));

    // An audience outside the client's policy is refused by the issuer.
    let output = run(&[
        ("OAUTH_TOKEN_URL", &issuer.token_endpoint()),
        ("OAUTH_CLIENT_ID", "gateway"),
        ("OAUTH_CLIENT_SECRET", "gateway-secret"),
        ("OAUTH_GRANT", "token_exchange"),
        ("OAUTH_SUBJECT_TOKEN", &subject),
        ("OAUTH_AUDIENCE", "billing-api"),
        ("TARGET_URL", &api),
    ])
    .await;
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output).last().unwrap(), r#"{"requests":1,"ok":0,"failed":1}"#);
}

/// A value it does not know, or a method without what it needs, stops it before any
/// request, with exit code 2 and a message that names the variable.
#[tokio::test]
async fn an_unknown_method_or_a_missing_credential_is_a_clear_error() {
    let base = [
        ("OAUTH_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("OAUTH_CLIENT_ID", "c"),
        ("TARGET_URL", "http://127.0.0.1:9/"),
    ];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("OAUTH_AUTH_METHOD", "magic"), ("OAUTH_CLIENT_SECRET", "s")],
            r#"OAUTH_AUTH_METHOD must be basic, basic_unencoded, post, client_secret_jwt, private_key_jwt, tls_client_auth or none, not "magic""#,
        ),
        (&[], "OAUTH_CLIENT_SECRET is required (OAUTH_AUTH_METHOD is basic by default)"),
        (&[("OAUTH_AUTH_METHOD", "basic")], "OAUTH_AUTH_METHOD=basic needs OAUTH_CLIENT_SECRET"),
        (
            &[("OAUTH_AUTH_METHOD", "client_secret_jwt")],
            "OAUTH_AUTH_METHOD=client_secret_jwt needs OAUTH_CLIENT_SECRET",
        ),
        (&[("OAUTH_AUTH_METHOD", "post")], "OAUTH_AUTH_METHOD=post needs OAUTH_CLIENT_SECRET"),
        (&[("OAUTH_AUTH_METHOD", "private_key_jwt")], "OAUTH_AUTH_METHOD=private_key_jwt needs OAUTH_CLIENT_KEY"),
        (
            &[("OAUTH_AUTH_METHOD", "tls_client_auth")],
            "OAUTH_AUTH_METHOD=tls_client_auth needs OAUTH_CLIENT_CERT and OAUTH_CLIENT_CERT_KEY",
        ),
        (
            &[("OAUTH_CLIENT_SECRET", "s"), ("OAUTH_GRANT", "password")],
            r#"OAUTH_GRANT must be client_credentials, refresh_token, jwt_bearer or token_exchange, not "password""#,
        ),
        (
            &[("OAUTH_CLIENT_SECRET", "s"), ("OAUTH_GRANT", "jwt_bearer")],
            "OAUTH_GRANT=jwt_bearer needs OAUTH_ASSERTION_FILE",
        ),
        (
            &[("OAUTH_CLIENT_SECRET", "s"), ("OAUTH_GRANT", "token_exchange")],
            "OAUTH_GRANT=token_exchange needs OAUTH_SUBJECT_TOKEN",
        ),
    ];
    for (extra, message) in cases {
        let envs: Vec<(&str, &str)> = base.iter().chain(extra.iter()).copied().collect();
        let output = run(&envs).await;
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end(), format!("error: {message}"), "{extra:?}");
        assert!(output.stdout.is_empty(), "{extra:?}: {output:?}");
    }
}

/// `OAUTH_AUTH_METHOD=tls_client_auth` against an issuer over TLS with a private CA
/// (trusted through `SSL_CERT_FILE`, beside the platform's roots): the certificate of
/// `OAUTH_CLIENT_CERT` and `OAUTH_CLIENT_CERT_KEY` authenticates the client.
#[cfg(all(feature = "mtls-rustls", feature = "tonic"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_auth_authenticates_with_the_client_certificate() {
    use crate::mtls::Ca;
    let ca = Ca::new("client credentials example CA");
    let (server, client) = (ca.server(), ca.client("svc-mtls"));
    let issuer = TestIssuer::builder()
        .tls(server.cert_pem().as_bytes(), server.key_pem().as_bytes(), Some(ca.pem().as_bytes()))
        .tls_client("svc-mtls", "CN=svc-mtls")
        .start()
        .await
        .unwrap();
    // The API only checks that a token came; the issuer is what is under test.
    let app = axum::Router::new().route(
        "/me",
        axum::routing::get(|headers: http::HeaderMap| async move {
            match headers.get(http::header::AUTHORIZATION) {
                Some(value) if value.as_bytes().starts_with(b"Bearer ") => http::StatusCode::OK,
                _ => http::StatusCode::UNAUTHORIZED,
            }
        }),
    );
    let api = format!("{}/me", crate::support::api::serve(app).await);
    let (ca_file, cert_file, key_file) = (
        TempFile::new("ca.pem", ca.pem()),
        TempFile::new("client.pem", client.cert_pem()),
        TempFile::new("client-key.pem", client.key_pem()),
    );
    let output = run(&[
        ("OAUTH_ISSUER", issuer.issuer()),
        ("OAUTH_CLIENT_ID", "svc-mtls"),
        ("OAUTH_AUTH_METHOD", "tls_client_auth"),
        ("OAUTH_CLIENT_CERT", &cert_file.path()),
        ("OAUTH_CLIENT_CERT_KEY", &key_file.path()),
        ("SSL_CERT_FILE", &ca_file.path()),
        ("TARGET_URL", &api),
        ("REQUESTS", "2"),
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_lines(&output), [r#"{"requests":2,"ok":2,"failed":0}"#]);
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}
