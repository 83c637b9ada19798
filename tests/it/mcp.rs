//! The `mcp_server` example's contract, run as a real process against independent
//! implementations over real sockets on 127.0.0.1: node-oidc-provider (`tests/oidc/idp.mjs`
//! in its MCP mode) as the authorization server, and the official MCP TypeScript SDK
//! (`tests/oidc/mcp_client.mjs`) as the client, given nothing but the server's URL and its
//! client credentials.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(feature = "testing", feature = "jwe", feature = "axum"))]

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::oidc_idp::{Error, Idp, MCP_CLIENT, Mode, TestResult, http_client, oidc_dir, segment};

/// The scope the server requires, and offers in its challenges and metadata.
const SCOPE: &str = "mcp:tools";
/// How long the SDK client may take, Node's start-up, discovery and the token included.
const SDK_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The IdP and the example, running: the IdP grants `mcp:tools read` for the server's
/// resource and `mcp:tools` for two others of the same host, which the server must refuse.
struct McpServer {
    idp: Idp,
    /// `http://127.0.0.1:PORT/mcp`: the URL the server is called by, its resource
    /// identifier, and the audience its tokens must name.
    resource: String,
    /// `http://127.0.0.1:PORT`.
    origin: String,
    /// Resources of the IdP's that are not this server's: another path on its origin, and
    /// its own URL with the host written `localhost`.
    others: [String; 2],
    _server: Child,
}

impl McpServer {
    async fn start() -> Result<McpServer, Error> {
        // The example must be told its public URL, port included, before it binds that
        // port: take one nothing listens on, and give it both ways.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let origin = format!("http://127.0.0.1:{port}");
        let resource = format!("{origin}/mcp");
        let others = [format!("{origin}/other"), format!("http://localhost:{port}/mcp")];
        let resources = format!("{resource} {SCOPE} read, {} {SCOPE}, {} {SCOPE}", others[0], others[1]);
        let idp = Idp::start_with(Mode::Default, &[("IDP_MCP_RESOURCES", &resources)]).await?;
        let (server, url) = crate::resource_server::start_example(
            "mcp_server",
            &[
                ("OAUTH_ISSUER", idp.issuer.clone()),
                ("OAUTH_RESOURCE", resource.clone()),
                ("OAUTH_SCOPES", SCOPE.to_owned()),
                ("LISTEN", format!("127.0.0.1:{port}")),
            ],
        )
        .await;
        assert_eq!(url, origin, "the example listens where it was told");
        Ok(McpServer { idp, resource, origin, others, _server: server })
    }

    /// Where the resource's metadata is (RFC 9728 §3.1: the well-known prefix, then the
    /// resource's path).
    fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.origin)
    }

    /// The metadata document the example serves.
    fn metadata(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": [self.idp.issuer],
            "scopes_supported": [SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "tower-oauth MCP example",
        })
    }
}

