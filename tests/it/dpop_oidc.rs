//! Sender-constrained tokens against independent implementations, over real sockets on
//! 127.0.0.1:
//!
//! - DPoP (RFC 9449): node-oidc-provider (`tests/oidc/idp.mjs`, DPoP mode) issues DPoP-bound
//!   tokens to our `TokenEndpoint`, whose proofs it checks, nonce included; an independent
//!   resource server (`tests/oidc/dpop.mjs resource-server`, oauth4webapi) checks the proofs
//!   our reqwest middleware and Tower layer send; and an independent client (`dpop.mjs
//!   client`, npm `dpop` and oauth4webapi) gets tokens and makes the proofs our
//!   `BearerAuthLayer` checks.
//! - Certificate-bound tokens (RFC 8705): the IdP over mutual TLS binds our client's
//!   certificate to its token (`cnf["x5t#S256"]`), and our API over rustls takes the token
//!   only from a connection with that certificate.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(
    feature = "testing",
    feature = "axum",
    feature = "reqwest-middleware",
    feature = "mtls-rustls",
    feature = "tonic"
))]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{Extensions, Method};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest::StatusCode;
use reqwest_middleware::{Middleware, Next};
use serde_json::{Value, json};
use tower::{Service as _, ServiceBuilder, ServiceExt as _};
use tower_oauth::client::{ClientCredentialsLayer, DpopKey, ErrorCode, TokenCache, TokenEndpoint, TokenError};
use tower_oauth::reqwest::ClientCredentialsMiddleware;
use tower_oauth::validate::dpop::{DpopVerifier, DpopVerifierBuilder};
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, Validator};

use crate::mtls::{Ca, Credentials, reqwest_client, serve_rustls};
use crate::support::api::listen;
use crate::support::dpop_node::{DpopClient, NodeResourceServer, string};
use crate::support::oidc_idp::{
    API, CLIENT, DPOP_CLIENT, Error, Idp, IdpProcess, MTLS_BOUND_CLIENT, Mode, REQUEST_TIMEOUT, TestResult, basic,
    http_client, segment,
};

// ---------------------------------------------------------------- helpers

/// The IdP in DPoP mode with server nonces required at its token endpoint.
async fn idp_requiring_nonces() -> Result<Idp, Error> {
    Idp::start_with(Mode::Default, &[("IDP_DPOP_NONCE", "1")]).await
}

/// How many token requests the IdP has answered.
async fn token_requests(idp: &Idp) -> Result<u64, Error> {
    let stats = idp.stats().await?;
    Ok(stats["token"].as_u64().ok_or_else(|| format!("no token count in {stats}"))?)
}

/// Our token endpoint for the DPoP client and the RS256 API, with `key` for DPoP if given.
fn dpop_endpoint(idp: &Idp, key: Option<&DpopKey>) -> Result<TokenEndpoint, Error> {
    let builder =
        TokenEndpoint::builder(idp.token_endpoint(), DPOP_CLIENT.0, DPOP_CLIENT.1).resource(API).scope("read");
    let builder = match key {
        Some(key) => builder.dpop(key.clone()),
        None => builder,
    };
    Ok(builder.build()?)
}

/// The `error` of the first challenge that has one.
fn challenge_error(challenge: &str) -> Option<&str> {
    let start = challenge.find("error=\"")? + "error=\"".len();
    let end = challenge[start..].find('"')? + start;
    Some(&challenge[start..end])
}

