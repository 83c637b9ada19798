//! The token client against an independent IdP: node-oidc-provider (`tests/oidc/idp.mjs`,
//! provisioned by `scripts/test`). Its client `svc:special` has the secret
//! `p@ss:w+rd%/ &=`, which only authenticates when id and secret are form-urlencoded
//! before Basic (RFC 6749 §2.3.1); the endpoint is found by discovery.
#![cfg(feature = "testing")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tower_oauth::Validator;
use tower_oauth::client::{ErrorCode, TokenCache, TokenEndpoint};

const API: &str = "https://api.example.test";
const SPECIAL: (&str, &str) = ("svc:special", "p@ss:w+rd%/ &=");

/// The IdP process: killed when dropped, and it exits by itself when its stdin closes.
struct Idp {
    issuer: String,
    _stdin: ChildStdin,
    _child: Child,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("oidc")
}

impl Idp {
    async fn start() -> Idp {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules").join("oidc-provider").is_dir(),
            "{} has no node_modules/oidc-provider: run `scripts/test` (it runs `npm ci` there)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("idp.mjs"))
            .current_dir(&dir)
            .env_remove("IDP_PORT")
            .env_remove("IDP_IGNORE_STDIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("`node` runs (scripts/test checks for Node.js)");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(issuer) = line.strip_prefix("ISSUER=") {
                    return issuer.trim().to_owned();
                }
            }
            panic!("the IdP exited before announcing its issuer");
        })
        .await
        .expect("the IdP announces its issuer within 20 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp { issuer, _stdin: stdin, _child: child }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_full_of_reserved_characters_authenticates_with_basic() {
    let idp = Idp::start().await;
    let endpoint =
        TokenEndpoint::discover(&idp.issuer, SPECIAL.0, SPECIAL.1).resource(API).scope("read admin").build().unwrap();
    let cache = TokenCache::new(endpoint).unwrap();
    let token = cache.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(600));

    let validator = Validator::builder().issuer(&idp.issuer).audience(API).build().unwrap();
    let claims = validator.validate(token.expose()).await.unwrap();
    assert_eq!(claims.client_id(), Some(SPECIAL.0));
    assert!(claims.has_scope("read") && claims.has_scope("admin"));
    assert!(!claims.has_scope("write"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_typed_invalid_client_from_an_independent_server() {
    let idp = Idp::start().await;
    let mut wrong = TokenEndpoint::discover(&idp.issuer, SPECIAL.0, "p@ss:w+rd%/ &").resource(API).build().unwrap();
    let error = wrong.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidClient), "{error:?}");
    assert!(!error.to_string().contains("p@ss"));
}
