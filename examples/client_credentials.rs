//! Calls an API through a reqwest-middleware client that attaches access tokens from a
//! token endpoint, kept fresh by a `TokenCache`.
//!
//! Run with:
//!
//! ```text
//! OAUTH_TOKEN_URL=https://idp.example/oauth2/token OAUTH_CLIENT_ID=my-service OAUTH_CLIENT_SECRET=s3cret \
//!   TARGET_URL=https://api.example/v1/orders REQUESTS=100 CONCURRENCY=8 cargo run --example client_credentials
//! ```
//!
//! Against the embedded test issuer (`cargo run --example test_issuer` prints its URLs) and
//! the `resource_server` example:
//!
//! ```text
//! OAUTH_ISSUER=http://127.0.0.1:PORT OAUTH_CLIENT_ID=test-client OAUTH_CLIENT_SECRET=test-secret \
//!   TARGET_URL=http://127.0.0.1:3000/me cargo run --example client_credentials
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `OAUTH_TOKEN_URL` | the token endpoint; or `OAUTH_ISSUER` to discover it |
//! | `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET` | the client's credentials (the secret for the methods that use one) |
//! | `OAUTH_AUTH_METHOD` | `basic` (default), `post`, `client_secret_jwt` (all three with `OAUTH_CLIENT_SECRET`), `private_key_jwt` (with `OAUTH_CLIENT_KEY`), `tls_client_auth` (with `OAUTH_CLIENT_CERT` and `OAUTH_CLIENT_CERT_KEY`); also `basic_unencoded` (with `OAUTH_CLIENT_SECRET`: Basic without form-encoding the id and secret first, for servers that do not decode them) and `none` (only `client_id`, e.g. for `jwt_bearer`). An unknown value, or a method without what it needs, exits 2 with a message |
//! | `OAUTH_CLIENT_KEY` | with `OAUTH_AUTH_METHOD=private_key_jwt`: a private JWK or PKCS#8 PEM file that signs the client assertions |
//! | `OAUTH_GRANT` | `client_credentials` (default), `refresh_token` (with `OAUTH_REFRESH_TOKEN`), `jwt_bearer` (with `OAUTH_ASSERTION_FILE`, read again at each token request) or `token_exchange` (with `OAUTH_SUBJECT_TOKEN`, an access token; `OAUTH_AUDIENCE` names the target) |
//! | `OAUTH_SCOPE` | optional |
//! | `OAUTH_RESOURCE` | optional RFC 8707 resource(s), comma-separated |
//! | `OAUTH_AUDIENCE` | optional `audience` parameter (Auth0-style servers) |
//! | `TARGET_URL` | the API to call (`GET`) |
//! | `REQUESTS`, `CONCURRENCY` | default 1 and 1 |
//! | `REDIS_URL` | optional: share the token through Redis with every other process that uses the same client, scope, resources and audience (`redis://[:password@]host:port[/db]`) |
//! | `REDIS_TOKEN_KEY` | optional, with `REDIS_URL`: the 32-byte key that encrypts the shared entry, as 64 hex digits or base64; default: derived from `OAUTH_CLIENT_SECRET` (required without one) |
//! | `REDIS_GRANT_ID` | with `REDIS_URL` and an `OAUTH_GRANT` other than `client_credentials`: whose grant it is (a user id, say), so that users' tokens are never mixed |
//! | `OAUTH_DPOP` | `1`: DPoP-bound tokens (RFC 9449), with a proof on the token request and on every API call |
//! | `OAUTH_DPOP_KEY` | optional, with `OAUTH_DPOP=1`: a private JWK file for the DPoP key; default a new ES256 key |
//! | `OAUTH_CLIENT_CERT`, `OAUTH_CLIENT_CERT_KEY` | optional PEM files: the TLS client certificate (and its key) for the token endpoint and the API (RFC 8705: certificate-bound tokens, and `tls_client_auth`) |
//! | `SSL_CERT_FILE` | optional PEM file of extra trusted roots, beside the platform's (a private CA) |
//!
//! With `REDIS_URL`, many processes fetch one token between them (one fetches under a
//! lease; the others take its token), and a Redis that is down or slow only means each
//! process fetches its own:
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 OAUTH_TOKEN_URL=... OAUTH_CLIENT_ID=... OAUTH_CLIENT_SECRET=... \
//!   TARGET_URL=... cargo run --example client_credentials
//! ```
//!
//! Without a client secret: a private key, or the TLS client certificate:
//!
//! ```text
//! OAUTH_AUTH_METHOD=private_key_jwt OAUTH_CLIENT_KEY=client-key.json OAUTH_TOKEN_URL=... OAUTH_CLIENT_ID=... \
//!   TARGET_URL=... cargo run --example client_credentials
//! OAUTH_AUTH_METHOD=tls_client_auth OAUTH_CLIENT_CERT=client.pem OAUTH_CLIENT_CERT_KEY=client-key.pem \
//!   SSL_CERT_FILE=private-ca.pem OAUTH_ISSUER=... OAUTH_CLIENT_ID=... TARGET_URL=... cargo run --example client_credentials
//! ```
//!
//! A workload's token (a JWT from another issuer) traded for one of this server's, and a
//! caller's token exchanged for one to another API:
//!
//! ```text
//! OAUTH_GRANT=jwt_bearer OAUTH_ASSERTION_FILE=/var/run/secrets/tokens/oauth OAUTH_AUTH_METHOD=none \
//!   OAUTH_TOKEN_URL=... OAUTH_CLIENT_ID=... TARGET_URL=... cargo run --example client_credentials
//! OAUTH_GRANT=token_exchange OAUTH_SUBJECT_TOKEN=$TOKEN OAUTH_AUDIENCE=orders-api \
//!   OAUTH_TOKEN_URL=... OAUTH_CLIENT_ID=... OAUTH_CLIENT_SECRET=... TARGET_URL=... cargo run --example client_credentials
//! ```
//!
//! It prints one line per failed request and, last, `{"requests":N,"ok":N,"failed":N}`;
//! it exits non-zero if any request failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use tower_oauth::client::store::{EntryKey, RedisTokenStore, SharedStore};
use tower_oauth::client::{
    AssertionSource, AuthMethod, ClientCredential, ClientKey, TokenCache, TokenEndpoint, TokenExchange,
};
use tower_oauth::reqwest::ClientCredentialsMiddleware;
use tower_oauth::{BuildError, DpopKey};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(summary) => {
            println!(r#"{{"requests":{},"ok":{},"failed":{}}}"#, summary.requests, summary.ok, summary.failed);
            if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

struct Config {
    endpoint: TokenEndpoint,
    http: reqwest::Client,
    redis: Option<Redis>,
    target: String,
    requests: u64,
    concurrency: u64,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, Error> {
    var(name).ok_or_else(|| format!("{name} is required").into())
}

fn count(name: &str, default: u64) -> Result<u64, Error> {
    match var(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} must be a positive integer, not {value:?}").into()),
        },
    }
}

/// Where and how the token is shared.
struct Redis {
    url: String,
    key: EntryKey,
    grant_id: Option<String>,
}

/// `REDIS_TOKEN_KEY`: 32 bytes as 64 hex digits or base64.
fn entry_key(value: &str) -> Result<EntryKey, Error> {
    let value = value.trim();
    let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..64).step_by(2).map(|i| u8::from_str_radix(&value[i..i + 2], 16)).collect::<Result<Vec<u8>, _>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value))
            .map_err(|_| "REDIS_TOKEN_KEY must be 32 bytes as 64 hex digits or base64")?
    };
    EntryKey::from_slice(&bytes).ok_or_else(|| "REDIS_TOKEN_KEY must be exactly 32 bytes".into())
}

