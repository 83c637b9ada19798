//! A Model Context Protocol server (rmcp's streamable HTTP transport) behind
//! `BearerAuthLayer`, with its protected resource metadata (RFC 9728): an MCP client that
//! knows only its URL and its own client credentials finds the authorization server, gets a
//! token for this server, and calls its one tool, `whoami`, which answers with the caller's
//! `sub` and scopes.
//!
//! Run with:
//! `OAUTH_ISSUER=https://idp.example OAUTH_RESOURCE=http://127.0.0.1:3000/mcp OAUTH_SCOPES=mcp:tools cargo run --example mcp_server`
//!
//! | variable | meaning |
//! |---|---|
//! | `OAUTH_ISSUER` | the trusted issuer (discovery); the metadata names it in `authorization_servers` |
//! | `OAUTH_RESOURCE` | this server's public URL, https (or http on loopback): its resource identifier and the audience tokens must name; MCP is served at its path (`/mcp` above) |
//! | `OAUTH_SCOPES` | the scopes a token needs, separated by spaces or commas (none by default); challenges and the metadata offer them |
//! | `LISTEN` | default `127.0.0.1:3000` |
//!
//! It prints `listening on http://ADDR` once it accepts connections. `OAUTH_RESOURCE` is
//! what clients call, so its port is `LISTEN`'s unless a proxy stands in front, and rmcp
//! serves only requests whose `Host` is its host (against DNS rebinding). Then:
//! ```text
//! curl -i -X POST 127.0.0.1:3000/mcp     # 401, WWW-Authenticate: Bearer scope="mcp:tools", resource_metadata="http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp"
//! curl -i 127.0.0.1:3000/.well-known/oauth-protected-resource/mcp   # the metadata, no token needed
//! curl -i -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
//!   -H 'Accept: application/json, text/event-stream' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}' \
//!   127.0.0.1:3000/mcp
//! ```
//! `$TOKEN` must be a token of `OAUTH_ISSUER`'s for `OAUTH_RESOURCE` (RFC 8707 `resource`)
//! with the scopes: one minted for another resource is refused (401 `invalid_token`), one
//! without a scope gets 403 `insufficient_scope`.
//!
//! An MCP client made of the official TypeScript SDK alone, given the URL and client
//! credentials, does the rest by itself: `node tests/oidc/mcp_client.mjs
//! http://127.0.0.1:3000/mcp`, with `MCP_CLIENT_ID` and `MCP_CLIENT_SECRET`.

use std::process::ExitCode;

use axum::Router;
use http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Json, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Serialize;
use tower_oauth::bearer::RequireScopeLayer;
use tower_oauth::resource::ProtectedResourceMetadata;
use tower_oauth::{BearerAuthLayer, Claims, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp_server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &'static str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is required"))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = required("OAUTH_ISSUER")?;
    let resource = required("OAUTH_RESOURCE")?;
    let scopes: Vec<String> = var("OAUTH_SCOPES")
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let url = url::Url::parse(&resource).map_err(|e| format!("OAUTH_RESOURCE: {resource} is not a URL: {e}"))?;
    let host = url.host_str().ok_or("OAUTH_RESOURCE has no host")?.to_owned();

    // The resource identifier is the audience: a token minted for any other resource of
    // the same issuer is refused.
    let validator = Validator::builder().issuer(&issuer).resource(resource.as_str()).build()?;
    // MCP authorization: a 401 names the metadata (`resource_metadata`) and the scopes to
    // ask for (`scope`), which the metadata lists as well.
    let auth = BearerAuthLayer::new(validator).challenge_scope(&scopes);
    let metadata = ProtectedResourceMetadata::from_layer(&auth)?.resource_name("tower-oauth MCP example").build()?;

    // rmcp checks `Host` against a list (DNS rebinding): the resource's host, any port.
    let config = StreamableHttpServerConfig::default().with_allowed_hosts([host]);
    let mcp = StreamableHttpService::new(|| Ok(Whoami::new()), LocalSessionManager::default().into(), config);
    let app = Router::new()
        .route_service(url.path(), mcp)
        .route_layer(RequireScopeLayer::new(&scopes))
        .layer(auth)
        // Beside the bearer layer, not behind it: clients read it before they have a token.
        .merge(metadata.router());

    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The MCP server: one tool.
#[derive(Debug, Clone)]
struct Whoami {
    tool_router: ToolRouter<Whoami>,
}

/// What `whoami` answers: the caller, as its validated access token names it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct Caller {
    /// `sub`: whom the token is about (for a client_credentials token, the client).
    sub: Option<String>,
    /// The scopes the token grants.
    scopes: Vec<String>,
}

#[tool_router]
impl Whoami {
    fn new() -> Whoami {
        Whoami { tool_router: Whoami::tool_router() }
    }

    /// rmcp hands the tool the HTTP request's parts, whose extensions hold the claims
    /// `BearerAuthLayer` validated for this very request.
    #[tool(description = "The caller as its access token names it: its sub and the scopes it was granted.")]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<Json<Caller>, ErrorData> {
        let claims = parts.extensions.get::<Claims>().ok_or_else(|| {
            ErrorData::internal_error("no validated claims: is BearerAuthLayer in front of the MCP service?", None)
        })?;
        Ok(Json(Caller {
            sub: claims.subject().map(str::to_owned),
            scopes: claims.scopes().iter().map(str::to_owned).collect(),
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tower-oauth-mcp-example", env!("CARGO_PKG_VERSION")))
            .with_instructions("Call `whoami` to see who your access token says you are.")
    }
}
