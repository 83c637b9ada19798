//! Sender-constrained tokens at `BearerAuthLayer`, over real HTTP on 127.0.0.1: DPoP-bound
//! tokens (RFC 9449) with their proofs, called with reqwest, one case per check of §4.3 that
//! fails without it; the replay cache shared through a real Redis, by two layers and by two
//! `resource_server` processes; and certificate-bound tokens (RFC 8705) over real TLS.
//!
//! Tokens come from the test issuer, bound with `cnf.jkt`. Proofs come from `DpopKey`, or,
//! when a header or claim must be wrong, from a key held here and signed by hand.
#![cfg(all(
    feature = "testing",
    feature = "axum",
    feature = "redis",
    feature = "jwe",
    feature = "mtls-rustls",
    feature = "tonic"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use aws_lc_rs::{digest, hmac};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth::bearer::{RequireScopeLayer, VerifiedTokenCache};
use tower_oauth::client::DpopKey;
use tower_oauth::client::store::RedisTokenStore;
use tower_oauth::testing::TestIssuer;
use tower_oauth::validate::dpop::{DpopReplayCache, DpopVerifier, DpopVerifierBuilder};
use tower_oauth::validate::{DpopMode, Issuer};
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, Validator, ValidatorBuilder};

use crate::mtls::{Ca, reqwest_client, serve_rustls};
use crate::support::api::{listen, now};
use crate::support::redis::RedisServer;

// ---------------------------------------------------------------- the API under test

/// An API behind `BearerAuthLayer` with DPoP: `/me` (GET and POST) answers with the claims,
/// and so does `/admin`, for tokens with the `admin` scope.
struct Api {
    /// Where it listens, `http://127.0.0.1:PORT`.
    base: String,
    /// The public URL its verifier checks `htu` against.
    public: String,
    issuer: TestIssuer,
    /// How many requests reached the handler.
    reached: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Api {
    /// The URL clients believe `path` is at: what a proof's `htu` names.
    fn htu(&self, path: &str) -> url::Url {
        format!("{}{path}", self.public).parse().unwrap()
    }

    /// `GET path` with `Authorization: DPoP token` and one `DPoP` header per proof.
    async fn dpop(&self, path: &str, token: &str, proofs: &[&str]) -> reqwest::Response {
        self.send(Method::GET, path, &format!("DPoP {token}"), proofs).await
    }

    async fn bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(Method::GET, path, &format!("Bearer {token}"), &[]).await
    }

    async fn send(&self, method: Method, path: &str, authorization: &str, proofs: &[&str]) -> reqwest::Response {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header("authorization", authorization);
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        request.send().await.expect("the API answers")
    }

    /// A token from the test issuer bound to `thumbprint`.
    fn bound_token(&self, thumbprint: &str) -> String {
        self.issuer.mint().subject("alice").claim("cnf", json!({ "jkt": thumbprint })).sign()
    }

    /// A good proof by `key` for `GET path` with `token`.
    fn proof(&self, key: &DpopKey, path: &str, token: &str) -> String {
        key.proof(&Method::GET, &self.htu(path), Some(token), None).unwrap()
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

/// Serves an API for `issuer` behind `layer(BearerAuthLayer::new(validator).dpop(verifier))`,
/// where `verifier` is given the API's own base URL (a public URL may be chosen instead).
async fn serve_api(
    issuer: &TestIssuer,
    validator: Validator,
    verifier: impl FnOnce(&str) -> DpopVerifier,
    layer: impl FnOnce(BearerAuthLayer) -> BearerAuthLayer,
) -> Api {
    let (listener, base) = listen().await;
    let verifier = verifier(&base);
    let public = verifier.public_url().to_owned();
    let reached = Arc::new(AtomicUsize::new(0));
    let count = reached.clone();
    let me = move |claims: Claims| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Json(claims)
        }
    };
    let app = Router::new()
        .route("/admin", get(me.clone()))
        .route_layer(RequireScopeLayer::new(["admin"]))
        .route("/me", get(me.clone()).post(me))
        .layer(layer(BearerAuthLayer::new(validator).dpop(verifier)));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Api { base, public, issuer: issuer.clone(), reached, http }
}

fn validator_for(issuer: &TestIssuer, configure: impl FnOnce(ValidatorBuilder) -> ValidatorBuilder) -> Validator {
    configure(Validator::builder().issuer(issuer.issuer()).audience(issuer.audience())).build().unwrap()
}

