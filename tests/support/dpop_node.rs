//! An independent DPoP (RFC 9449) client and resource server, for `dpop_oidc`: panva's npm
//! `dpop` and `oauth4webapi` (pinned in `tests/oidc/package-lock.json`), run by
//! `tests/oidc/dpop.mjs` on 127.0.0.1.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::oidc_idp::{Error, oidc_dir};

/// How long Node may take to start and print its `LISTENING=` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one client line may take (a token request, or an RSA key made on first use).
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// `node tests/oidc/dpop.mjs <mode>` with `env`, its stderr through the test harness's
/// capture (shown when a test fails). Killed when dropped; it also exits when its stdin
/// closes.
fn spawn(mode: &str, env: &[(&str, &str)]) -> Result<(Child, ChildStdin, Lines<BufReader<ChildStdout>>), Error> {
    let dir = oidc_dir();
    for package in ["dpop", "oauth4webapi"] {
        if !dir.join("node_modules").join(package).is_dir() {
            return Err(format!(
                "{} has no node_modules/{package}: run `scripts/test` (it runs `npm ci` there), \
                 or `npm ci --no-audit --no-fund` in that directory",
                dir.display()
            )
            .into());
        }
    }
    let mut command = Command::new("node");
    for name in ["RS_ISSUER", "RS_AUDIENCE", "RS_DPOP_NONCE", "RS_PORT"] {
        command.env_remove(name);
    }
    let mut child = command
        .arg(dir.join("dpop.mjs"))
        .arg(mode)
        .current_dir(&dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not run `node` (install Node.js >= 20; scripts/test checks for it): {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (pid, tag) = (child.id().unwrap_or_default(), mode.to_owned());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[dpop.mjs {tag} pid {pid}] {line}");
        }
    });
    Ok((child, stdin, BufReader::new(stdout).lines()))
}

/// The independent DPoP client: one JSON line in, one JSON line out (see `dpop.mjs`). Its
/// keys live as long as the process, by name.
pub(crate) struct DpopClient {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl DpopClient {
    pub(crate) fn start() -> Result<DpopClient, Error> {
        let (child, stdin, lines) = spawn("client", &[])?;
        Ok(DpopClient { stdin, lines, _child: child })
    }

    /// Sends one line and reads its answer; an answer with `error` is an error.
    pub(crate) async fn ask(&mut self, line: Value) -> Result<Value, Error> {
        let answer = self.ask_raw(line).await?;
        match answer.get("error") {
            Some(error) => Err(format!("dpop.mjs answered {error}: {answer}").into()),
            None => Ok(answer),
        }
    }

    /// Sends one line and reads its answer as it is, errors included.
    pub(crate) async fn ask_raw(&mut self, line: Value) -> Result<Value, Error> {
        let mut text = line.to_string();
        text.push('\n');
        self.stdin.write_all(text.as_bytes()).await?;
        self.stdin.flush().await?;
        let answer = tokio::time::timeout(LINE_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| format!("dpop.mjs did not answer {line} within {LINE_TIMEOUT:?}"))??
            .ok_or("dpop.mjs exited")?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// A proof by the key named `key` for `htm htu`, with `ath` for `access_token` and
    /// `nonce` when given: `(proof, jkt)`.
    pub(crate) async fn proof(
        &mut self,
        key: &str,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<(String, String), Error> {
        let answer =
            self.ask(json!({"key": key, "htm": htm, "htu": htu, "accessToken": access_token, "nonce": nonce})).await?;
        Ok((string(&answer, "proof")?, string(&answer, "jkt")?))
    }
}

/// A member of `value` that must be a string.
pub(crate) fn string(value: &Value, name: &str) -> Result<String, Error> {
    Ok(value[name].as_str().ok_or_else(|| format!("no string {name} in {value}"))?.to_owned())
}

/// The independent resource server: `GET /me` for DPoP-bound JWT access tokens, checked by
/// oauth4webapi (see `dpop.mjs`).
pub(crate) struct NodeResourceServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    _stdin: ChildStdin,
    _child: Child,
}

impl NodeResourceServer {
    /// For tokens of `issuer` (found by discovery) for the default audience,
    /// `https://api.example.test`; with its own nonces when `nonce`.
    pub(crate) async fn start(issuer: &str, nonce: bool) -> Result<NodeResourceServer, Error> {
        let env = [("RS_ISSUER", issuer), ("RS_DPOP_NONCE", if nonce { "1" } else { "0" })];
        let (mut child, stdin, mut lines) = spawn("resource-server", &env)?;
        let base = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(base) = line.strip_prefix("LISTENING=") {
                    return Ok(Some(base.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let base = match base {
            Ok(Ok(Some(base))) => base,
            other => {
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                return Err(format!(
                    "the resource server did not say where it listens within {START_TIMEOUT:?} \
                     ({other:?}, exit status {status:?}); its stderr is above"
                )
                .into());
            }
        };
        assert!(base.starts_with("http://127.0.0.1:"), "the resource server listens on loopback only: {base}");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(NodeResourceServer { base, _stdin: stdin, _child: child })
    }
}
