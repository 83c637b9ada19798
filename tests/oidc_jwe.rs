//! Encrypted access tokens from an independent IdP: node-oidc-provider (npm `oidc-provider`,
//! pinned in `tests/oidc/package-lock.json`), run by `tests/oidc/idp.mjs` on 127.0.0.1.
//!
//! Its resource `https://jwe.example.test` gets RFC 9068 access tokens signed with RS256,
//! then encrypted to the resource server's RSA key (RSA-OAEP-256 + A256GCM; oidc-provider's
//! `jwt.encrypt` resource-server option). The IdP holds only the public half; the test
//! fetches the private JWK Set from the script's `/__jwe_keys` route and loads it into
//! [`DecryptionKeys`]. The tokens then go through [`BearerAuthLayer`] in an axum app, with
//! the signing keys found by discovery.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(feature = "testing", feature = "axum", feature = "jwe"))]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tower_oauth::validate::DecryptionKeys;
use tower_oauth::{BearerAuthLayer, Claims, TypPolicy, Validator};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

/// The plain RS256 resource (a compact JWS access token).
const API: &str = "https://api.example.test";
/// The encrypted resource: JWS nested in a JWE, with the key's `kid` in the JWE header.
const API_JWE: &str = "https://jwe.example.test";
/// The same, without a `kid` in the JWE header.
const API_JWE_NO_KID: &str = "https://jwe-nokid.example.test";
const CLIENT: (&str, &str) = ("rs-test", "rs-secret");

/// How long the IdP may take to print its `ISSUER=` line (Node start-up, key generation).
const IDP_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Any one HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The IdP process; killed when dropped (and it exits by itself when its stdin closes).
struct Idp {
    issuer: String,
    token_endpoint: String,
    http: reqwest::Client,
    _stdin: ChildStdin,
    _child: Child,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("oidc")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().expect("a plain HTTP client builds")
}

impl Idp {
    async fn start() -> Result<Idp, Error> {
        let dir = oidc_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            return Err(format!(
                "{} has no node_modules/oidc-provider: run `scripts/test` (it runs `npm ci` there), \
                 or `npm ci --no-audit --no-fund` in that directory",
                dir.display()
            )
            .into());
        }
        let mut child = Command::new("node")
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
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let log = log.lock().expect("log lock").join("\n");
                return Err(format!(
                    "the IdP did not announce its issuer within {IDP_START_TIMEOUT:?} ({other:?}, exit status {status:?}); \
                     its stderr:\n{log}"
                )
                .into());
            }
        };
        assert!(issuer.starts_with("http://127.0.0.1:"), "the IdP listens on loopback only: {issuer}");
        // Drain the rest of stdout so the IdP never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

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
        Ok(Idp { issuer, token_endpoint, http, _stdin: stdin, _child: child })
    }

    /// A client_credentials token for `resource`, the client authenticated with
    /// `client_secret_basic`.
    async fn token(&self, resource: &str, scope: &str) -> Result<String, Error> {
        let response = self
            .http
            .post(&self.token_endpoint)
            .header(reqwest::header::AUTHORIZATION, basic(CLIENT.0, CLIENT.1))
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

    /// The resource server's private decryption keys, as a JWK Set document.
    async fn decryption_jwks(&self) -> Result<Vec<u8>, Error> {
        let url = format!("{}/__jwe_keys", self.issuer);
        Ok(self.http.get(url).send().await?.error_for_status()?.bytes().await?.to_vec())
    }
}