/// What an API answered: status, `WWW-Authenticate`, `DPoP-Nonce`, JSON body (or null).
struct Answer {
    status: StatusCode,
    challenge: String,
    nonce: Option<String>,
    json: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Result<Answer, Error> {
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (status, challenge, nonce) = (response.status(), header("www-authenticate"), header("dpop-nonce"));
        let body = response.bytes().await?;
        Ok(Answer {
            status,
            challenge: challenge.unwrap_or_default(),
            nonce,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    fn error(&self) -> Option<&str> {
        challenge_error(&self.challenge)
    }

    /// Asserts a 401 whose challenge names `code`.
    fn assert_refused(&self, code: &str, what: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{what}: {} {}", self.challenge, self.json);
        assert_eq!(self.error(), Some(code), "{what}: {}", self.challenge);
    }
}

// ---------------------------------------------------------------- 1. our client at oidc-provider

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_binds_the_token_it_gives_our_dpop_client_after_a_nonce_challenge() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let http = http_client();

    // The IdP does demand a nonce: a good proof without one is refused, the nonce offered.
    let url: url::Url = idp.token_endpoint().parse()?;
    let probe = DpopKey::generate()?;
    let refused = http
        .post(url.as_str())
        .header("authorization", basic(DPOP_CLIENT.0, DPOP_CLIENT.1))
        .header("dpop", probe.proof(&Method::POST, &url, None, None)?)
        .form(&[("grant_type", "client_credentials"), ("resource", API)])
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.headers().contains_key("dpop-nonce"), "{:?}", refused.headers());
    assert_eq!(refused.json::<Value>().await?["error"], "use_dpop_nonce");

    let key = DpopKey::generate()?;
    let mut endpoint = dpop_endpoint(&idp, Some(&key))?;
    let before = token_requests(&idp).await?;
    let response = endpoint.request_token().await?;
    assert_eq!(token_requests(&idp).await? - before, 2, "one request refused for its nonce, one retried with it");
    assert!(response.is_dpop(), "token_type DPoP");
    let token = response.access_token();
    assert_eq!(segment(token, 0)["typ"], "at+jwt");
    let claims = segment(token, 1);
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "bound to our key: {claims}");
    assert_eq!((&claims["client_id"], &claims["aud"]), (&DPOP_CLIENT.0.into(), &API.into()), "{claims}");

    // The nonce is remembered: the next token takes one request.
    let before = token_requests(&idp).await?;
    let again = endpoint.request_token().await?;
    assert_eq!(token_requests(&idp).await? - before, 1, "the remembered nonce is sent at once");
    assert_eq!(segment(again.access_token(), 1)["cnf"]["jkt"], key.thumbprint());
    assert_ne!(again.access_token(), token);

    // The same client without a key: a client registered for DPoP-bound tokens is refused.
    let error = dpop_endpoint(&idp, None)?.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidGrant), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_takes_our_proofs_with_every_algorithm_it_allows() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::PS256, Algorithm::RS256] {
        let key = DpopKey::generate_for(alg)?;
        let response = dpop_endpoint(&idp, Some(&key))?.request_token().await.map_err(|e| format!("{alg}: {e:?}"))?;
        assert!(response.is_dpop(), "{alg}");
        let proof_alg = segment(&key.proof(&Method::GET, "http://127.0.0.1/", None, None)?, 0)["alg"].clone();
        assert_eq!(proof_alg, alg.as_str(), "our proofs name the algorithm as RFC 7518/8037 do");
        assert_eq!(segment(response.access_token(), 1)["cnf"]["jkt"], key.thumbprint(), "{alg}");
    }
    Ok(())
}

// ---------------------------------------------------------------- 2. our client at an independent resource server

/// Records what the resource server answered to each request the token middleware sent
/// (it runs after ours, so it sees retries): the status and whether the proof had a nonce.
#[derive(Clone, Default)]
struct Exchanges(Arc<Mutex<Vec<(StatusCode, bool)>>>);

#[async_trait::async_trait]
impl Middleware for Exchanges {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let proof = request.headers().get("dpop").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let scheme = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert!(scheme.is_some_and(|s| s.starts_with("DPoP ")), "the token goes with the DPoP scheme");
        let with_nonce = proof.is_some_and(|proof| segment(&proof, 1).get("nonce").is_some());
        let response = next.run(request, extensions).await?;
        self.0.lock().unwrap().push((response.status(), with_nonce));
        Ok(response)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_resource_server_requiring_nonces_accepts_our_middlewares_proofs() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let rs = NodeResourceServer::start(&idp.issuer, true).await?;
    let key = DpopKey::generate()?;
    let cache = TokenCache::new(dpop_endpoint(&idp, Some(&key))?)?;
    let exchanges = Exchanges::default();
    let client = reqwest_middleware::ClientBuilder::new(http_client())
        .with(ClientCredentialsMiddleware::new(cache.clone()))
        .with(exchanges.clone())
        .build();