/// The HTTP client for the token endpoint and the API: the platform's roots plus
/// `SSL_CERT_FILE`'s, and the TLS client identity when one is configured.
fn http_client() -> Result<reqwest::Client, Error> {
    let read = |name: &str, path: &str| std::fs::read(path).map_err(|e| format!("{name}: cannot read {path}: {e}"));
    let mut builder = reqwest::Client::builder();
    if let Some(path) = var("SSL_CERT_FILE") {
        let roots = reqwest::Certificate::from_pem_bundle(&read("SSL_CERT_FILE", &path)?)
            .map_err(|e| format!("SSL_CERT_FILE: {path} is not a PEM bundle: {e}"))?;
        builder = builder.tls_certs_merge(roots);
    }
    match (var("OAUTH_CLIENT_CERT"), var("OAUTH_CLIENT_CERT_KEY")) {
        (Some(cert), Some(key)) => {
            let mut pem = read("OAUTH_CLIENT_CERT", &cert)?;
            pem.push(b'\n');
            pem.extend(read("OAUTH_CLIENT_CERT_KEY", &key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("OAUTH_CLIENT_CERT, OAUTH_CLIENT_CERT_KEY: not a certificate and key: {e}"))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err("OAUTH_CLIENT_CERT and OAUTH_CLIENT_CERT_KEY go together".into()),
    }
    Ok(builder.build()?)
}

/// How the client authenticates (`OAUTH_AUTH_METHOD`) and with what: the secret, the
/// private key of `OAUTH_CLIENT_KEY`, the TLS client certificate, or nothing.
fn client_auth(secret: Option<&str>) -> Result<(AuthMethod, ClientCredential), Error> {
    let given = var("OAUTH_AUTH_METHOD").map(|m| m.trim().to_owned());
    let method = given.clone().unwrap_or_else(|| "basic".to_owned());
    let with_secret = |chosen: AuthMethod| match secret {
        Some(secret) => Ok((chosen, ClientCredential::from(secret))),
        None if given.is_none() => {
            Err("OAUTH_CLIENT_SECRET is required (OAUTH_AUTH_METHOD is basic by default)".into())
        }
        None => Err(format!("OAUTH_AUTH_METHOD={method} needs OAUTH_CLIENT_SECRET").into()),
    };
    match method.as_str() {
        "basic" => with_secret(AuthMethod::ClientSecretBasic),
        "basic_unencoded" => with_secret(AuthMethod::ClientSecretBasicUnencoded),
        "post" => with_secret(AuthMethod::ClientSecretPost),
        "client_secret_jwt" => with_secret(AuthMethod::ClientSecretJwt),
        "private_key_jwt" => {
            let path = var("OAUTH_CLIENT_KEY").ok_or("OAUTH_AUTH_METHOD=private_key_jwt needs OAUTH_CLIENT_KEY")?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("OAUTH_CLIENT_KEY: cannot read {path}: {e}"))?;
            let key = ClientKey::from_file_contents(&text).map_err(|e| format!("OAUTH_CLIENT_KEY: {path}: {e}"))?;
            Ok((AuthMethod::PrivateKeyJwt, ClientCredential::Key(key)))
        }
        "tls_client_auth" => {
            if var("OAUTH_CLIENT_CERT").is_none() || var("OAUTH_CLIENT_CERT_KEY").is_none() {
                return Err(
                    "OAUTH_AUTH_METHOD=tls_client_auth needs OAUTH_CLIENT_CERT and OAUTH_CLIENT_CERT_KEY".into()
                );
            }
            Ok((AuthMethod::TlsClientAuth, ClientCredential::TlsCertificate))
        }
        "none" => Ok((AuthMethod::None, ClientCredential::None)),
        other => Err(format!(
            "OAUTH_AUTH_METHOD must be basic, basic_unencoded, post, client_secret_jwt, private_key_jwt, \
             tls_client_auth or none, not {other:?}"
        )
        .into()),
    }
}

impl Config {
    fn from_env() -> Result<Config, Error> {
        let http = http_client()?;
        let id = required("OAUTH_CLIENT_ID")?;
        let secret = var("OAUTH_CLIENT_SECRET");
        let (method, credential) = client_auth(secret.as_deref())?;
        let mut builder = match (var("OAUTH_TOKEN_URL"), var("OAUTH_ISSUER")) {
            (Some(url), _) => TokenEndpoint::builder(url, id, credential),
            (None, Some(issuer)) => TokenEndpoint::discover(issuer, id, credential),
            (None, None) => return Err("OAUTH_TOKEN_URL or OAUTH_ISSUER is required".into()),
        };
        builder = builder.auth_method(method);
        builder = match var("OAUTH_GRANT").as_deref().map(str::trim) {
            None | Some("client_credentials") => builder,
            Some("refresh_token") => builder.refresh_token(
                var("OAUTH_REFRESH_TOKEN").ok_or("OAUTH_GRANT=refresh_token needs OAUTH_REFRESH_TOKEN")?,
            ),
            Some("jwt_bearer") => {
                let path = var("OAUTH_ASSERTION_FILE").ok_or("OAUTH_GRANT=jwt_bearer needs OAUTH_ASSERTION_FILE")?;
                // Read again at each token request (a rotated file is picked up); checked
                // once here so that a wrong path is a clear error at start.
                std::fs::metadata(&path).map_err(|e| format!("OAUTH_ASSERTION_FILE: cannot read {path}: {e}"))?;
                builder.jwt_bearer(AssertionSource::file(path))
            }
            Some("token_exchange") => builder.token_exchange(TokenExchange::access_token(
                var("OAUTH_SUBJECT_TOKEN").ok_or("OAUTH_GRANT=token_exchange needs OAUTH_SUBJECT_TOKEN")?,
            )),
            Some(other) => {
                return Err(format!(
                    "OAUTH_GRANT must be client_credentials, refresh_token, jwt_bearer or token_exchange, not {other:?}"
                )
                .into());
            }
        };
        if let Some(scope) = var("OAUTH_SCOPE") {
            builder = builder.scope(&scope);
        }
        if let Some(resources) = var("OAUTH_RESOURCE") {
            for resource in resources.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                builder = builder.resource(resource);
            }
        }
        if let Some(audience) = var("OAUTH_AUDIENCE") {
            builder = builder.audience(audience);
        }
        if var("SSL_CERT_FILE").is_some() || var("OAUTH_CLIENT_CERT").is_some() {
            // The token endpoint needs the same roots and identity as the API; otherwise
            // it keeps the library's default client (no redirect to plain http).
            builder = builder.http_client(http.clone());
        }
        match var("OAUTH_DPOP").as_deref().map(str::trim) {
            None | Some("0") => {}
            Some("1") => {
                let key = match var("OAUTH_DPOP_KEY") {
                    Some(path) => {
                        let jwk =
                            std::fs::read(&path).map_err(|e| format!("OAUTH_DPOP_KEY: cannot read {path}: {e}"))?;
                        DpopKey::from_jwk(&jwk).map_err(|e| format!("OAUTH_DPOP_KEY: {e}"))?
                    }
                    None => DpopKey::generate()?,
                };
                builder = builder.dpop(key);
            }
            Some(other) => return Err(format!("OAUTH_DPOP must be 1 or 0, not {other:?}").into()),
        }
        let redis = match var("REDIS_URL") {
            None => None,
            Some(url) => Some(Redis {
                url,
                key: match var("REDIS_TOKEN_KEY") {
                    Some(key) => entry_key(&key)?,
                    None => EntryKey::derive_from_client_secret(
                        secret.as_deref().ok_or("REDIS_URL without OAUTH_CLIENT_SECRET needs REDIS_TOKEN_KEY")?,
                    ),
                },
                grant_id: var("REDIS_GRANT_ID"),
            }),
        };
        Ok(Config {
            endpoint: builder.build()?,
            http,
            redis,
            target: required("TARGET_URL")?,
            requests: count("REQUESTS", 1)?,
            concurrency: count("CONCURRENCY", 1)?,
        })
    }
}