/// An API with the verifier configured by `verifier` on its own base URL.
async fn api_with(verifier: impl FnOnce(DpopVerifierBuilder) -> DpopVerifierBuilder) -> Api {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator_for(&issuer, |v| v);
    serve_api(&issuer, validator, |base| verifier(DpopVerifier::builder(base)).build().unwrap(), |layer| layer).await
}

/// An API with the defaults: DPoP allowed, no nonces, an in-memory replay cache.
async fn api() -> Api {
    api_with(|v| v).await
}

fn challenge(response: &reqwest::Response) -> &str {
    response.headers().get("www-authenticate").map_or("", |v| v.to_str().unwrap())
}

/// The `error` of the first challenge that has one.
fn error(response: &reqwest::Response) -> Option<String> {
    let challenge = challenge(response);
    let start = challenge.find("error=\"")? + "error=\"".len();
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_owned())
}

/// The `algs` the `DPoP` challenge lists by default: every asymmetric algorithm.
fn default_algs() -> String {
    Algorithm::ALL.iter().filter(|alg| !alg.is_symmetric()).map(|alg| alg.as_str()).collect::<Vec<_>>().join(" ")
}

/// Asserts a 401 with this error code in the challenge, and that the handler was not reached.
fn assert_refused(api: &Api, response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{}", challenge(&response));
    assert_eq!(error(&response).as_deref(), Some(code), "{}", challenge(&response));
    assert_eq!(api.reached(), 0, "a refused request reached the handler");
}

// ---------------------------------------------------------------- a key held here

/// A P-256 key used with aws-lc-rs directly, so that any header and claims can be signed.
struct HandKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl HandKey {
    fn new() -> HandKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])});
        HandKey { pair, jwk }
    }

    /// RFC 7638, computed here: the SHA-256 of the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        B64.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    /// Claims a good proof for `GET url` with `token` has.
    fn claims(url: &url::Url, token: &str) -> Value {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        json!({"jti": B64.encode(jti), "htm": "GET", "htu": url.as_str(), "iat": now(), "ath": ath(token)})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }

    /// A good proof for `GET url` with `token`, but for the changes `edit` makes.
    fn proof_with(&self, url: &url::Url, token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = (self.header(), HandKey::claims(url, token));
        edit(&mut header, &mut claims);
        self.sign(&header, &claims)
    }
}