    let me = format!("{}/me", rs.base);
    for i in 0..5 {
        let response = client.get(&me).send().await?;
        let answer = Answer::of(response).await?;
        assert_eq!(answer.status, StatusCode::OK, "request {i}: {} {}", answer.challenge, answer.json);
        assert_eq!(answer.json["cnf"]["jkt"], key.thumbprint(), "{}", answer.json);
        assert_eq!(answer.json["client_id"], DPOP_CLIENT.0, "{}", answer.json);
    }
    // The first request had no nonce and was answered use_dpop_nonce; one retry with the
    // nonce, and every later request carried it from the start.
    let seen = exchanges.0.lock().unwrap().clone();
    let mut expected = vec![(StatusCode::UNAUTHORIZED, false)];
    expected.extend([(StatusCode::OK, true); 5]);
    assert_eq!(seen, expected);
    assert_eq!(cache.fetch_attempts(), 1, "one token for every request");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_resource_server_requiring_nonces_accepts_our_tower_layers_ed25519_proofs() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let rs = NodeResourceServer::start(&idp.issuer, true).await?;
    let key = DpopKey::generate_for(Algorithm::EdDSA)?;
    let cache = TokenCache::new(dpop_endpoint(&idp, Some(&key))?)?;
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let record = statuses.clone();
    let http = ServiceBuilder::new()
        .map_response(move |response: http::Response<hyper::body::Incoming>| {
            record.lock().unwrap().push(response.status());
            response
        })
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let mut client = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache.clone())).service(http);

    let me = format!("{}/me", rs.base);
    for i in 0..3 {
        let request = http::Request::get(&me).body(Empty::new())?;
        let response = client.ready().await?.call(request).await?;
        let status = response.status();
        let body: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        assert_eq!(body["cnf"]["jkt"], key.thumbprint(), "{body}");
    }
    let seen = statuses.lock().unwrap().clone();
    assert_eq!(seen, [StatusCode::UNAUTHORIZED, StatusCode::OK, StatusCode::OK, StatusCode::OK], "one nonce retry");
    assert_eq!(cache.fetch_attempts(), 1);
    Ok(())
}

// ---------------------------------------------------------------- 3. an independent client at our API

/// Our API behind `BearerAuthLayer` with DPoP, trusting the IdP for the RS256 API; its
/// refusals say why (`error_description`).
struct OurApi {
    /// `http://127.0.0.1:PORT/me`: the URL of the API and what proofs name as `htu`.
    me: String,
    reached: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl OurApi {
    async fn serve(
        issuer: &str,
        verifier: impl FnOnce(DpopVerifierBuilder) -> DpopVerifierBuilder,
    ) -> Result<OurApi, Error> {
        let validator = Validator::builder().issuer(issuer).audience(API).build()?;
        let (listener, base) = listen().await;
        let dpop = verifier(DpopVerifier::builder(&base)).build()?;
        let reached = Arc::new(AtomicUsize::new(0));
        let count = reached.clone();
        let app = Router::new()
            .route(
                "/me",
                get(move |claims: Claims| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async move { Json(claims) }
                }),
            )
            .layer(BearerAuthLayer::new(validator).dpop(dpop).verbose_errors(true));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(OurApi { me: format!("{base}/me"), reached, http: http_client() })
    }

