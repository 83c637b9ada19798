//! An independent IdP for the interoperability tests: node-oidc-provider (npm `oidc-provider`,
//! pinned in `tests/oidc/package-lock.json`), run by `tests/oidc/idp.mjs` on 127.0.0.1; and
//! calls to the API under test (served by `api::claims_api`).
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type TestResult = Result<(), Error>;

// The resource servers (RFC 8707 `resource`) and clients `idp.mjs` configures.

/// The plain RS256 resource (a compact JWS access token).
pub(crate) const API: &str = "https://api.example.test";
/// The plain ES256 resource.
pub(crate) const API_ES256: &str = "https://es256.example.test";
/// The encrypted resource: JWS nested in a JWE, with the key's `kid` in the JWE header.
pub(crate) const API_JWE: &str = "https://jwe.example.test";
/// The same, without a `kid` in the JWE header.
pub(crate) const API_JWE_NO_KID: &str = "https://jwe-nokid.example.test";
pub(crate) const CLIENT: (&str, &str) = ("rs-test", "rs-secret");
/// Every character here must be form-urlencoded in Basic auth (RFC 6749 §2.3.1).
pub(crate) const SPECIAL_CLIENT: (&str, &str) = ("svc:special", "p@ss:w+rd%/ &=");
/// DPoP mode only: the client whose tokens must be DPoP-bound (`dpop_bound_access_tokens`).
pub(crate) const DPOP_CLIENT: (&str, &str) = ("rs-dpop", "dpop-secret");
/// Mutual-TLS mode only: the client authenticated by its secret whose tokens are bound to
/// its certificate.
pub(crate) const MTLS_BOUND_CLIENT: (&str, &str) = ("rs-mtls-bound", "mtls-secret");
/// Opaque mode only: the resource whose access tokens are opaque.
pub(crate) const API_OPAQUE: &str = "https://opaque.example.test";
/// Opaque mode only: the resource server's credentials at the introspection endpoint,
/// with `client_secret_basic` and with `client_secret_post`.
pub(crate) const INTROSPECT_CLIENT: (&str, &str) = ("rs-introspect", "introspect-secret");
pub(crate) const INTROSPECT_POST_CLIENT: (&str, &str) = ("rs-introspect-post", "introspect-secret");
/// MCP mode only (`IDP_MCP_RESOURCES`): a client given nothing but its credentials, as an
/// MCP client is.
pub(crate) const MCP_CLIENT: (&str, &str) = ("mcp-client", "mcp-secret");

/// How `idp.mjs` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// JWT access tokens only.
    Default,
    /// Also opaque access tokens for [`API_OPAQUE`] and the introspection endpoint
    /// (`IDP_OPAQUE=1`).
    Opaque,
}

/// The settings of `idp.mjs` that [`IdpProcess::start_with`] passes only when given.
const IDP_SETTINGS: [&str; 10] = [
    "IDP_DPOP",
    "IDP_DPOP_NONCE",
    "IDP_TLS_CERT",
    "IDP_TLS_KEY",
    "IDP_TLS_CLIENT_CA",
    "IDP_MTLS_CLIENT_DN",
    "IDP_CLIENT_JWKS",
    "IDP_MTLS_SELF_SIGNED_CERT",
    "IDP_MTLS_ALIASES",
    "IDP_MCP_RESOURCES",
];

/// How long the IdP may take to print its `ISSUER=` line (Node start-up, key generation).
pub(crate) const IDP_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Node has been seen, rarely, to stall before the provider is built (between loading
/// oidc-provider and generating its keys), never twice in a row: a second, fresh process
/// is tried before the test fails. The first failure is still printed.
const IDP_START_ATTEMPTS: usize = 2;
/// Any one HTTP exchange.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("oidc")
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().expect("a plain HTTP client builds")
}

/// The IdP process; killed when dropped (and it exits by itself when its stdin closes).
pub(crate) struct IdpProcess {
    pub(crate) issuer: String,
    _stdin: ChildStdin,
    _child: Child,
}

impl IdpProcess {
    /// Runs `node tests/oidc/idp.mjs` and waits for the `ISSUER=` line it prints once it
    /// listens. Its stderr goes through the test harness's capture (shown when a test fails).
    pub(crate) async fn start() -> Result<IdpProcess, Error> {
        IdpProcess::start_in(Mode::Default).await
    }

    /// [`start`](Self::start) in `mode`.
    pub(crate) async fn start_in(mode: Mode) -> Result<IdpProcess, Error> {
        IdpProcess::start_with(mode, &[]).await
    }

