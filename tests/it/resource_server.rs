//! The `resource_server` example's contract (the variables its docs list), run as a real
//! process: its environment variables, its routes and its `listening on http://ADDR` line.
#![cfg(all(feature = "testing", feature = "jwe"))]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_oauth::testing::{Endpoint, Fault, TestEncryptionKey, TestIssuer};

/// The `DPoP` challenge the example adds to every one (RFC 9449 §7.1): DPoP is allowed by
/// default, with proofs by any asymmetric algorithm.
const DPOP: &str =
    r#"DPoP realm="resource_server", algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA""#;

/// The example binary `cargo test` built next to this test's own.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

/// Runs the `resource_server` example with `envs` (and `LISTEN=127.0.0.1:0`); returns the
/// process and its base URL, once it said it listens.
pub(crate) async fn start(envs: &[(&str, String)]) -> (Child, String) {
    start_example("resource_server", envs).await
}

/// Runs the example `name` with `envs` (and `LISTEN=127.0.0.1:0`); returns the process
/// and its base URL, once it said it listens.
pub(crate) async fn start_example(name: &str, envs: &[(&str, String)]) -> (Child, String) {
    let mut command = Command::new(example(name));
    command.env_clear().env("LISTEN", "127.0.0.1:0").env("RUST_LOG", "warn");
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let url = line.strip_prefix("listening on ").expect("the ready line").to_owned();
    assert!(url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"), "{line}");
    (child, url)
}

/// With `TLS_CERT`, `TLS_KEY` and `TLS_CLIENT_CA` the example serves https, asks for client
/// certificates, and accepts a certificate-bound token (`cnf.x5t#S256`, RFC 8705) only from
/// the client whose certificate it names.
#[cfg(feature = "mtls-rustls")]
#[tokio::test]
async fn the_resource_server_example_serves_https_and_holds_certificate_bound_tokens_to_their_certificate() {
    use reqwest::StatusCode;

    use crate::mtls::{Ca, reqwest_client};
    let issuer = TestIssuer::start().await.unwrap();
    let ca = Ca::new("resource server test CA");
    let (server, alice, mallory) = (ca.server(), ca.client("alice"), ca.client("mallory"));
    let dir = std::env::temp_dir().join(format!("resource-server-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (server.cert_pem(), server.key_pem());
    let (_child, url) = start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("TLS_CERT", write("server.pem", cert)),
        ("TLS_KEY", write("server-key.pem", key)),
        ("TLS_CLIENT_CA", write("ca.pem", ca.pem())),
    ])
    .await;
    assert!(url.starts_with("https://"), "{url}");
    let bound = issuer.mint().claim("cnf", serde_json::json!({"x5t#S256": alice.thumbprint()})).sign();
    let unbound = issuer.mint().sign();
    let status = |identity: Option<&crate::mtls::Credentials>, token: &str| {
        let client = reqwest_client(&ca, identity).build().unwrap();
        let request = client.get(format!("{url}/me")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(Some(&alice), &bound).await, StatusCode::OK);
    assert_eq!(status(Some(&mallory), &bound).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(None, &bound).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(None, &unbound).await, StatusCode::OK, "an unbound token needs no certificate");
    std::fs::remove_dir_all(&dir).unwrap();
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
    // DPoP is allowed by default (`OAUTH_DPOP`): the challenge offers it beside Bearer.
    assert_eq!(anonymous.headers()["www-authenticate"], format!(r#"Bearer realm="resource_server", {DPOP}"#));

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

async fn get_me(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{url}/me")).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn the_resource_server_example_introspects_opaque_tokens() {
    let issuer = TestIssuer::start().await.unwrap();
    let (_child, url) = start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("OAUTH_INTROSPECTION_URL", issuer.introspection_endpoint()),
        ("OAUTH_INTROSPECTION_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID.to_owned()),
        ("OAUTH_INTROSPECTION_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET.to_owned()),
    ])
    .await;

    let opaque = issuer.mint().subject("olga").scope("read").opaque();
    let me = get_me(&url, &opaque).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "olga");
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);
    // The answer is cached: a repeat asks nobody.
    assert_eq!(get_me(&url, &opaque).await.status(), 200);
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);

    // JWTs are still verified locally.
    assert_eq!(get_me(&url, &issuer.mint().sign()).await.status(), 200);
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);

    let unknown = get_me(&url, "not-a-token-this-issuer-knows").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.headers()["www-authenticate"],
        format!(r#"Bearer realm="resource_server", error="invalid_token", {DPOP}"#)
    );

    issuer.set_fault(Endpoint::Introspection, Fault::Status(503));
    let outage = get_me(&url, &issuer.mint_opaque()).await;
    assert_eq!(outage.status(), 503, "an outage is not the token's fault");
    assert!(outage.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn the_resource_server_example_trusts_several_tenants_discovered_on_first_use() {
    let (a, b, stranger) =
        (TestIssuer::start().await.unwrap(), TestIssuer::start().await.unwrap(), TestIssuer::start().await.unwrap());
    let pattern_host = TestIssuer::builder().path_prefix("/tenants/gamma").start().await.unwrap();
    let pattern = format!("http://127.0.0.1:{}/tenants/{{tenant}}", pattern_host.addr().port());
    let (_child, url) = start(&[
        ("OAUTH_ISSUERS", format!("{}, {},{pattern}", a.issuer(), b.issuer())),
        ("OAUTH_AUDIENCE", a.audience().to_owned()),
    ])
    .await;
    assert_eq!(a.requests(Endpoint::OpenIdConfiguration) + b.requests(Endpoint::OpenIdConfiguration), 0);

    let me = get_me(&url, &a.mint().subject("ann").sign()).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "ann");
    assert_eq!(b.requests(Endpoint::OpenIdConfiguration), 0, "B is discovered on its own first token");
    assert_eq!(get_me(&url, &b.mint().sign()).await.status(), 200);
    assert_eq!(get_me(&url, &pattern_host.mint().sign()).await.status(), 200);

    assert_eq!(get_me(&url, &stranger.mint().sign()).await.status(), 401);
    let near_miss = pattern_host.mint().issuer(&format!("{}/x", pattern_host.issuer())).sign();
    assert_eq!(get_me(&url, &near_miss).await.status(), 401);
    assert_eq!(stranger.requests(Endpoint::OpenIdConfiguration) + stranger.requests(Endpoint::Jwks), 0);
}

/// `METRICS=1`: the crate's metrics in Prometheus text at `/metrics`, with their
/// low-cardinality labels and nothing of the tokens, subjects or keys.
#[tokio::test]
async fn the_resource_server_example_serves_metrics_when_asked() {
    let issuer = TestIssuer::start().await.unwrap();
    let (_child, url) = start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("OAUTH_TOKEN_CACHE", "1".to_owned()),
        ("METRICS", "1".to_owned()),
        ("OAUTH_ADMIN_MAX_AGE", "60".to_owned()),
    ])
    .await;
    let admin = |token: String| reqwest::Client::new().get(format!("{url}/admin")).bearer_auth(token).send();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(admin(issuer.mint().scope("admin").claim("auth_time", now).sign()).await.unwrap().status(), 200);
    assert_eq!(admin(issuer.mint().scope("admin").sign()).await.unwrap().status(), 401);
    let token = issuer.mint().subject("mallory-subject").sign();
    assert_eq!(get_me(&url, &token).await.status(), 200);
    assert_eq!(get_me(&url, &token).await.status(), 200, "from the verified-token cache");
    let expired = issuer.mint().expired().sign();
    assert_eq!(get_me(&url, &expired).await.status(), 401);
    let made_up = issuer.mint().header("kid", "made-up-kid-1234").sign();
    assert_eq!(get_me(&url, &made_up).await.status(), 401);

    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        r#"tower_oauth_validations_total{outcome="accepted",reason="none"} 3"#,
        r#"tower_oauth_validations_total{outcome="rejected",reason="time"} 1"#,
        r#"tower_oauth_step_up_checks_total{result="met"} 1"#,
        r#"tower_oauth_step_up_checks_total{result="max_age"} 1"#,
        r#"tower_oauth_validations_total{outcome="rejected",reason="unknown_key"} 1"#,
        "tower_oauth_verified_token_cache_hits_total 1",
        r#"tower_oauth_jwks_fetches_total{result="ok",trigger="start"} 1"#,
        r#"tower_oauth_jwks_fetches_total{result="ok",trigger="unknown_kid"} 1"#,
        r#"tower_oauth_metadata_fetches_total{result="ok"} 1"#,
        "tower_oauth_validation_duration_seconds",
        "tower_oauth_key_wait_seconds",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    for secret in [token.as_str(), "mallory-subject", "made-up-kid-1234", issuer.issuer()] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

/// `OAUTH_INTROSPECTION_AUTH_METHOD`: `post` sends the id and secret in the form, and
/// `private_key_jwt` an assertion signed with the key of `OAUTH_INTROSPECTION_CLIENT_KEY`
/// (no secret needed); an unknown value stops the server before it listens.
#[tokio::test]
async fn the_resource_server_example_authenticates_to_introspection_as_told() {
    use tower_oauth::client::ClientKey;
    let key = ClientKey::generate_for(tower_oauth::Algorithm::ES256).unwrap().with_kid("rs-1");
    let issuer = TestIssuer::builder().client_jwks("orders-api", &key.public_jwk()).start().await.unwrap();
    let key_file = std::env::temp_dir().join(format!("introspection-key-{}.json", std::process::id()));
    std::fs::write(&key_file, key.private_jwk().unwrap().expose()).unwrap();
    let common = || {
        vec![
            ("OAUTH_ISSUER", issuer.issuer().to_owned()),
            ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
            ("OAUTH_INTROSPECTION_URL", issuer.introspection_endpoint()),
        ]
    };

    let mut post = common();
    post.extend([
        ("OAUTH_INTROSPECTION_CLIENT_ID", TestIssuer::DEFAULT_CLIENT_ID.to_owned()),
        ("OAUTH_INTROSPECTION_CLIENT_SECRET", TestIssuer::DEFAULT_CLIENT_SECRET.to_owned()),
        ("OAUTH_INTROSPECTION_AUTH_METHOD", "post".to_owned()),
    ]);
    let (_post_server, post_url) = start(&post).await;
    let me = get_me(&post_url, &issuer.mint().subject("olga").opaque()).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "olga");
    assert_eq!(issuer.requests(Endpoint::Introspection), 1);

    let mut private_key_jwt = common();
    private_key_jwt.extend([
        ("OAUTH_INTROSPECTION_CLIENT_ID", "orders-api".to_owned()),
        ("OAUTH_INTROSPECTION_AUTH_METHOD", "private_key_jwt".to_owned()),
        ("OAUTH_INTROSPECTION_CLIENT_KEY", key_file.display().to_string()),
    ]);
    let (_key_server, key_url) = start(&private_key_jwt).await;
    let me = get_me(&key_url, &issuer.mint().subject("pete").opaque()).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "pete");
    assert_eq!(issuer.requests(Endpoint::Introspection), 2);
    let _ = std::fs::remove_file(&key_file);

    for (method, message) in [
        (
            "magic",
            r#"OAUTH_INTROSPECTION_AUTH_METHOD must be basic, basic_unencoded, post, client_secret_jwt or private_key_jwt, not "magic""#,
        ),
        ("private_key_jwt", "OAUTH_INTROSPECTION_AUTH_METHOD=private_key_jwt needs OAUTH_INTROSPECTION_CLIENT_KEY"),
        (
            "client_secret_jwt",
            "OAUTH_INTROSPECTION_AUTH_METHOD=client_secret_jwt needs OAUTH_INTROSPECTION_CLIENT_SECRET",
        ),
    ] {
        let output = Command::new(example("resource_server"))
            .env_clear()
            .env("LISTEN", "127.0.0.1:0")
            .envs(common())
            .env("OAUTH_INTROSPECTION_CLIENT_ID", "orders-api")
            .env("OAUTH_INTROSPECTION_AUTH_METHOD", method)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{method}: {output:?}");
        assert!(output.stdout.is_empty(), "{method}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("error: {message}")), "{method}: {stderr}");
    }
}