fn ath(token: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// An API, a hand-held key, a token bound to it, and the URL of `/me`.
async fn hand_setup() -> (Api, HandKey, String, url::Url) {
    let api = api().await;
    let key = HandKey::new();
    let token = api.bound_token(&key.thumbprint());
    let url = api.htu("/me");
    (api, key, token, url)
}

// ---------------------------------------------------------------- the good case

#[tokio::test]
async fn a_good_proof_is_accepted_and_the_claims_reach_the_handler() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let response = api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    assert!(response.headers().get("dpop-nonce").is_none(), "no nonces unless required");
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    // The same with POST, whose proof says POST.
    let post = key.proof(&Method::POST, &api.htu("/me"), Some(&token), None).unwrap();
    let response = api.send(Method::POST, "/me", &format!("DPoP {token}"), &[&post]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    assert_eq!(api.reached(), 2);
}

#[tokio::test]
async fn a_hand_made_proof_with_the_right_claims_is_accepted() {
    // The control for every hand-made proof below: only what each changes makes it fail.
    let (api, key, token, url) = hand_setup().await;
    let response = api.dpop("/me", &token, &[&key.proof_with(&url, &token, |_, _| {})]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
}

// ---------------------------------------------------------------- RFC 9449 §4.3, check by check

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let proof = api.proof(&key, "/me", &token);
    assert_eq!(api.dpop("/me", &token, &[&proof]).await.status(), StatusCode::OK);
    let replay = api.dpop("/me", &token, &[&proof]).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error(&replay).as_deref(), Some("invalid_dpop_proof"));
    assert_eq!(api.reached(), 1);
    // A new proof for the same request is fine.
    assert_eq!(api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let for_post = key.proof(&Method::POST, &api.htu("/me"), Some(&token), None).unwrap();
    let response = api.dpop("/me", &token, &[&for_post]).await;
    assert_refused(&api, response, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_for_another_path_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let response = api.dpop("/me", &token, &[&api.proof(&key, "/other", &token)]).await;
    assert_refused(&api, response, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_for_another_host_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let elsewhere: url::Url = "http://other.example/me".parse().unwrap();
    let proof = key.proof(&Method::GET, &elsewhere, Some(&token), None).unwrap();
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
    // Another port of the same host is another origin too.
    let mut other_port = api.htu("/me");
    other_port.set_port(Some(other_port.port().unwrap().wrapping_add(1))).unwrap();
    let proof = key.proof(&Method::GET, &other_port, Some(&token), None).unwrap();
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_query_in_the_request_or_in_htu_does_not_matter() {
    let (api, key, token, _) = hand_setup().await;
    // A request with a query; the proof's htu has none (RFC 9449 §4.2).
    let proof = key.proof_with(&api.htu("/me"), &token, |_, _| {});
    let response = api.dpop("/me?page=2", &token, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    // A proof whose htu keeps a query and a fragment: they are ignored in the comparison.
    let proof = key.proof_with(&api.htu("/me?x=1#frag"), &token, |_, _| {});
    let response = api.dpop("/me", &token, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
}

#[tokio::test]
async fn a_stale_proof_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let stale = key.proof_with(&url, &token, |_, claims| claims["iat"] = json!(now() - 3600));
    assert_refused(&api, api.dpop("/me", &token, &[&stale]).await, "invalid_dpop_proof");
    // Within the 60 s it may be old, it passes.
    let recent = key.proof_with(&url, &token, |_, claims| claims["iat"] = json!(now() - 30));
    assert_eq!(api.dpop("/me", &token, &[&recent]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proof_from_the_future_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let future = key.proof_with(&url, &token, |_, claims| claims["iat"] = json!(now() + 3600));
    assert_refused(&api, api.dpop("/me", &token, &[&future]).await, "invalid_dpop_proof");
    // A clock a little ahead, within the leeway, passes.
    let ahead = key.proof_with(&url, &token, |_, claims| claims["iat"] = json!(now() + 2));
    assert_eq!(api.dpop("/me", &token, &[&ahead]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proof_without_ath_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let proof = key.proof_with(&url, &token, |_, claims| {
        claims.as_object_mut().unwrap().remove("ath");
    });
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_missing_a_required_claim_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    for claim in ["jti", "htm", "htu", "iat"] {
        let proof = key.proof_with(&url, &token, |_, claims| {
            claims.as_object_mut().unwrap().remove(claim);
        });
        let response = api.dpop("/me", &token, &[&proof]).await;
        assert_eq!(error(&response).as_deref(), Some("invalid_dpop_proof"), "without {claim}");
    }
    assert_eq!(api.reached(), 0);
}

#[tokio::test]
async fn a_proof_for_another_access_token_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    // Another token bound to the same key: the proof names that one.
    let other = api.bound_token(&key.thumbprint());
    let proof = key.proof_with(&url, &token, |_, claims| claims["ath"] = json!(ath(&other)));
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_tokens_is_refused_as_invalid_token() {
    let api = api().await;
    let (owner, thief) = (DpopKey::generate().unwrap(), DpopKey::generate().unwrap());
    let token = api.bound_token(owner.thumbprint());
    let response = api.dpop("/me", &token, &[&api.proof(&thief, "/me", &token)]).await;
    assert_eq!(challenge(&response), format!(r#"DPoP error="invalid_token", algs="{}", Bearer"#, default_algs()));
    assert_refused(&api, response, "invalid_token");
}

#[tokio::test]
async fn an_hmac_proof_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let secret = [7u8; 32];
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": B64.encode(secret)}});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(HandKey::claims(&url, &token).to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), input.as_bytes());
    let proof = format!("{input}.{}", B64.encode(tag.as_ref()));
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
    // And HS256 with the proof's own EC key named in the header.
    let mislabelled = key.proof_with(&url, &token, |header, _| header["alg"] = json!("HS256"));
    assert_refused(&api, api.dpop("/me", &token, &[&mislabelled]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_with_an_algorithm_off_the_allow_list_is_refused() {
    let api = api_with(|v| v.algorithms([Algorithm::EdDSA])).await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let es256 = api.proof(&key, "/me", &token);
    let response = api.dpop("/me", &token, &[&es256]).await;
    assert_eq!(challenge(&response), r#"DPoP error="invalid_dpop_proof", algs="EdDSA", Bearer"#);
    assert_refused(&api, response, "invalid_dpop_proof");
    let ed25519 = DpopKey::generate_for(Algorithm::EdDSA).unwrap();
    let token = api.bound_token(ed25519.thumbprint());
    assert_eq!(api.dpop("/me", &token, &[&api.proof(&ed25519, "/me", &token)]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unsigned_proof_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let mut header = key.header();
    header["alg"] = json!("none");
    let unsigned =
        format!("{}.{}.", B64.encode(header.to_string()), B64.encode(HandKey::claims(&url, &token).to_string()));
    assert_refused(&api, api.dpop("/me", &token, &[&unsigned]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_whose_signature_is_not_its_keys_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    // The header names the token's key; another key signed.
    let forger = HandKey::new();
    let proof = forger.proof_with(&url, &token, |header, _| header["jwk"] = key.jwk.clone());
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_carrying_a_private_key_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let proof = key.proof_with(&url, &token, |header, _| header["jwk"]["d"] = json!(B64.encode([1u8; 32])));
    assert_refused(&api, api.dpop("/me", &token, &[&proof]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_proof_with_the_wrong_typ_is_refused() {
    let (api, key, token, url) = hand_setup().await;
    let jwt = key.proof_with(&url, &token, |header, _| header["typ"] = json!("JWT"));
    assert_refused(&api, api.dpop("/me", &token, &[&jwt]).await, "invalid_dpop_proof");
    let none = key.proof_with(&url, &token, |header, _| {
        header.as_object_mut().unwrap().remove("typ");
    });
    assert_refused(&api, api.dpop("/me", &token, &[&none]).await, "invalid_dpop_proof");
}

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let (one, two) = (api.proof(&key, "/me", &token), api.proof(&key, "/me", &token));
    let response = api.dpop("/me", &token, &[&one, &two]).await;
    assert_eq!(challenge(&response), format!(r#"DPoP error="invalid_dpop_proof", algs="{}", Bearer"#, default_algs()));
    assert_refused(&api, response, "invalid_dpop_proof");
    // Neither was spent: each alone is still good.
    assert_eq!(api.dpop("/me", &token, &[&one]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_dpop_scheme_without_a_proof_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    assert_refused(&api, api.dpop("/me", &token, &[]).await, "invalid_dpop_proof");
}

// ---------------------------------------------------------------- bearer and DPoP side by side

#[tokio::test]
async fn a_bound_token_sent_as_a_bearer_token_is_refused() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let response = api.bearer("/me", &api.bound_token(key.thumbprint())).await;
    // The error goes to the scheme used, and the challenge offers DPoP beside it.
    assert_eq!(challenge(&response), format!(r#"Bearer error="invalid_token", DPoP algs="{}""#, default_algs()));
    assert_refused(&api, response, "invalid_token");
    // An unbound token is still a good bearer token here.
    assert_eq!(api.bearer("/me", &api.issuer.mint().sign()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_token_with_a_dpop_header_is_a_bad_request() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.issuer.mint().sign();
    let proof = api.proof(&key, "/me", &token);
    let response = api.send(Method::GET, "/me", &format!("Bearer {token}"), &[&proof]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error(&response).as_deref(), Some("invalid_request"));
    assert_eq!(api.reached(), 0);
}

#[tokio::test]
async fn an_unbound_token_with_a_proof_is_refused() {
    // The DPoP scheme proves possession of the key the token is bound to; this one is
    // bound to none, so a proof proves nothing about it.
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.issuer.mint().sign();
    let response = api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await;
    assert_refused(&api, response, "invalid_token");
}

// ---------------------------------------------------------------- server nonces (RFC 9449 §8)

#[tokio::test]
async fn a_required_nonce_is_handed_out_and_then_accepted() {
    let api = api_with(|v| v.require_nonce()).await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let first = api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await;
    let nonce = first.headers().get("dpop-nonce").expect("a nonce to retry with").to_str().unwrap().to_owned();
    assert_refused(&api, first, "use_dpop_nonce");

    let retry = key.proof(&Method::GET, &api.htu("/me"), Some(&token), Some(&nonce)).unwrap();
    let response = api.dpop("/me", &token, &[&retry]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    assert!(response.headers().contains_key("dpop-nonce"), "the success carries the nonce for the next request");
    assert_eq!(api.reached(), 1);
}

#[tokio::test]
async fn a_nonce_made_with_another_secret_is_refused() {
    let api = api_with(|v| v.require_nonce()).await;
    let other = api_with(|v| v.require_nonce()).await;
    let key = DpopKey::generate().unwrap();
    let token = other.bound_token(key.thumbprint());
    let ask = other.dpop("/me", &token, &[&other.proof(&key, "/me", &token)]).await;
    let foreign = ask.headers()["dpop-nonce"].to_str().unwrap().to_owned();

    let token = api.bound_token(key.thumbprint());
    let proof = key.proof(&Method::GET, &api.htu("/me"), Some(&token), Some(&foreign)).unwrap();
    let response = api.dpop("/me", &token, &[&proof]).await;
    let fresh = response.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_ne!(fresh, foreign);
    assert_refused(&api, response, "use_dpop_nonce");
}

#[tokio::test]
async fn an_expired_nonce_is_refused_with_a_fresh_one() {
    // A nonce lives in the period it was made in and the next: two periods later it is gone.
    let api = api_with(|v| v.require_nonce().nonce_period(Duration::from_secs(1))).await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let ask = api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await;
    let nonce = ask.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let proof = key.proof(&Method::GET, &api.htu("/me"), Some(&token), Some(&nonce)).unwrap();
    let response = api.dpop("/me", &token, &[&proof]).await;
    let fresh = response.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_ne!(fresh, nonce, "nonces rotate");
    assert_refused(&api, response, "use_dpop_nonce");
}

// ---------------------------------------------------------------- policies

#[tokio::test]
async fn dpop_required_refuses_an_unbound_bearer_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator_for(&issuer, |v| v.dpop(DpopMode::Required));
    let api = serve_api(&issuer, validator, |base| DpopVerifier::builder(base).build().unwrap(), |l| l).await;
    let response = api.bearer("/me", &issuer.mint().sign()).await;
    // Only DPoP is offered: bearer tokens are not accepted at all.
    assert_eq!(challenge(&response), format!(r#"DPoP error="invalid_token", algs="{}""#, default_algs()));
    assert_refused(&api, response, "invalid_token");
    let anonymous = api.http.get(format!("{}/me", api.base)).send().await.unwrap();
    assert_eq!(challenge(&anonymous), format!(r#"DPoP algs="{}""#, default_algs()));

    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    assert_eq!(api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn dpop_off_refuses_dpop() {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator_for(&issuer, |v| v.dpop(DpopMode::Off));
    let api = serve_api(&issuer, validator, |base| DpopVerifier::builder(base).build().unwrap(), |l| l).await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let response = api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await;
    assert_refused(&api, response, "invalid_token");
    // Nor does the bound token pass as a bearer token; an unbound one does.
    assert_refused(&api, api.bearer("/me", &token).await, "invalid_token");
    assert_eq!(api.bearer("/me", &issuer.mint().sign()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_issuer_may_have_its_own_dpop_policy() {
    let (strict, legacy, plain) =
        (TestIssuer::start().await.unwrap(), TestIssuer::start().await.unwrap(), TestIssuer::start().await.unwrap());
    let validator = Validator::builder()
        .issuer(Issuer::new(strict.issuer()).dpop(DpopMode::Required))
        .issuer(Issuer::new(legacy.issuer()).dpop(DpopMode::Off))
        .issuer(plain.issuer())
        .audience(TestIssuer::DEFAULT_AUDIENCE)
        .build()
        .unwrap();
    let api = serve_api(&strict, validator, |base| DpopVerifier::builder(base).build().unwrap(), |l| l).await;
    let key = DpopKey::generate().unwrap();
    let bound = |issuer: &TestIssuer| issuer.mint().claim("cnf", json!({ "jkt": key.thumbprint() })).sign();
    let (api, key) = (&api, &key);
    let with_proof = |token: String| {
        let proof = api.proof(key, "/me", &token);
        async move { api.dpop("/me", &token, &[&proof]).await }
    };

    // Required for `strict`: its bearer tokens are refused, its bound tokens with proofs pass.
    let response = api.bearer("/me", &strict.mint().sign()).await;
    assert_refused(api, response, "invalid_token");
    assert_eq!(with_proof(bound(&strict)).await.status(), StatusCode::OK);
    // Off for `legacy`: bearer tokens pass, DPoP is refused.
    assert_eq!(api.bearer("/me", &legacy.mint().sign()).await.status(), StatusCode::OK);
    let refused = with_proof(bound(&legacy)).await;
    assert_eq!((refused.status(), error(&refused).as_deref()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    // The validator's default, Allowed, for `plain`: both.
    assert_eq!(api.bearer("/me", &plain.mint().sign()).await.status(), StatusCode::OK);
    assert_eq!(with_proof(bound(&plain)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_cached_bound_token_still_needs_a_proof() {
    let issuer = TestIssuer::start().await.unwrap();
    let validator = validator_for(&issuer, |v| v);
    let api = serve_api(
        &issuer,
        validator,
        |base| DpopVerifier::builder(base).build().unwrap(),
        |layer| layer.cache(VerifiedTokenCache::default()),
    )
    .await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let proof = api.proof(&key, "/me", &token);
    assert_eq!(api.dpop("/me", &token, &[&proof]).await.status(), StatusCode::OK, "now in the cache");

    let as_bearer = api.bearer("/me", &token).await;
    assert_eq!((as_bearer.status(), error(&as_bearer).as_deref()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    let without_proof = api.dpop("/me", &token, &[]).await;
    assert_eq!(error(&without_proof).as_deref(), Some("invalid_dpop_proof"));
    let replayed = api.dpop("/me", &token, &[&proof]).await;
    assert_eq!(error(&replayed).as_deref(), Some("invalid_dpop_proof"));
    let thief = DpopKey::generate().unwrap();
    let stolen = api.dpop("/me", &token, &[&api.proof(&thief, "/me", &token)]).await;
    assert_eq!(error(&stolen).as_deref(), Some("invalid_token"));
    assert_eq!(api.reached(), 1);

    assert_eq!(api.dpop("/me", &token, &[&api.proof(&key, "/me", &token)]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bound_token_that_waits_for_new_keys_is_still_held_to_its_proof() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    // The validator has the keys; then the issuer rotates, so the next token's `kid` is
    // unknown and the request waits for the key set to be fetched again.
    assert_eq!(api.bearer("/me", &api.issuer.mint().sign()).await.status(), StatusCode::OK);
    api.issuer.rotate_keys();
    let token = api.bound_token(key.thumbprint());
    let proof = api.proof(&key, "/me", &token);
    let response = api.dpop("/me", &token, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    let replay = api.dpop("/me", &token, &[&proof]).await;
    assert_eq!(error(&replay).as_deref(), Some("invalid_dpop_proof"));

    api.issuer.rotate_keys();
    let token = api.bound_token(key.thumbprint());
    let thief = DpopKey::generate().unwrap();
    let stolen = api.dpop("/me", &token, &[&api.proof(&thief, "/me", &token)]).await;
    assert_eq!(error(&stolen).as_deref(), Some("invalid_token"));
    api.issuer.rotate_keys();
    let as_bearer = api.bearer("/me", &api.bound_token(key.thumbprint())).await;
    assert_eq!(error(&as_bearer).as_deref(), Some("invalid_token"));
    assert_eq!(api.reached(), 2);
}

#[tokio::test]
async fn an_introspected_bound_token_is_held_to_its_proof() {
    let issuer = TestIssuer::start().await.unwrap();
    let introspector = tower_oauth::introspect::Introspector::builder(
        issuer.introspection_endpoint(),
        TestIssuer::DEFAULT_CLIENT_ID,
        TestIssuer::DEFAULT_CLIENT_SECRET,
    )
    .build()
    .unwrap();
    let validator = validator_for(&issuer, |v| v.introspection_fallback(introspector));
    let api = serve_api(&issuer, validator, |base| DpopVerifier::builder(base).build().unwrap(), |l| l).await;
    let key = DpopKey::generate().unwrap();
    let opaque = issuer.mint().subject("olga").claim("cnf", json!({ "jkt": key.thumbprint() })).opaque();

    let response = api.dpop("/me", &opaque, &[&api.proof(&key, "/me", &opaque)]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    assert_eq!(response.json::<Value>().await.unwrap()["sub"], "olga");
    // The answer is cached now; the binding goes with it.
    let as_bearer = api.bearer("/me", &opaque).await;
    assert_eq!(error(&as_bearer).as_deref(), Some("invalid_token"));
    let thief = DpopKey::generate().unwrap();
    let stolen = api.dpop("/me", &opaque, &[&api.proof(&thief, "/me", &opaque)]).await;
    assert_eq!(error(&stolen).as_deref(), Some("invalid_token"));
    assert_eq!(api.reached(), 1);
}

#[tokio::test]
async fn a_dpop_request_without_the_scope_gets_insufficient_scope_on_the_dpop_challenge() {
    let api = api_with(|v| v.require_nonce()).await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let ask = api.dpop("/admin", &token, &[&api.proof(&key, "/admin", &token)]).await;
    let nonce = ask.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof(&Method::GET, &api.htu("/admin"), Some(&token), Some(&nonce)).unwrap();
    let response = api.dpop("/admin", &token, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        format!(r#"DPoP error="insufficient_scope", scope="admin", algs="{}", Bearer"#, default_algs())
    );
    assert!(response.headers().contains_key("dpop-nonce"));
    assert_eq!(api.reached(), 0);

    let admin = api.issuer.mint().scope("admin").claim("cnf", json!({ "jkt": key.thumbprint() })).sign();
    let proof = key.proof(&Method::GET, &api.htu("/admin"), Some(&admin), Some(&nonce)).unwrap();
    assert_eq!(api.dpop("/admin", &admin, &[&proof]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_grpc_request_with_a_bad_proof_gets_unauthenticated() {
    let api = api().await;
    let key = DpopKey::generate().unwrap();
    let token = api.bound_token(key.thumbprint());
    let for_post = key.proof(&Method::POST, &api.htu("/me"), Some(&token), None).unwrap();
    let response = api
        .http
        .get(format!("{}/me", api.base))
        .header("content-type", "application/grpc")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", for_post)
        .send()
        .await
        .unwrap();
    // gRPC errors are a 200 with the status in the headers ("trailers-only").
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["grpc-message"], "invalid_dpop_proof");
    assert_eq!(error(&response).as_deref(), Some("invalid_dpop_proof"));
    assert_eq!(api.reached(), 0);
}

#[tokio::test]
async fn a_token_from_the_test_issuers_token_endpoint_works_with_its_proofs() {
    let issuer = TestIssuer::builder().dpop_nonce().start().await.unwrap();
    let validator = validator_for(&issuer, |v| v);
    let api = serve_api(&issuer, validator, |base| DpopVerifier::builder(base).build().unwrap(), |l| l).await;
    let key = DpopKey::generate().unwrap();
    let token_url: url::Url = issuer.token_endpoint().parse().unwrap();
    let request = |nonce: Option<String>| {
        let proof = key.proof(&Method::POST, &token_url, None, nonce.as_deref()).unwrap();
        api.http
            .post(issuer.token_endpoint())
            .basic_auth(TestIssuer::DEFAULT_CLIENT_ID, Some(TestIssuer::DEFAULT_CLIENT_SECRET))
            .header("dpop", proof)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let first = request(None).await.unwrap();
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let answer: Value = request(Some(nonce)).await.unwrap().json().await.unwrap();
    assert_eq!(answer["token_type"], "DPoP");
    let token = answer["access_token"].as_str().unwrap();

    let response = api.dpop("/me", token, &[&api.proof(&key, "/me", token)]).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", challenge(&response));
    assert_eq!(response.json::<Value>().await.unwrap()["cnf"]["jkt"], key.thumbprint());
    let as_bearer = api.bearer("/me", token).await;
    assert_eq!(error(&as_bearer).as_deref(), Some("invalid_token"));
}

// ---------------------------------------------------------------- replicas sharing Redis

/// An API whose proofs are remembered in `redis` under a prefix every replica shares, and
/// whose public URL (the one proofs name) is the same for every replica.
async fn replica(issuer: &TestIssuer, redis: &RedisServer, fallback: bool) -> Api {
    let store = RedisTokenStore::new(&redis.url()).unwrap();
    let cache = DpopReplayCache::shared(store, "dpop:test:").store_timeout(Duration::from_secs(2));
    let cache = if fallback { cache.dangerous_local_fallback() } else { cache };
    let validator = validator_for(issuer, |v| v);
    serve_api(
        issuer,
        validator,
        |_| DpopVerifier::builder("http://api.test").replay_cache(cache).build().unwrap(),
        |l| l,
    )
    .await
}

#[tokio::test]
async fn a_proof_accepted_by_one_replica_is_refused_by_another() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let (one, two) = (replica(&issuer, &redis, false).await, replica(&issuer, &redis, false).await);
    let key = DpopKey::generate().unwrap();
    let token = one.bound_token(key.thumbprint());
    let proof = one.proof(&key, "/me", &token);

    assert_eq!(one.dpop("/me", &token, &[&proof]).await.status(), StatusCode::OK);
    let keys = redis.keys().await;
    assert!(keys.len() == 1 && keys[0].starts_with("dpop:test:"), "{keys:?}");
    let replay = two.dpop("/me", &token, &[&proof]).await;
    assert_refused(&two, replay, "invalid_dpop_proof");
    // The other replica takes proofs it has not seen anywhere.
    assert_eq!(two.dpop("/me", &token, &[&two.proof(&key, "/me", &token)]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_redis_proofs_are_refused_with_503_unless_the_local_fallback_is_on() {
    let mut redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let (strict, lenient) = (replica(&issuer, &redis, false).await, replica(&issuer, &redis, true).await);
    let key = DpopKey::generate().unwrap();
    let token = strict.bound_token(key.thumbprint());
    assert_eq!(strict.dpop("/me", &token, &[&strict.proof(&key, "/me", &token)]).await.status(), StatusCode::OK);
    redis.stop();

    let unlucky = strict.proof(&key, "/me", &token);
    let refused = strict.dpop("/me", &token, &[&unlucky]).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "fail closed");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(strict.reached(), 1);

    let proof = lenient.proof(&key, "/me", &token);
    assert_eq!(lenient.dpop("/me", &token, &[&proof]).await.status(), StatusCode::OK, "the named risk");
    let replay = lenient.dpop("/me", &token, &[&proof]).await;
    assert_eq!(error(&replay).as_deref(), Some("invalid_dpop_proof"), "this process still remembers");
    // Bearer tokens never needed the replay cache.
    assert_eq!(strict.bearer("/me", &issuer.mint().sign()).await.status(), StatusCode::OK);

    // Once Redis is back, the proof refused for the outage was accepted nowhere: the
    // client may send it again, as `Retry-After` invited it to.
    redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let probe = strict.dpop("/me", &token, &[&strict.proof(&key, "/me", &token)]).await;
        if probe.status() == StatusCode::OK {
            break;
        }
        assert_eq!(probe.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(tokio::time::Instant::now() < deadline, "the replay cache did not reconnect to Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = strict.dpop("/me", &token, &[&unlucky]).await;
    assert_eq!(retried.status(), StatusCode::OK, "{}", challenge(&retried));
    let replay = strict.dpop("/me", &token, &[&unlucky]).await;
    assert_eq!(error(&replay).as_deref(), Some("invalid_dpop_proof"), "and then it is spent");
}

#[tokio::test]
async fn a_proof_accepted_by_one_resource_server_process_is_refused_by_another() {
    let redis = RedisServer::start().await;
    let issuer = TestIssuer::start().await.unwrap();
    let env = [
        ("OAUTH_ISSUER", issuer.issuer().to_owned()),
        ("OAUTH_AUDIENCE", issuer.audience().to_owned()),
        ("PUBLIC_URL", "http://api.test".to_owned()),
        ("REDIS_URL", redis.url()),
    ];
    let ((_one, one), (_two, two)) =
        (crate::resource_server::start(&env).await, crate::resource_server::start(&env).await);
    let key = DpopKey::generate().unwrap();
    let token = issuer.mint().claim("cnf", json!({ "jkt": key.thumbprint() })).sign();
    let htu: url::Url = "http://api.test/me".parse().unwrap();
    let proof = key.proof(&Method::GET, &htu, Some(&token), None).unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |base: &str, proof: &str| {
        http.get(format!("{base}/me")).header("authorization", format!("DPoP {token}")).header("dpop", proof).send()
    };

    let accepted = call(&one, &proof).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK, "{}", challenge(&accepted));
    assert_eq!(accepted.json::<Value>().await.unwrap()["cnf"]["jkt"], key.thumbprint());
    let replay = call(&two, &proof).await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error(&replay).as_deref(), Some("invalid_dpop_proof"), "{}", challenge(&replay));
    let fresh = key.proof(&Method::GET, &htu, Some(&token), None).unwrap();
    assert_eq!(call(&two, &fresh).await.unwrap().status(), StatusCode::OK);
}

// ---------------------------------------------------------------- certificate-bound tokens (RFC 8705)

#[tokio::test]
async fn a_certificate_bound_token_is_accepted_only_with_its_certificate() {
    let issuer = TestIssuer::start().await.unwrap();
    let ca = Ca::new("test ca");
    let app = Router::new()
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .layer(BearerAuthLayer::new(validator_for(&issuer, |v| v)).cache(VerifiedTokenCache::default()));
    let base = serve_rustls(&ca, &ca.server(), app).await;
    let (alice, bob) = (ca.client("alice"), ca.client("bob"));
    let token = issuer.mint().subject("alice").claim("cnf", json!({ "x5t#S256": alice.thumbprint() })).sign();
    let call = |identity: Option<&crate::mtls::Credentials>, token: &str| {
        let client = reqwest_client(&ca, identity).build().unwrap();
        let request = client.get(format!("{base}/me")).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };

    // The first call puts the token in the verified-token cache; the binding goes with it.
    let with_alice = call(Some(&alice), &token).await;
    assert_eq!(with_alice.status(), StatusCode::OK, "{}", challenge(&with_alice));
    assert_eq!(with_alice.json::<Value>().await.unwrap()["sub"], "alice");
    for (who, identity) in [("another certificate", Some(&bob)), ("no certificate", None)] {
        let response = call(identity, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{who}");
        assert_eq!(error(&response).as_deref(), Some("invalid_token"), "{who}");
    }
    // An unbound token needs no certificate.
    assert_eq!(call(None, &issuer.mint().sign()).await.status(), StatusCode::OK);
}