    /// [`start_in`](Self::start_in) with more of `idp.mjs`'s settings in its environment:
    /// `IDP_DPOP`, `IDP_DPOP_NONCE`, the `IDP_TLS_*` files (then the issuer is https),
    /// `IDP_MTLS_CLIENT_DN`, `IDP_CLIENT_JWKS`, `IDP_MTLS_SELF_SIGNED_CERT`,
    /// `IDP_MTLS_ALIASES` and `IDP_MCP_RESOURCES`. Whatever of these the test process has is
    /// not passed on.
    pub(crate) async fn start_with(mode: Mode, env: &[(&str, &str)]) -> Result<IdpProcess, Error> {
        let mut attempt = 1;
        loop {
            match IdpProcess::start_once(mode, env).await {
                Ok(process) => return Ok(process),
                Err(error) if attempt < IDP_START_ATTEMPTS && !error.to_string().contains("node_modules") => {
                    eprintln!("the IdP failed to start (attempt {attempt}), trying a fresh process: {error}");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn start_once(mode: Mode, env: &[(&str, &str)]) -> Result<IdpProcess, Error> {
        let dir = oidc_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            return Err(format!(
                "{} has no node_modules/oidc-provider: run `scripts/test` (it runs `npm ci` there), \
                 or `npm ci --no-audit --no-fund` in that directory",
                dir.display()
            )
            .into());
        }
        let mut command = Command::new("node");
        match mode {
            Mode::Default => command.env_remove("IDP_OPAQUE"),
            Mode::Opaque => command.env("IDP_OPAQUE", "1"),
        };
        for name in IDP_SETTINGS {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let tls = env.iter().any(|(name, _)| *name == "IDP_TLS_CERT");
        let mut child = command
            .arg(dir.join("idp.mjs"))
            .current_dir(&dir)
            .env_remove("IDP_PORT")
            .env_remove("IDP_IGNORE_STDIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not run `node` (install Node.js >= 20; scripts/test checks for it): {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let pid = child.id().unwrap_or_default();

        // The IdP's log, through the test harness's capture: shown when a test fails.
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[idp pid {pid}] {line}");
                sink.lock().expect("log lock").push(line);
            }
        });

        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(IDP_START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(issuer) = line.strip_prefix("ISSUER=") {
                    return Ok(Some(issuer.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let issuer = match issuer {
            Ok(Ok(Some(issuer))) => issuer,
            other => {
                // Let a crashed IdP finish writing its stderr before quoting it.
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let log = log.lock().expect("log lock").join("\n");
                return Err(format!(
                    "the IdP did not announce its issuer within {IDP_START_TIMEOUT:?} ({other:?}, exit status {status:?}); \
                     its stderr:\n{log}"
                )
                .into());
            }
        };
        let origin = if tls { "https://127.0.0.1:" } else { "http://127.0.0.1:" };
        assert!(issuer.starts_with(origin), "the IdP listens on loopback only, over TLS when asked: {issuer}");
        // Drain the rest of stdout so the IdP never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(IdpProcess { issuer, _stdin: stdin, _child: child })
    }
}

/// The running IdP with its token endpoint, found by discovery.
pub(crate) struct Idp {
    pub(crate) issuer: String,
    token_endpoint: String,
    http: reqwest::Client,
    _process: IdpProcess,
}

impl Idp {
    pub(crate) async fn start() -> Result<Idp, Error> {
        Idp::start_in(Mode::Default).await
    }

    /// [`start`](Self::start) in `mode`.
    pub(crate) async fn start_in(mode: Mode) -> Result<Idp, Error> {
        Idp::start_with(mode, &[]).await
    }

    /// [`start_in`](Self::start_in) with more settings; see [`IdpProcess::start_with`]. Not
    /// for the mutual-TLS mode: discovery here trusts no private CA.
    pub(crate) async fn start_with(mode: Mode, env: &[(&str, &str)]) -> Result<Idp, Error> {
        let process = IdpProcess::start_with(mode, env).await?;
        let issuer = process.issuer.clone();
        let http = http_client();
        let metadata: Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(metadata["issuer"], issuer.as_str(), "discovery names the issuer");
        let token_endpoint = metadata["token_endpoint"].as_str().ok_or("no token_endpoint in discovery")?.to_owned();
        Ok(Idp { issuer, token_endpoint, http, _process: process })
    }

    /// The token endpoint, from discovery.
    pub(crate) fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// A client_credentials token for `resource`, the client authenticated with
    /// `client_secret_basic`.
    pub(crate) async fn token(&self, client: (&str, &str), resource: &str, scope: &str) -> Result<String, Error> {
        let response = self
            .http
            .post(&self.token_endpoint)
            .header(reqwest::header::AUTHORIZATION, basic(client.0, client.1))
            .form(&[("grant_type", "client_credentials"), ("resource", resource), ("scope", scope)])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::OK {
            return Err(format!("token endpoint answered {status}: {body}").into());
        }
        assert_eq!(body["token_type"], "Bearer", "{body}");
        Ok(body["access_token"].as_str().ok_or_else(|| format!("no access_token in {body}"))?.to_owned())
    }

    /// Rotates the signing keys; the answer names the new `kids` by algorithm.
    pub(crate) async fn rotate(&self) -> Result<Value, Error> {
        Ok(self.http.post(format!("{}/__rotate", self.issuer)).send().await?.error_for_status()?.json().await?)
    }

    /// How often each endpoint was requested: `discovery`, `jwks`, `token`.
    pub(crate) async fn stats(&self) -> Result<Value, Error> {
        Ok(self.http.get(format!("{}/__stats", self.issuer)).send().await?.error_for_status()?.json().await?)
    }

    /// The resource server's private decryption keys, as a JWK Set document.
    pub(crate) async fn decryption_jwks(&self) -> Result<Vec<u8>, Error> {
        let url = format!("{}/__jwe_keys", self.issuer);
        Ok(self.http.get(url).send().await?.error_for_status()?.bytes().await?.to_vec())
    }
}

/// `client_secret_basic` per RFC 6749 §2.3.1: form-urlencode id and secret, join with
/// `:`, base64.
pub(crate) fn basic(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

/// A compact token's segment decoded as JSON (0: the header, 1: a JWS payload).
pub(crate) fn segment(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// What the API under test answered.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) challenge: Option<String>,
    pub(crate) json: Value,
}

/// One request to the API under test, with the token as a bearer credential if given.
pub(crate) async fn call(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Reply, Error> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let challenge =
        response.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await?;
    Ok(Reply { status, challenge, json: serde_json::from_slice(&body).unwrap_or(Value::Null) })
}
