//! The embedded test issuer as a standalone OAuth 2.0 authorization server.
//!
//! Run with: cargo run --example test_issuer (the `testing` feature; the crate's own
//! dev-dependencies turn it on)
//!
//! `LISTEN` sets the address (default `127.0.0.1:0`, a free port) and `TOKEN_LIFETIME` how
//! long its tokens live, in seconds (default 300). It prints its URLs, a sample access
//! token, that token's lifetime and the `curl` line that gets a fresh one; then, with the
//! URLs it printed:
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
use std::time::Duration;

use tower_oauth::testing::TestIssuer;

/// The test issuer's own default (`TestIssuerBuilder::token_lifetime`).
const DEFAULT_TOKEN_LIFETIME: u64 = 300;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|error| format!("LISTEN must be an address like 127.0.0.1:8080: {error}"))?;
    let lifetime = match std::env::var("TOKEN_LIFETIME") {
        Ok(seconds) => {
            seconds.parse().map_err(|error| format!("TOKEN_LIFETIME must be a number of seconds: {error}"))?
        }
        Err(_) => DEFAULT_TOKEN_LIFETIME,
    };
    let issuer = TestIssuer::builder().bind(listen).token_lifetime(Duration::from_secs(lifetime)).start().await?;

    println!("issuer: {}", issuer.issuer());
    println!("token endpoint: {}", issuer.token_endpoint());
    println!("jwks: {}", issuer.jwks_uri());
    println!("client: {} / {}", TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET);
    println!("audience: {}", issuer.audience());
    println!("sample access token: {}", issuer.mint().sign());
    println!("token lifetime: {lifetime} s (the sample token, and every token the token endpoint issues)");
    println!("a fresh token from the token endpoint:");
    println!(
        "  curl -s -u {}:{} -d grant_type=client_credentials {}",
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
        issuer.token_endpoint()
    );

    tokio::signal::ctrl_c().await?;
    Ok(())
}