struct Summary {
    requests: u64,
    ok: u64,
    failed: u64,
}

async fn run(config: Config) -> Result<Summary, Error> {
    let mut cache = TokenCache::builder(config.endpoint);
    if let Some(redis) = config.redis {
        let mut store = SharedStore::new(RedisTokenStore::new(&redis.url)?, redis.key);
        if let Some(grant_id) = redis.grant_id {
            store = store.grant_id(grant_id);
        }
        cache = cache.store(store);
    }
    // The library refuses a shared user-delegated grant without a grant id; name the
    // variable that sets it.
    let cache = cache.build().map_err(|error| -> Error {
        match error {
            BuildError::MissingGrantId => format!(
                "REDIS_URL with OAUTH_GRANT={} needs REDIS_GRANT_ID (whose grant it is)",
                var("OAUTH_GRANT").as_deref().map_or("refresh_token", str::trim)
            )
            .into(),
            other => other.into(),
        }
    })?;
    let client =
        reqwest_middleware::ClientBuilder::new(config.http).with(ClientCredentialsMiddleware::new(cache)).build();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency.min(config.requests) {
        let (client, target, next, ok, failed) =
            (client.clone(), config.target.clone(), next.clone(), ok.clone(), failed.clone());
        let total = config.requests;
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                match client.get(&target).send().await {
                    Ok(response) if response.status().is_success() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        println!("request {} failed: {}", n + 1, response.status());
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        println!("request {} failed: {}", n + 1, error_chain(&error));
                    }
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    Ok(Summary { requests: ok + failed, ok, failed })
}

/// The error and its causes on one line (none of them holds a secret or a token).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
