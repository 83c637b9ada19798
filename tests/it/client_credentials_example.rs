//! The `client_credentials` example's contract (DESIGN §3), run as a real process: its
//! environment, its one line per failed request, its closing JSON line and exit code.
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