    /// `GET /me` with `authorization` and, when given, a `DPoP` proof.
    async fn call(&self, authorization: &str, proof: Option<&str>) -> Result<Answer, Error> {
        let mut request = self.http.get(&self.me).header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        Answer::of(request.send().await?).await
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

/// A DPoP-bound token for the RS256 API from the IdP, got by the independent client with
/// its key `key`: `(access token, the key's thumbprint as the client computed it)`.
async fn independent_token(
    idp: &Idp,
    client: &mut DpopClient,
    key: &str,
    alg: &str,
) -> Result<(String, String), Error> {
    let answer = client
        .ask(json!({
            "tokenEndpoint": idp.token_endpoint(),
            "clientId": DPOP_CLIENT.0,
            "clientSecret": DPOP_CLIENT.1,
            "resource": API,
            "scope": "read",
            "key": key,
            "alg": alg,
        }))
        .await?;
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    assert_eq!(answer["nonce_retried"], true, "the IdP asked the independent client for a nonce: {answer}");
    let (token, jkt) = (string(&answer, "access_token")?, string(&answer, "jkt")?);
    assert_eq!(segment(&token, 1)["cnf"]["jkt"], jkt.as_str(), "the IdP bound the token to the client's key");
    Ok((token, jkt))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_api_accepts_an_independent_clients_proofs_and_refuses_replays_bearer_use_and_other_keys() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let mut client = DpopClient::start()?;
    let (token, jkt) = independent_token(&idp, &mut client, "k1", "ES256").await?;
    let api = OurApi::serve(&idp.issuer, |v| v).await?;
    let dpop = format!("DPoP {token}");

    let (proof, proof_jkt) = client.proof("k1", "GET", &api.me, Some(&token), None).await?;
    assert_eq!(proof_jkt, jkt);
    let accepted = api.call(&dpop, Some(&proof)).await?;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.challenge);
    assert_eq!(accepted.json["cnf"]["jkt"], jkt.as_str(), "{}", accepted.json);
    assert_eq!(accepted.json["client_id"], DPOP_CLIENT.0, "{}", accepted.json);

    api.call(&dpop, Some(&proof)).await?.assert_refused("invalid_dpop_proof", "the same proof again");
    api.call(&format!("Bearer {token}"), None).await?.assert_refused("invalid_token", "the token as a bearer token");
    let (stolen, _) = client.proof("k2", "GET", &api.me, Some(&token), None).await?;
    api.call(&dpop, Some(&stolen)).await?.assert_refused("invalid_token", "a proof by another key");
    let (no_ath, _) = client.proof("k1", "GET", &api.me, None, None).await?;
    api.call(&dpop, Some(&no_ath)).await?.assert_refused("invalid_dpop_proof", "a proof without ath");
    let (for_post, _) = client.proof("k1", "POST", &api.me, Some(&token), None).await?;
    api.call(&dpop, Some(&for_post)).await?.assert_refused("invalid_dpop_proof", "a proof for POST");
    assert_eq!(api.reached(), 1, "only the good proof reached the handler");

    // A fresh proof from the same key is fine.
    let (fresh, _) = client.proof("k1", "GET", &api.me, Some(&token), None).await?;
    assert_eq!(api.call(&dpop, Some(&fresh)).await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_api_requiring_nonces_accepts_an_independent_clients_proof_with_the_nonce_it_handed_out() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let mut client = DpopClient::start()?;
    let (token, jkt) = independent_token(&idp, &mut client, "k1", "ES256").await?;
    let api = OurApi::serve(&idp.issuer, DpopVerifierBuilder::require_nonce).await?;
    let dpop = format!("DPoP {token}");

    let (without, _) = client.proof("k1", "GET", &api.me, Some(&token), None).await?;
    let asked = api.call(&dpop, Some(&without)).await?;
    asked.assert_refused("use_dpop_nonce", "a proof without a nonce");
    assert!(asked.challenge.starts_with("DPoP "), "{}", asked.challenge);
    let nonce = asked.nonce.ok_or("no DPoP-Nonce with use_dpop_nonce")?;

    let (with_nonce, _) = client.proof("k1", "GET", &api.me, Some(&token), Some(&nonce)).await?;
    let accepted = api.call(&dpop, Some(&with_nonce)).await?;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.challenge);
    assert_eq!(accepted.json["cnf"]["jkt"], jkt.as_str());
    let (made_up, _) = client.proof("k1", "GET", &api.me, Some(&token), Some("not-our-nonce")).await?;
    api.call(&dpop, Some(&made_up)).await?.assert_refused("use_dpop_nonce", "a nonce we never handed out");
    assert_eq!(api.reached(), 1);
    Ok(())
}

/// The npm `dpop` package signs with an Ed25519 key under the fully-specified name
/// `alg: "Ed25519"` (RFC 9864), as oidc-provider takes it; our verifier takes it too, as
/// RFC 8037's `EdDSA` with an Ed25519 key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_api_accepts_an_independent_clients_proof_that_names_its_algorithm_ed25519() -> TestResult {
    let idp = idp_requiring_nonces().await?;
    let mut client = DpopClient::start()?;
    let (token, jkt) = independent_token(&idp, &mut client, "ed", "EdDSA").await?;
    let api = OurApi::serve(&idp.issuer, |v| v).await?;

    let answer =
        client.ask(json!({"key": "ed", "alg": "EdDSA", "htm": "GET", "htu": api.me, "accessToken": token})).await?;
    assert_eq!(answer["alg"], "Ed25519");
    let proof = string(&answer, "proof")?;
    let accepted = api.call(&format!("DPoP {token}"), Some(&proof)).await?;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.challenge);
    assert_eq!(accepted.json["cnf"]["jkt"], jkt.as_str());
    api.call(&format!("DPoP {token}"), Some(&proof)).await?.assert_refused("invalid_dpop_proof", "a replay");
    assert_eq!(api.reached(), 1);
    Ok(())
}

// ---------------------------------------------------------------- 4. certificate-bound tokens over mutual TLS

/// PEM files in a directory of their own, removed when dropped.
struct PemFiles(PathBuf);