/// `client_secret_basic` per RFC 6749 §2.3.1.
fn basic(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

/// A compact token's segment decoded as JSON (0: the header).
fn segment_json(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A compact JWE with one bit of its ciphertext (segment 3) flipped.
fn tamper_ciphertext(token: &str) -> String {
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(segments.len(), 5);
    let mut ciphertext = URL_SAFE_NO_PAD.decode(&segments[3]).expect("base64url");
    ciphertext[0] ^= 0x01;
    segments[3] = URL_SAFE_NO_PAD.encode(ciphertext);
    segments.join(".")
}

/// The API under test on 127.0.0.1: `/me` answers with the claims the layer validated.
async fn serve(layer: BearerAuthLayer) -> Result<String, Error> {
    let app = Router::new().route("/me", get(|claims: Claims| async move { Json(claims) })).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/me", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    json: Value,
}

async fn call(http: &reqwest::Client, url: &str, token: &str) -> Result<Reply, Error> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let challenge =
        response.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await?;
    Ok(Reply { status, challenge, json: serde_json::from_slice(&body).unwrap_or(Value::Null) })
}

/// Asserts a 401 `invalid_token` whose (verbose) description contains `why`.
fn assert_rejected(reply: &Reply, why: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?} {}", reply.challenge, reply.json);
    let challenge = reply.challenge.as_deref().unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");
    assert!(challenge.contains(why), "expected {why:?} in {challenge}");
}