/// Runs `tests/oidc/mcp_client.mjs` against `url` as `client`, and returns the one JSON
/// line it prints. Its stderr goes through the test harness's capture.
async fn sdk_client(url: &str, client: (&str, &str)) -> Result<Value, Error> {
    let dir = oidc_dir();
    if !dir.join("node_modules").join("@modelcontextprotocol").join("sdk").is_dir() {
        return Err(format!(
            "{} has no node_modules/@modelcontextprotocol/sdk: run `scripts/test` (it runs `npm ci` there), \
             or `npm ci --no-audit --no-fund` in that directory",
            dir.display()
        )
        .into());
    }
    let run = Command::new("node")
        .arg(dir.join("mcp_client.mjs"))
        .arg(url)
        .current_dir(&dir)
        .env_remove("MCP_URL")
        .env("MCP_CLIENT_ID", client.0)
        .env("MCP_CLIENT_SECRET", client.1)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SDK_CLIENT_TIMEOUT, run)
        .await
        .map_err(|_| format!("mcp_client.mjs did not finish within {SDK_CLIENT_TIMEOUT:?}"))?
        .map_err(|e| format!("could not run `node` (install Node.js >= 20; scripts/test checks for it): {e}"))?;
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        eprintln!("[mcp_client.mjs] {line}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().ok_or_else(|| format!("mcp_client.mjs printed nothing ({})", output.status))?;
    let report: Value = serde_json::from_str(last).map_err(|e| format!("mcp_client.mjs printed {last:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("mcp_client.mjs failed ({}): {report}", output.status).into());
    }
    Ok(report)
}

/// An MCP `initialize` request to `url`, with `token` as a bearer credential if given:
/// the status, the challenge and the body.
async fn initialize(url: &str, token: Option<&str>) -> Result<(StatusCode, Option<String>, String), Error> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "tower-oauth-test", "version": "0"},
        },
    });
    let mut request =
        http_client().post(url).header(reqwest::header::ACCEPT, "application/json, text/event-stream").json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await?;
    let status = response.status();
    let challenge =
        response.headers().get(reqwest::header::WWW_AUTHENTICATE).map(|v| v.to_str().map(str::to_owned)).transpose()?;
    // A 200 answers in an event stream that stays open after the result: read until it.
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), response.chunk()).await?? {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("\"result\"") || text.contains("\"error\"") {
            break;
        }
    }
    Ok((status, challenge, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_sdk_given_only_the_url_and_client_credentials_lists_and_calls_the_tool() -> TestResult {
    let server = McpServer::start().await?;
    let report = sdk_client(&server.resource, MCP_CLIENT).await?;

    let tools = report["tools"].as_array().ok_or_else(|| format!("no tools in {report}"))?;
    assert_eq!(tools.len(), 1, "{report}");
    assert_eq!(tools[0]["name"], "whoami", "{report}");
    // The caller as its token names it: the client, and every scope the IdP granted,
    // `read` included, which the server does not require.
    let result = &report["result"];
    let caller = json!({"sub": MCP_CLIENT.0, "scopes": [SCOPE, "read"]});
    assert_eq!((&result["isError"], &result["structuredContent"]), (&json!(false), &caller), "{report}");
    let text = result["content"][0]["text"].as_str().ok_or_else(|| format!("no text content in {report}"))?;
    assert_eq!(serde_json::from_str::<Value>(text)?, caller, "the text content says the same");

    // The SDK found its way alone: one 401, whose challenge named the metadata, which named
    // the IdP, which gave a token for this server; that one token served every request.
    assert_eq!(report["unauthorized"], 1, "{report}");
    let requests: Vec<&str> = report["requests"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(requests.first(), Some(&format!("POST {} 401", server.resource).as_str()), "{report}");
    assert_eq!(requests.get(1), Some(&format!("GET {} 200", server.metadata_url()).as_str()), "{report}");
    let token_endpoint = format!("{}/token", server.idp.issuer);
    let token_request = json!({
        "url": token_endpoint,
        "grant_type": "client_credentials",
        "resource": server.resource,
        "scope": null,
    });
    assert_eq!(report["token_requests"], json!([token_request]), "{report}");
    assert_eq!(report["token"]["scope"], format!("{SCOPE} read"), "{report}");

    // And the SDK's own discovery functions, run apart from the connection.
    let discovery = &report["discovery"];
    let challenge = json!({"resource_metadata": server.metadata_url(), "scope": SCOPE});
    assert_eq!(discovery["challenge"], challenge, "{report}");
    let metadata = server.metadata();
    for found in ["from_challenge", "path_aware", "root"] {
        assert_eq!(discovery[found], metadata, "{found}: {report}");
    }
    assert_eq!(discovery["resource_allowed"], true, "{report}");
    let authorization_server = &discovery["authorization_server"];
    assert_eq!(authorization_server["issuer"], server.idp.issuer.as_str(), "{report}");
    assert_eq!(authorization_server["token_endpoint"], token_endpoint, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_idp_minted_for_another_resource_is_refused_with_the_metadata_url() -> TestResult {
    let server = McpServer::start().await?;
    for other in &server.others {
        let token = server.idp.token(MCP_CLIENT, other, SCOPE).await?;
        assert_eq!(segment(&token, 1)["aud"], other.as_str());
        let (status, challenge, _) = initialize(&server.resource, Some(&token)).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a token for {other}");
        let challenge = challenge.ok_or("no challenge")?;
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
        assert!(challenge.contains(&format!(r#"resource_metadata="{}""#, server.metadata_url())), "{challenge}");
    }

    // The same client, the same scope, this server's resource: in.
    let token = server.idp.token(MCP_CLIENT, &server.resource, SCOPE).await?;
    let (status, _, body) = initialize(&server.resource, Some(&token)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""name":"tower-oauth-mcp-example""#), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_the_server_without_its_scope_gets_403_insufficient_scope() -> TestResult {
    let server = McpServer::start().await?;
    let token = server.idp.token(MCP_CLIENT, &server.resource, "read").await?;
    let (status, challenge, _) = initialize(&server.resource, Some(&token)).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The route's scope, and the metadata as in every challenge.
    assert_eq!(
        challenge.ok_or("no challenge")?,
        format!(r#"Bearer error="insufficient_scope", scope="{SCOPE}", resource_metadata="{}""#, server.metadata_url())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_is_served_without_a_token_at_both_well_known_urls() -> TestResult {
    let server = McpServer::start().await?;
    let http = http_client();
    for url in [server.metadata_url(), format!("{}/.well-known/oauth-protected-resource", server.origin)] {
        let response = http.get(&url).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.to_str()).transpose()?;
        assert_eq!(content_type, Some("application/json"), "{url}");
        assert_eq!(response.json::<Value>().await?, server.metadata(), "{url}");
    }

    // The MCP endpoint itself wants a token, and its challenge points at the metadata.
    let (status, challenge, _) = initialize(&server.resource, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let expected = format!(r#"Bearer scope="{SCOPE}", resource_metadata="{}""#, server.metadata_url());
    assert_eq!(challenge.as_deref(), Some(expected.as_str()));
    Ok(())
}