impl PemFiles {
    fn new() -> Result<PemFiles, Error> {
        let dir =
            std::env::temp_dir().join(format!("tower-oauth-mtls-{}-{:016x}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir(&dir)?;
        Ok(PemFiles(dir))
    }

    fn write(&self, name: &str, pem: &str) -> Result<String, Error> {
        let path = self.0.join(name);
        std::fs::write(&path, pem)?;
        Ok(path.to_str().ok_or("a temporary path that is not UTF-8")?.to_owned())
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client that trusts only `ca`, presents `identity` if given, and follows no redirects.
fn tls_client(ca: &Ca, identity: Option<&Credentials>) -> Result<reqwest::Client, Error> {
    Ok(reqwest_client(ca, identity).redirect(reqwest::redirect::Policy::none()).timeout(REQUEST_TIMEOUT).build()?)
}

/// The IdP's `rs-mtls-bound` client: authenticated by its secret, its certificate only binds
/// the token. (Its `rs-mtls` client, authenticated by the certificate alone with
/// `tls_client_auth`, is left out: `AuthMethod` has no such method yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_token_from_oidc_provider_works_at_our_api_only_with_its_certificate() -> TestResult {
    let ca = Ca::new("interop test ca");
    let (server, client_cert, other) = (ca.server(), ca.client("rs-mtls"), ca.client("rs-other"));
    let files = PemFiles::new()?;
    let env = [
        ("IDP_TLS_CERT", files.write("server.pem", server.cert_pem())?),
        ("IDP_TLS_KEY", files.write("server.key", server.key_pem())?),
        ("IDP_TLS_CLIENT_CA", files.write("ca.pem", ca.pem())?),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let idp = IdpProcess::start_with(Mode::Default, &env).await?;
    let token_url = format!("{}/token", idp.issuer);
    let endpoint =
        |client: &str, secret: &str| TokenEndpoint::builder(&token_url, client, secret).resource(API).scope("read");

    // With the certificate: a bearer token bound to it.
    let mut bound =
        endpoint(MTLS_BOUND_CLIENT.0, MTLS_BOUND_CLIENT.1).http_client(tls_client(&ca, Some(&client_cert))?).build()?;
    let response = bound.request_token().await?;
    assert!(!response.is_dpop(), "certificate-bound tokens stay Bearer");
    let token = response.access_token().to_owned();
    let claims = segment(&token, 1);
    assert_eq!(claims["cnf"]["x5t#S256"], client_cert.thumbprint(), "{claims}");
    assert_eq!(claims["client_id"], MTLS_BOUND_CLIENT.0, "{claims}");

    // Without a certificate the client that needs one for its binding is refused.
    let mut no_cert = endpoint(MTLS_BOUND_CLIENT.0, MTLS_BOUND_CLIENT.1).http_client(tls_client(&ca, None)?).build()?;
    let error = no_cert.request_token().await.unwrap_err();
    assert_eq!(error.oauth().map(|e| e.code()), Some(&ErrorCode::InvalidGrant), "{error:?}");
    // `tls_identity` alone builds a client that trusts the platform's roots only, so an IdP
    // whose certificate a private CA issued is out of its reach.
    let mut platform_roots =
        endpoint(MTLS_BOUND_CLIENT.0, MTLS_BOUND_CLIENT.1).tls_identity(client_cert.reqwest_identity()).build()?;
    let error = platform_roots.request_token().await.unwrap_err();
    assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
    // A token for a client without binding, as the control.
    let unbound = endpoint(CLIENT.0, CLIENT.1).http_client(tls_client(&ca, None)?).build()?.request_token().await?;
    assert!(segment(unbound.access_token(), 1).get("cnf").is_none());

    // Our API over rustls, asking for client certificates from the same CA; its validator
    // reaches the IdP through a client that trusts the CA.
    let validator =
        Validator::builder().issuer(&idp.issuer).audience(API).http_client(tls_client(&ca, None)?).build()?;
    let app = Router::new()
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .layer(BearerAuthLayer::new(validator));
    let me = format!("{}/me", serve_rustls(&ca, &server, app).await);
    let call = |identity: Option<&Credentials>, token: &str| {
        let client = tls_client(&ca, identity);
        let request = client.map(|client| client.get(&me).bearer_auth(token));
        async move { Answer::of(request?.send().await?).await }
    };

    let accepted = call(Some(&client_cert), &token).await?;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.challenge);
    assert_eq!(accepted.json["cnf"]["x5t#S256"], client_cert.thumbprint(), "{}", accepted.json);
    call(Some(&other), &token).await?.assert_refused("invalid_token", "another certificate from the same CA");
    call(None, &token).await?.assert_refused("invalid_token", "no certificate");
    let control = call(None, unbound.access_token()).await?;
    assert_eq!(control.status, StatusCode::OK, "an unbound token needs no certificate: {}", control.challenge);
    Ok(())
}
