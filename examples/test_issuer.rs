//! The embedded test issuer as a standalone OAuth 2.0 authorization server.
//!
//! Run with: cargo run --example test_issuer --features testing
//!
//! `LISTEN` sets the address (default `127.0.0.1:0`, a free port). Then, with the
//! URLs it prints:
//!
//! ```text
//! curl -s http://127.0.0.1:PORT/.well-known/openid-configuration
//! curl -s http://127.0.0.1:PORT/jwks
//! curl -s -u test-client:test-secret -d grant_type=client_credentials -d scope=read \
//!      http://127.0.0.1:PORT/token
//! ```
//!
//! Stop it with Ctrl-C.

use std::net::SocketAddr;

use tower_oauth::testing::TestIssuer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|error| format!("LISTEN must be an address like 127.0.0.1:8080: {error}"))?;
    let issuer = TestIssuer::builder().bind(listen).start().await?;

    println!("issuer: {}", issuer.issuer());
    println!("token endpoint: {}", issuer.token_endpoint());
    println!("jwks: {}", issuer.jwks_uri());
    println!("client: {} / {}", TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET);
    println!("audience: {}", issuer.audience());
    println!("sample access token: {}", issuer.mint().sign());

    tokio::signal::ctrl_c().await?;
    Ok(())
}