/// Issuer via discovery, RFC 9068 `typ`, the given audiences, and the resource server's
/// decryption keys.
fn validator(issuer: &str, audiences: &[&str], keys: &DecryptionKeys, require_encryption: bool) -> Validator {
    let mut builder = Validator::builder().issuer(issuer).typ(TypPolicy::Rfc9068).decryption_keys(keys.clone());
    for audience in audiences {
        builder = builder.audience(*audience);
    }
    if require_encryption {
        builder = builder.require_encryption();
    }
    builder.build().expect("validator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_encrypted_access_tokens_pass_the_bearer_layer() -> TestResult {
    let idp = Idp::start().await?;
    let jwks = idp.decryption_jwks().await?;
    let private: Value = serde_json::from_slice(&jwks)?;
    let kid = private["keys"][0]["kid"].as_str().ok_or("no kid on the decryption key")?.to_owned();
    let keys = DecryptionKeys::from_jwks(&jwks)?;
    assert_eq!(keys.len(), 1, "one RSA key, bound to RSA-OAEP-256 by its alg");

    // What oidc-provider sends: a compact JWE, RSA-OAEP-256 + A256GCM, with our kid, and
    // `cty: at+jwt` (RFC 7519 §5.2 suggests "JWT"; `at+jwt` says more and is accepted as a
    // JWT media type), plus `iss` and `aud` replicated into the header (RFC 7519 §5.3).
    let token = idp.token(API_JWE, "read write").await?;
    assert_eq!(token.split('.').count(), 5, "a compact JWE");
    let header = segment_json(&token, 0);
    eprintln!("oidc-provider JWE header: {header}");
    assert_eq!(header["alg"], "RSA-OAEP-256", "{header}");
    assert_eq!(header["enc"], "A256GCM", "{header}");
    assert_eq!(header["kid"], kid.as_str(), "{header}");
    assert_eq!(header["cty"], "at+jwt", "{header}");
    assert_eq!(header["iss"], idp.issuer.as_str(), "{header}");
    assert_eq!(header["aud"], API_JWE, "{header}");
    assert!(header.get("zip").is_none() && header.get("typ").is_none(), "{header}");

    // Decrypted directly: a nested RFC 9068 JWS signed with the IdP's RS256 key.
    let decrypted = keys.decrypt(&token)?;
    assert!(decrypted.is_nested(), "cty at+jwt marks a nested token");
    let inner = std::str::from_utf8(decrypted.payload())?.to_owned();
    let inner_header = segment_json(&inner, 0);
    assert_eq!((&inner_header["alg"], &inner_header["typ"]), (&"RS256".into(), &"at+jwt".into()), "{inner_header}");
    let inner_claims = segment_json(&inner, 1);
    assert_eq!(inner_claims["aud"], API_JWE, "{inner_claims}");

    // Through the layer: discovery finds the signing keys, the token decrypts and verifies.
    let url =
        serve(BearerAuthLayer::new(validator(&idp.issuer, &[API_JWE], &keys, false)).verbose_errors(true)).await?;
    let http = http_client();
    let reply = call(&http, &url, &token).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["iss"], idp.issuer.as_str(), "{}", reply.json);
    assert_eq!(reply.json["aud"], API_JWE, "{}", reply.json);
    assert_eq!(reply.json["client_id"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["sub"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["scope"], "read write", "{}", reply.json);
    assert_eq!(reply.json["jti"], inner_claims["jti"], "the claims are the inner token's: {}", reply.json);

    // One flipped ciphertext bit: the GCM tag fails, before any signature is looked at.
    let reply = call(&http, &url, &tamper_ciphertext(&token)).await?;
    assert_rejected(&reply, "decryption failed");
    // The same token encrypted for the kid-less resource: another audience.
    let other = idp.token(API_JWE_NO_KID, "read").await?;
    assert_rejected(&call(&http, &url, &other).await?, "invalid audience");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwe_without_kid_is_decrypted_with_the_key_for_its_algorithm() -> TestResult {
    let idp = Idp::start().await?;
    let keys = DecryptionKeys::from_jwks(&idp.decryption_jwks().await?)?;
    let token = idp.token(API_JWE_NO_KID, "read").await?;
    let header = segment_json(&token, 0);
    assert!(header.get("kid").is_none(), "{header}");
    assert_eq!((&header["alg"], &header["enc"]), (&"RSA-OAEP-256".into(), &"A256GCM".into()), "{header}");

    let url = serve(BearerAuthLayer::new(validator(&idp.issuer, &[API_JWE_NO_KID], &keys, true))).await?;
    let http = http_client();
    let reply = call(&http, &url, &token).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["aud"], API_JWE_NO_KID, "{}", reply.json);

    // A key of the right algorithm but another modulus: one private-key operation, failure.
    let stranger = tower_oauth::testing::TestEncryptionKey::generate("RSA-OAEP-256");
    let wrong_keys = DecryptionKeys::from_jwks(stranger.private_jwks().as_bytes())?;
    assert_eq!(wrong_keys.decrypt(&token).unwrap_err(), tower_oauth::ValidationError::DecryptionFailed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encryption_refuses_the_idps_plain_jws_tokens() -> TestResult {
    let idp = Idp::start().await?;
    let keys = DecryptionKeys::from_jwks(&idp.decryption_jwks().await?)?;
    let http = http_client();
    let plain = idp.token(API, "read").await?;
    assert_eq!(plain.split('.').count(), 3, "the RS256 resource gets a plain JWS");
    let encrypted = idp.token(API_JWE, "read").await?;

    // Without the rule, both audiences' tokens pass: what fails below fails for the rule.
    let open = serve(BearerAuthLayer::new(validator(&idp.issuer, &[API, API_JWE], &keys, false))).await?;
    for token in [&plain, &encrypted] {
        let reply = call(&http, &open, token).await?;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    }

    let strict = BearerAuthLayer::new(validator(&idp.issuer, &[API, API_JWE], &keys, true)).verbose_errors(true);
    let strict = serve(strict).await?;
    assert_rejected(&call(&http, &strict, &plain).await?, "token must be encrypted");
    let reply = call(&http, &strict, &encrypted).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["aud"], API_JWE, "{}", reply.json);

    // The genuine inner JWS of the encrypted token, taken out and replayed on its own (a
    // token leaked after decryption): its signature is good, but it is not encrypted.
    let inner = String::from_utf8(keys.decrypt(&encrypted)?.payload().to_vec())?;
    assert_eq!(call(&http, &open, &inner).await?.status, StatusCode::OK, "the inner token is genuine");
    assert_rejected(&call(&http, &strict, &inner).await?, "token must be encrypted");
    // And a tampered JWE is refused under the strict policy too.
    assert_rejected(&call(&http, &strict, &tamper_ciphertext(&encrypted)).await?, "decryption failed");
    Ok(())
}
