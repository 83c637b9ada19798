//! The `resource_server` example's contract (DESIGN §3), run as a real process: its
//! environment variables, its routes and its `listening on http://ADDR` line.
#![cfg(all(feature = "testing", feature = "jwe"))]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_oauth::testing::{TestEncryptionKey, TestIssuer};

/// The example binary `cargo test` built next to this test's own.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

async fn start(envs: &[(&str, String)]) -> (Child, String) {
    let mut command = Command::new(example("resource_server"));
    command.env_clear().env("LISTEN", "127.0.0.1:0").env("RUST_LOG", "warn");
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let url = line.strip_prefix("listening on ").expect("the ready line").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

#[tokio::test]
async fn the_resource_server_example_follows_its_contract() {
    let issuer = TestIssuer::start().await.unwrap();
    let encryption = TestEncryptionKey::generate("RSA-OAEP-256");
    let keys_file = std::env::temp_dir().join(format!("decryption-keys-{}.json", std::process::id()));
    std::fs::write(&keys_file, encryption.private_jwks()).unwrap();
    let (_child, url) = start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("OAUTH_ADMIN_SCOPE", "ops".to_owned()),
        ("OAUTH_DECRYPTION_KEYS", keys_file.display().to_string()),
        ("OAUTH_TOKEN_CACHE", "1".to_owned()),
    ])
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let request = http.get(format!("{url}{path}"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };

    let health = get("/healthz", None).await.unwrap();
    assert_eq!((health.status().as_u16(), health.text().await.unwrap().as_str()), (200, "ok"));

    let anonymous = get("/me", None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], r#"Bearer realm="resource_server""#);

    let token = issuer.mint().subject("carol").scope("read").sign();
    let me = get("/me", Some(&token)).await.unwrap();
    assert_eq!(me.status(), 200);
    let claims: serde_json::Value = me.json().await.unwrap();
    assert_eq!(claims["sub"], "carol");

    let admin = get("/admin", Some(&token)).await.unwrap();
    assert_eq!(admin.status(), 403);
    assert!(admin.headers()["www-authenticate"].to_str().unwrap().contains(r#"scope="ops""#));
    let ops = issuer.mint().scope("read ops").sign();
    assert_eq!(get("/admin", Some(&ops)).await.unwrap().status(), 200);

    let encrypted = issuer.mint().subject("dave").encrypt(&encryption);
    let me = get("/me", Some(&encrypted)).await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "dave");
    let _ = std::fs::remove_file(keys_file);
}

#[tokio::test]
async fn the_resource_server_example_refuses_to_start_without_an_audience() {
    let status = Command::new(example("resource_server"))
        .env_clear()
        .env("OAUTH_ISSUER", "https://idp.example")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!status.success());
}