/// With `OAUTH_RESOURCE` the example is discoverable (RFC 9728): it serves its metadata
/// without a token, points every challenge at it, and takes the resource as its audience
/// (`OAUTH_AUDIENCE` unset). `OAUTH_ADMIN_ACR` and `OAUTH_ADMIN_MAX_AGE` ask `/admin` for
/// a step-up (RFC 9470).
#[tokio::test]
async fn the_resource_server_example_is_discoverable_and_asks_admin_for_a_step_up() {
    let issuer = TestIssuer::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let resource = format!("http://127.0.0.1:{port}");
    let (_child, url) = start(&[
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_RESOURCE", resource.clone()),
        ("OAUTH_ADMIN_ACR", "urn:example:mfa, urn:example:hwk".to_owned()),
        ("OAUTH_ADMIN_MAX_AGE", "300".to_owned()),
        ("OAUTH_DPOP", "off".to_owned()),
        ("LISTEN", format!("127.0.0.1:{port}")),
    ])
    .await;
    assert_eq!(url, resource);
    let http = reqwest::Client::new();

    let metadata = http.get(format!("{url}/.well-known/oauth-protected-resource")).send().await.unwrap();
    assert_eq!(metadata.status(), 200);
    assert_eq!(metadata.headers()["content-type"], "application/json");
    let metadata: serde_json::Value = metadata.json().await.unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({
            "resource": resource,
            "authorization_servers": [issuer.issuer()],
            "bearer_methods_supported": ["header"],
            "resource_name": "resource_server example",
        })
    );

    let pointer = format!(r#"resource_metadata="{url}/.well-known/oauth-protected-resource""#);
    let anonymous = http.get(format!("{url}/me")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], format!(r#"Bearer realm="resource_server", {pointer}"#));

    // The resource is the audience, compared after normalisation; the issuer's default
    // audience names another resource.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for aud in [resource.clone(), format!("HTTP://127.0.0.1:{port}/")] {
        assert_eq!(get_me(&url, &issuer.mint().claim("aud", aud.as_str()).sign()).await.status(), 200, "{aud}");
    }
    let elsewhere = get_me(&url, &issuer.mint().sign()).await;
    assert_eq!(elsewhere.status(), 401);
    assert_eq!(
        elsewhere.headers()["www-authenticate"],
        format!(r#"Bearer realm="resource_server", error="invalid_token", {pointer}"#)
    );

    let admin = |acr: Option<&str>, auth_time: Option<u64>, scope: &str| {
        let mut token = issuer.mint().claim("aud", resource.as_str()).scope(scope);
        if let Some(acr) = acr {
            token = token.claim("acr", acr);
        }
        if let Some(auth_time) = auth_time {
            token = token.claim("auth_time", auth_time);
        }
        http.get(format!("{url}/admin")).bearer_auth(token.sign()).send()
    };
    let step_up = format!(
        r#"Bearer realm="resource_server", error="insufficient_user_authentication", acr_values="urn:example:mfa urn:example:hwk", max_age="300", {pointer}"#
    );
    assert_eq!(admin(Some("urn:example:mfa"), Some(now - 10), "admin").await.unwrap().status(), 200);
    assert_eq!(admin(Some("urn:example:hwk"), Some(now), "admin").await.unwrap().status(), 200);
    for (acr, auth_time) in [
        (Some("urn:example:pwd"), Some(now)),
        (None, Some(now)),
        (Some("urn:example:mfa"), Some(now - 301)),
        (Some("urn:example:mfa"), None),
    ] {
        let response = admin(acr, auth_time, "admin").await.unwrap();
        assert_eq!(response.status(), 401, "{acr:?} {auth_time:?}");
        assert_eq!(response.headers()["www-authenticate"], step_up.as_str(), "{acr:?} {auth_time:?}");
    }
    // The scope is checked first: a step-up cannot add one.
    let no_scope = admin(Some("urn:example:pwd"), None, "read").await.unwrap();
    assert_eq!(no_scope.status(), 403);
    assert_eq!(
        no_scope.headers()["www-authenticate"],
        format!(r#"Bearer realm="resource_server", error="insufficient_scope", scope="admin", {pointer}"#)
    );
    // `/me` asks for no step-up.
    assert_eq!(get_me(&url, &issuer.mint().claim("aud", resource.as_str()).sign()).await.status(), 200);
}

#[tokio::test]
async fn the_resource_server_example_refuses_a_resource_that_is_not_a_secure_url() {
    for resource in ["http://api.example.com", "https://api.example.com/#x", "api"] {
        let output = Command::new(example("resource_server"))
            .env_clear()
            .env("OAUTH_ISSUER", "https://idp.example")
            .env("OAUTH_RESOURCE", resource)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{resource}");
    }
}
