//! Secrets never appear in `Debug`, `Display`, logs or errors.
//!
//! The secrets: a client secret with characters that change under form- and
//! percent-encoding, refresh tokens, an authorization code, access tokens (JWS and JWE),
//! HMAC secrets, and private JWK members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`). Each is
//! first used for real (a token fetched with it, a token verified or decrypted with it),
//! then looked for, in every form it could take in text, in:
//!
//! - the `Debug` (plain and `{:#?}`) and `Display` of every public configuration, handle
//!   and error type, from a table that is easy to extend;
//! - everything a TRACE-level subscriber records, fields included, during a full flow.
//!
//! `tests/tracing.rs` covers the bearer layer's span fields; this file covers the rest.
//! Deliberately not checked: [`TokenParts`](tower_oauth::testing::TokenParts) (a test
//! helper whose `Display` *is* the token) and the explicit accessors `Secret::expose`,
//! `AccessToken::expose`, `TokenResponse::access_token` and `DecryptedJwe::payload`.
#![cfg(all(feature = "testing", feature = "jwe", feature = "axum", feature = "reqwest-middleware"))]

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{Layer as _, Service, ServiceBuilder, ServiceExt as _};
use tower_oauth::bearer::{Rejection, RequireScopeLayer, ResponseStyle, VerifiedTokenCache};
use tower_oauth::client::{
    AuthMethod, ClientCredentialsLayer, RequestTarget, TokenCache, TokenEndpoint, TokenError, TokenResponse,
};
use tower_oauth::reqwest::ClientCredentialsMiddleware;
use tower_oauth::testing::{Endpoint, Fault, TestEncryptionKey, TestIssuer, TestKey};
use tower_oauth::validate::{DecryptionKeys, verify_jws};
use tower_oauth::{Algorithm, BearerAuthLayer, BuildError, Claims, Jwk, JwkError, KeySet, KeyStore, Secret, Validator};

use support::api::{client_endpoint, serve};
use support::server::{Canned, Scripted};

// ---------------------------------------------------------------------------------------
// Secrets, and every way they could show up in text.
// ---------------------------------------------------------------------------------------

const CLIENT_ID: &str = "orders-service";
/// `/`, `+`, `&`, `=`, `%`, `$` and `~` all change under form- or percent-encoding.
const CLIENT_SECRET: &str = "cl1ent-$ecret/with+plus&amp=eq%25~7d3f9a";
/// Two HMAC secrets (at least 32 bytes): one configured as a `Secret`, one as an `oct` JWK.
const HS_SECRET: &[u8] = b"hs256-configured-secret-5e0c91a7d3b2f846";
const HS_SECRET_JWK: &[u8] = b"hs256-jwk-oct-secret-member-k-c4a8e21f9d7b";
const REDIRECT_URI: &str = "https://app.example/callback";

/// The secrets of one test, each with a label, looked for in every textual form.
#[derive(Default)]
struct Secrets {
    /// (what, the form as text, the form without whitespace)
    forms: Vec<(String, String, String)>,
}

impl Secrets {
    /// Adds a secret given as text (a client secret, a token, a base64url JWK member).
    fn text(&mut self, what: &str, secret: &str) {
        assert!(secret.len() >= 12, "{what} is too short to be looked for reliably");
        self.bytes(what, secret.as_bytes());
        let encoded_id = form(CLIENT_ID.as_bytes());
        // RFC 6749 §2.3.1: the Basic credentials, as they go on the wire.
        let basic = format!("{encoded_id}:{}", form(secret.as_bytes()));
        self.push(what, "basic credentials", STANDARD.encode(basic));
        // A JWK member is base64url of the real bytes: look for those too.
        if let Ok(decoded) = URL_SAFE_NO_PAD.decode(secret)
            && decoded.len() >= 12
        {
            self.bytes(&format!("{what} (decoded)"), &decoded);
        }
    }

    /// Adds a secret given as bytes.
    fn bytes(&mut self, what: &str, secret: &[u8]) {
        let lossy = String::from_utf8_lossy(secret).into_owned();
        self.push(what, "raw", lossy.clone());
        self.push(what, "form-urlencoded", form(secret));
        self.push(
            what,
            "percent-encoded",
            percent_encoding::percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
        );
        self.push(what, "JSON string", json!(lossy).to_string().trim_matches('"').to_owned());
        self.push(what, "Debug string", format!("{lossy:?}").trim_matches('"').to_owned());
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            self.push(what, "base64", engine.encode(secret));
        }
        self.push(what, "hex", secret.iter().map(|b| format!("{b:02x}")).collect());
        let list = format!("{secret:?}");
        self.push(what, "Debug of bytes", list.trim_matches(['[', ']']).to_owned());
    }

    fn push(&mut self, what: &str, form: &str, text: String) {
        if !self.forms.iter().any(|(_, t, _)| *t == text) {
            let squeezed = squeeze(&text);
            self.forms.push((format!("{what} ({form})"), text, squeezed));
        }
    }

    /// The first secret found in `text`, described. Whitespace is ignored, so that a
    /// byte list printed one element a line (`{:#?}`) is found too.
    fn found_in(&self, text: &str) -> Option<&str> {
        let squeezed = squeeze(text);
        self.forms
            .iter()
            .find(|(_, form, squeezed_form)| text.contains(form.as_str()) || squeezed.contains(squeezed_form.as_str()))
            .map(|(what, _, _)| what.as_str())
    }

    /// Proves the search works: every secret is found when it is shown.
    fn check_that_leaks_are_found(&self) {
        for (what, form, _) in &self.forms {
            let leaky = format!("Leaky {{ field: {form:?} }} and {form}");
            assert!(self.found_in(&leaky).is_some(), "a leak of {what} would go unnoticed");
        }
    }
}

fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn form(bytes: &[u8]) -> String {
    url::form_urlencoded::byte_serialize(bytes).collect()
}

/// A compact token, and the segments that make it a credential: a JWS's signature, a
/// JWE's encrypted key, ciphertext and tag. (The header and a JWS's payload are no
/// secret: `VerifiedJws` hands them out, `Claims` shows some claims.)
fn token(secrets: &mut Secrets, what: &str, token: &str) {
    secrets.text(what, token);
    let segments: Vec<&str> = token.split('.').collect();
    let credential: &[usize] = match segments.len() {
        3 => &[2],
        5 => &[1, 3, 4],
        _ => &[],
    };
    for &i in credential {
        if segments[i].len() >= 16 {
            secrets.text(&format!("{what}, segment {i}"), segments[i]);
        }
    }
}

/// The secret members of a private JWK Set: RSA's `d`, `p`, `q`, `dp`, `dq`, `qi`, EC's
/// `d`, and `k`.
fn private_members(secrets: &mut Secrets, what: &str, jwks: &str) {
    let set: Value = serde_json::from_str(jwks).unwrap();
    for key in set["keys"].as_array().unwrap() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if let Some(value) = key.get(member).and_then(Value::as_str) {
                secrets.text(&format!("{what} `{member}`"), value);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Renderings: `Debug`, `{:#?}` and `Display` of values, collected into a table.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Shown(Vec<(String, String)>);

impl Shown {
    fn debug(&mut self, what: &str, value: &dyn std::fmt::Debug) {
        self.0.push((format!("{what} (Debug)"), format!("{value:?}")));
        self.0.push((format!("{what} (Debug, alternate)"), format!("{value:#?}")));
    }

    fn display(&mut self, what: &str, value: &dyn std::fmt::Display) {
        self.0.push((format!("{what} (Display)"), value.to_string()));
    }

    /// `Debug` and `Display`, and the `Display` of every `source()` below it.
    fn error(&mut self, what: &str, error: &(dyn std::error::Error + 'static)) {
        self.debug(what, &error);
        self.display(what, &error);
        let mut source = error.source();
        while let Some(inner) = source {
            self.display(&format!("{what}, source"), &inner);
            source = inner.source();
        }
    }

    /// Every rendering that shows a secret, described.
    fn leaks(&self, secrets: &Secrets) -> Vec<String> {
        secrets.check_that_leaks_are_found();
        self.0
            .iter()
            .filter_map(|(what, text)| secrets.found_in(text).map(|secret| format!("{what} shows {secret}:\n  {text}")))
            .collect()
    }

    fn assert_no_secret(&self, secrets: &Secrets) {
        let leaks = self.leaks(secrets);
        assert!(leaks.is_empty(), "{} rendering(s) show a secret:\n{}", leaks.len(), leaks.join("\n"));
    }
}

/// An inner service with `Debug`, for the services whose `Debug` needs one.
#[derive(Debug, Clone)]
struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

// ---------------------------------------------------------------------------------------
// The set-up both tests share: an issuer, keys, a validator, an API behind it.
// ---------------------------------------------------------------------------------------

struct World {
    issuer: TestIssuer,
    encryption: Vec<TestEncryptionKey>,
    decryption: DecryptionKeys,
    hs_key: TestKey,
    validator: Validator,
    secrets: Secrets,
}

/// An issuer that knows our client and encrypts the access tokens it issues, a validator
/// for its tokens (JWE with our private keys) and for an HMAC issuer, and the secrets.
async fn world() -> World {
    let encryption: Vec<TestEncryptionKey> =
        ["RSA-OAEP-256", "ECDH-ES+A256KW", "A256KW", "dir"].into_iter().map(TestEncryptionKey::generate).collect();
    let issuer = TestIssuer::builder()
        .client(CLIENT_ID, CLIENT_SECRET)
        .encrypt_access_tokens(encryption[0].clone())
        .start()
        .await
        .unwrap();
    let mut private = Vec::new();
    for key in &encryption {
        let set: Value = serde_json::from_str(&key.private_jwks()).unwrap();
        private.extend(set["keys"].as_array().unwrap().iter().cloned());
    }
    let decryption = DecryptionKeys::from_jwks(json!({ "keys": private }).to_string().as_bytes()).unwrap();

    let hs_key = TestKey::hmac(Algorithm::HS256, HS_SECRET).with_kid("hs-configured");
    let validator = Validator::builder()
        .issuer(issuer.issuer())
        .issuer_with_keys("https://internal.example", hmac_store())
        .audience(issuer.audience())
        .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::HS256])
        .decryption_keys(decryption.clone())
        .build()
        .unwrap();

    let mut secrets = Secrets::default();
    secrets.text("client secret", CLIENT_SECRET);
    secrets.bytes("HMAC secret", HS_SECRET);
    secrets.bytes("HMAC secret of the oct JWK", HS_SECRET_JWK);
    for key in &encryption {
        private_members(&mut secrets, &format!("{} private key", key.alg()), &key.private_jwks());
    }
    World { issuer, encryption, decryption, hs_key, validator, secrets }
}

/// The HMAC issuer's keys: one configured secret, one `oct` JWK, both trusted.
fn hmac_store() -> KeyStore {
    let mut keys = KeySet::from_jwks_trusted(
        json!({"keys": [{"kty": "oct", "kid": "hs-jwk", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(HS_SECRET_JWK)}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    keys.insert(Jwk::hmac(Algorithm::HS256, &Secret::from(HS_SECRET), Some("hs-configured")).unwrap());
    KeyStore::from_key_set(keys)
}

/// An API on 127.0.0.1 behind `BearerAuthLayer` (verbose, with a realm and the
/// verified-token cache). `/flaky` answers 401 to its first request.
async fn api(validator: Validator) -> String {
    let flaky = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/me", get(|claims: Claims| async move { Json(claims) }))
        .route(
            "/flaky",
            get(move || async move {
                match flaky.fetch_add(1, Ordering::SeqCst) {
                    0 => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::OK,
                }
            }),
        )
        .route("/admin", get(|| async { "admin" }).route_layer(RequireScopeLayer::new(["admin"])))
        .layer(BearerAuthLayer::new(validator).realm("api").verbose_errors(true).cache(VerifiedTokenCache::default()));
    serve(app).await
}

// ---------------------------------------------------------------------------------------
// Debug and Display of every public type that holds or meets a secret.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn debug_and_display_never_show_a_secret() {
    let World { issuer, encryption, decryption, hs_key, validator, mut secrets } = world().await;
    let mut shown = Shown::default();

    // --- Outbound: builders, endpoints and their grants, with each secret used. ---
    let refresh = issuer.issue_refresh_token(CLIENT_ID, "read", "carol");
    let code = issuer.issue_code(CLIENT_ID, REDIRECT_URI, "read", "dave");
    secrets.text("refresh token", &refresh);
    secrets.text("authorization code", &code);

    let builders = [
        ("TokenEndpointBuilder, client_credentials", client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET).scope("read")),
        (
            "TokenEndpointBuilder, refresh_token",
            client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET).scope("read").refresh_token(refresh.clone()),
        ),
        (
            "TokenEndpointBuilder, authorization_code",
            client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
                .scope("read")
                .authorization_code(code.clone(), REDIRECT_URI),
        ),
        (
            "TokenEndpointBuilder, client_secret_post",
            client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET).scope("read").auth_method(AuthMethod::ClientSecretPost),
        ),
    ];
    let mut endpoints = Vec::new();
    for (what, builder) in builders {
        shown.debug(what, &builder);
        endpoints.push((what.replace("Builder", ""), builder.build().unwrap()));
    }
    let mut responses = Vec::new();
    for (what, endpoint) in &mut endpoints {
        shown.debug(what, &*endpoint);
        // The secret really is the one the issuer accepts: each grant gets a token.
        let response = endpoint.request_token().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        shown.debug(&format!("{what}, after a token"), &*endpoint);
        token(&mut secrets, &format!("access token from {what}"), response.access_token());
        if let Some(rotated) = response.refresh_token() {
            secrets.text(&format!("refresh token from {what}"), std::str::from_utf8(rotated.expose()).unwrap());
            shown.debug("Secret (a refresh token)", rotated);
        }
        responses.push(response);
    }
    for response in &responses {
        shown.debug("TokenResponse", response);
    }
    shown.debug("CacheKey", endpoints[0].1.key());
    shown.debug("TokenResponse::bearer", &TokenResponse::bearer("bearer-made-by-hand-9f8e7d", None).unwrap());
    secrets.text("hand-made access token", "bearer-made-by-hand-9f8e7d");

    // A cache, the layer, the middleware and a token they hold.
    let builder =
        TokenCache::builder(client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET).scope("read").build().unwrap())
            .default_lifetime(Duration::from_secs(60));
    shown.debug("TokenCacheBuilder", &builder);
    let cache = builder.build().unwrap();
    let access = cache.token().await.unwrap();
    token(&mut secrets, "cached access token", access.expose());
    shown.debug("TokenCache", &cache);
    shown.debug("AccessToken", &*access);
    shown.debug("AccessToken header value", access.header_value());
    assert!(format!("{:?}", access.header_value()).contains("Sensitive"));
    let seen_target = Arc::new(Mutex::new(String::new()));
    let target_debug = seen_target.clone();
    let layer = ClientCredentialsLayer::new(cache.clone()).attach_if(move |target: &RequestTarget<'_>| {
        *target_debug.lock().unwrap() = format!("{target:?}");
        true
    });
    shown.debug("ClientCredentialsLayer", &layer);
    let mut service = layer.layer(Ok200);
    shown.debug("ClientCredentials", &service);
    let request = Request::get("https://api.example/orders")
        .header("cookie", format!("session={CLIENT_SECRET}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let future = tower::ServiceExt::<Request<Empty<Bytes>>>::ready(&mut service).await.unwrap().call(request);
    shown.debug("client::ResponseFuture", &future);
    assert_eq!(future.await.unwrap().status(), StatusCode::OK);
    let target = seen_target.lock().unwrap().clone();
    assert!(target.starts_with("RequestTarget"), "the predicate ran: {target}");
    shown.0.push(("RequestTarget (Debug)".into(), target));
    shown.debug("ClientCredentialsMiddleware", &ClientCredentialsMiddleware::new(cache.clone()));
    shown.debug("Secret", &Secret::from(CLIENT_SECRET));

    // Token errors, each from a real exchange.
    let mut wrong =
        TokenEndpoint::builder(issuer.token_endpoint(), CLIENT_ID, format!("{CLIENT_SECRET}-wrong")).build().unwrap();
    let mut errors: Vec<(&str, TokenError)> = vec![("invalid_client", wrong.request_token().await.unwrap_err())];
    let mut spent = client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
        .scope("read")
        .refresh_token(refresh.clone())
        .build()
        .unwrap();
    errors.push(("invalid_grant (a spent refresh token)", spent.request_token().await.unwrap_err()));
    let mut spent = client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
        .scope("read")
        .authorization_code(code.clone(), REDIRECT_URI)
        .build()
        .unwrap();
    errors.push(("invalid_grant (a spent code)", spent.request_token().await.unwrap_err()));
    for (what, fault) in [
        ("server error", Fault::Status(500)),
        ("rate limited", Fault::TooManyRequests { retry_after: Some(7) }),
        ("not json", Fault::Garbage),
        ("too large", Fault::Oversized(1 << 20)),
        ("transport", Fault::Down),
        ("timeout", Fault::Stall),
    ] {
        issuer.set_fault(Endpoint::Token, fault);
        let mut endpoint = client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
            .scope("read")
            .refresh_token(refresh.clone())
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        errors.push((what, endpoint.request_token().await.unwrap_err()));
    }
    issuer.clear_faults();
    let mut discovery =
        TokenEndpoint::discover("http://127.0.0.1:1/realms/x", CLIENT_ID, CLIENT_SECRET).build().unwrap();
    errors.push(("discovery", discovery.request_token().await.unwrap_err()));
    let odd = Scripted::start(Canned::json(200, r#"{"access_token":"has a space","token_type":"Bearer"}"#)).await;
    let mut odd_endpoint = TokenEndpoint::builder(odd.url("/token"), CLIENT_ID, CLIENT_SECRET).build().unwrap();
    errors.push(("malformed access token", odd_endpoint.request_token().await.unwrap_err()));
    odd.set(Canned::json(200, r#"{"access_token":"abc","token_type":"DPoP"}"#));
    errors.push(("unsupported token type", odd_endpoint.request_token().await.unwrap_err()));
    assert!(errors[0].1.oauth().is_some(), "the wrong secret was refused: {:?}", errors[0].1);
    for (what, error) in &errors {
        shown.error(&format!("TokenError, {what}"), error);
        if let Some(oauth) = error.oauth() {
            shown.debug(&format!("ErrorResponse, {what}"), oauth);
            shown.display(&format!("ErrorResponse, {what}"), oauth);
            shown.display(&format!("ErrorCode, {what}"), oauth.code());
        }
    }
    for (what, result) in [
        ("insecure url", TokenEndpoint::builder("http://idp.example/token", CLIENT_ID, CLIENT_SECRET).build()),
        ("invalid url", TokenEndpoint::builder("::", CLIENT_ID, CLIENT_SECRET).build()),
    ] {
        let error: BuildError = result.unwrap_err();
        shown.error(&format!("BuildError, {what}"), &error);
    }

    // --- Inbound: keys, validators, layers, and what validation produces. ---
    let hs_store = hmac_store();
    shown.debug("KeyStore with HMAC secrets", &hs_store);
    shown.debug("KeySet with HMAC secrets", &*hs_store.keys().unwrap());
    for key in hs_store.keys().unwrap().iter() {
        shown.debug("Jwk (HMAC)", &**key);
    }
    shown.debug("DecryptionKeys", &decryption);
    let validator_builder = Validator::builder()
        .issuer_with_keys("https://internal.example", hmac_store())
        .audience("orders-api")
        .algorithms([Algorithm::HS256])
        .decryption_keys(decryption.clone())
        .dangerous(|d| {
            d.accept_unsigned_encrypted_claims();
        });
    shown.debug("ValidatorBuilder", &validator_builder);
    shown.debug("Validator", &validator);
    for key in &encryption {
        shown.debug("TestEncryptionKey", key);
    }
    shown.debug("TestKey (HMAC)", &hs_key);
    shown.debug("TestIssuer", &issuer);
    shown.debug("TestIssuerBuilder", &TestIssuer::builder().client(CLIENT_ID, CLIENT_SECRET));

    // Tokens: HMAC (both secrets), JWE to every key, and the JWE the token endpoint issues.
    let hs_token = issuer.mint().issuer("https://internal.example").sign_with(&hs_key);
    let hs_jwk_token = issuer
        .mint()
        .issuer("https://internal.example")
        .sign_with(&TestKey::hmac(Algorithm::HS256, HS_SECRET_JWK).with_kid("hs-jwk"));
    let mut accepted =
        vec![("HS256 with the configured secret", hs_token.clone()), ("HS256 with the oct JWK", hs_jwk_token)];
    for key in &encryption {
        accepted.push(("JWE", issuer.mint().scope("read write").encrypt(key)));
    }
    accepted.push(("JWE from the token endpoint", responses[0].access_token().to_owned()));
    for (what, token_text) in &accepted {
        token(&mut secrets, what, token_text);
        let claims = validator.validate(token_text).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        shown.debug(&format!("Claims of {what}"), &claims);
        shown.debug("axum Authenticated<Claims>", &tower_oauth::axum::Authenticated(claims));
    }
    for key in &encryption {
        let jwe = issuer.mint().encrypt(key);
        let decrypted = decryption.decrypt(&jwe).unwrap();
        let inner = std::str::from_utf8(decrypted.payload()).unwrap().to_owned();
        token(&mut secrets, "the signed token inside a JWE", &inner);
        shown.debug("DecryptedJwe", &decrypted);
    }
    let verified = verify_jws(&hs_token, &hs_store.keys().unwrap(), &[Algorithm::HS256]).unwrap();
    shown.debug("VerifiedJws", &verified);

    // Rejections of tokens made with the secrets, through the validator and the layer.
    let forged = [
        issuer.mint().issuer("https://internal.example").sign_with(
            &TestKey::hmac(Algorithm::HS256, b"another-secret-of-32-bytes-at-least!").with_kid("hs-configured"),
        ),
        issuer.mint().issuer("https://internal.example").expired().sign_with(&hs_key),
        issuer.mint().encrypt(&TestEncryptionKey::generate("RSA-OAEP-256").with_kid(encryption[0].kid())),
        issuer.mint().audience("another-api").encrypt(&encryption[1]),
        format!("{}x", responses[1].access_token()),
    ];
    let layer =
        BearerAuthLayer::new(validator.clone()).realm("api").verbose_errors(true).cache(VerifiedTokenCache::default());
    shown.debug("BearerAuthLayer", &layer);
    let cache = VerifiedTokenCache::<Claims>::default();
    let mut protected = BearerAuthLayer::new(validator.clone())
        .verbose_errors(true)
        .cache(cache.clone())
        .layer(RequireScopeLayer::new(["admin"]).layer(Ok200));
    shown.debug("BearerAuth", &protected);
    shown.debug("RequireScopeLayer", &RequireScopeLayer::new(["admin"]));
    for token_text in forged.iter().chain(accepted.iter().map(|(_, t)| t)) {
        token(&mut secrets, "a forged or accepted token", token_text);
        if let Err(error) = validator.validate(token_text).await {
            shown.error("ValidationError", &error);
            let rejection = Rejection::InvalidToken(error);
            shown.error("Rejection", &rejection);
            shown.debug("challenge", &rejection.challenge(&ResponseStyle::default()));
        }
        let request = Request::get("/admin").header("authorization", format!("Bearer {token_text}")).body(()).unwrap();
        let future = tower::ServiceExt::<Request<()>>::ready(&mut protected).await.unwrap().call(request);
        shown.debug("bearer::ResponseFuture", &future);
        let response = future.await.unwrap();
        assert_ne!(response.status(), StatusCode::OK, "no token has the admin scope");
        shown.debug("a rejection's headers", response.headers());
        let body = response.into_body();
        shown.debug("bearer::ResponseBody", &body);
        let bytes = body.collect().await.unwrap().to_bytes();
        shown.0.push(("a rejection's body".into(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    assert!(!cache.is_empty(), "the valid tokens were cached");
    shown.debug("VerifiedTokenCache", &cache);
    let (mut parts, ()) = Request::get("/").body(()).unwrap().into_parts();
    let missing =
        <Claims as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &()).await.unwrap_err();
    shown.error("MissingClaims", &missing);

    // Key errors from secret-bearing key material.
    let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(HS_SECRET_JWK)}).to_string();
    let short = json!({"kty": "oct", "alg": "HS512", "k": URL_SAFE_NO_PAD.encode(HS_SECRET_JWK)}).to_string();
    let jwk_errors: Vec<(&str, JwkError)> = vec![
        ("oct key from an untrusted source", Jwk::from_json(oct.as_bytes()).unwrap_err()),
        ("short HMAC secret", Jwk::from_json_trusted(short.as_bytes()).unwrap_err()),
        ("short configured secret", Jwk::hmac(Algorithm::HS512, &Secret::from(HS_SECRET), None).unwrap_err()),
        ("decryption keys of the wrong use", {
            let mut set: Value = serde_json::from_str(&encryption[0].private_jwks()).unwrap();
            set["keys"][0]["use"] = "sig".into();
            // Keys of the wrong use are skipped, not an error: the set is empty.
            let keys = DecryptionKeys::from_jwks(set.to_string().as_bytes()).unwrap();
            assert!(keys.is_empty());
            DecryptionKeys::from_jwks(&set.to_string().as_bytes()[1..]).unwrap_err()
        }),
    ];
    for (what, error) in &jwk_errors {
        shown.error(&format!("JwkError, {what}"), error);
    }

    shown.assert_no_secret(&secrets);
}

// ---------------------------------------------------------------------------------------
// Logs: everything a TRACE subscriber records during a full flow.
// ---------------------------------------------------------------------------------------

/// Everything written by the process-wide subscriber, installed once (at TRACE, for every
/// target, with `log` records bridged in), so that no task on any thread escapes it.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Writer(Arc<Mutex<Vec<u8>>>);
    impl Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer(buffer.clone());
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .try_init()
            .expect("the only subscriber of this test binary");
        buffer
    })
}

fn logs() -> String {
    String::from_utf8_lossy(&captured().lock().unwrap()).into_owned()
}

/// Every log line that shows a secret, described.
fn log_leaks(secrets: &Secrets) -> Vec<String> {
    secrets.check_that_leaks_are_found();
    let logs = logs();
    // One search of the whole text per form; lines are looked at only to report a leak.
    if secrets.found_in(&logs).is_none() {
        return Vec::new();
    }
    logs.lines().filter_map(|line| secrets.found_in(line).map(|what| format!("log shows {what}:\n  {line}"))).collect()
}

fn assert_logs_hold_no_secret(secrets: &Secrets) {
    let leaks = log_leaks(secrets);
    assert!(leaks.is_empty(), "{} log line(s) show a secret:\n{}", leaks.len(), leaks.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_full_flow_never_show_a_secret() {
    captured();
    let World { issuer, encryption, hs_key, validator, mut secrets, .. } = world().await;
    let api = api(validator.clone()).await;
    tracing::trace!(marker = "field-values-are-captured", "capture check");

    // Outbound with the refresh-token grant and client_secret_post, through the Tower
    // layer over hyper-util's client: a token per request, and a 401 that forces a refresh.
    let refresh = issuer.issue_refresh_token(CLIENT_ID, "read", "carol");
    secrets.text("refresh token", &refresh);
    let endpoint_post = client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
        .scope("read")
        .refresh_token(refresh)
        .auth_method(AuthMethod::ClientSecretPost)
        .build()
        .unwrap();
    let cache = TokenCache::new(endpoint_post).unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache.clone())).service(http);
    for path in ["/me", "/me", "/flaky"] {
        let request = Request::get(format!("{api}{path}")).body(Empty::new()).unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        token(&mut secrets, "access token of the cache", cache.cached().unwrap().expose());
    }
    assert!(cache.cached().unwrap().generation() >= 2, "the 401 forced a new token");

    // The authorization-code grant, then its refresh, with client_secret_basic.
    let code = issuer.issue_code(CLIENT_ID, REDIRECT_URI, "read", "dave");
    secrets.text("authorization code", &code);
    let mut by_code = client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
        .scope("read")
        .authorization_code(code, REDIRECT_URI)
        .build()
        .unwrap();
    for _ in 0..2 {
        let response = by_code.request_token().await.unwrap();
        token(&mut secrets, "access token from the code grant", response.access_token());
        secrets.text("rotated refresh token", std::str::from_utf8(response.refresh_token().unwrap().expose()).unwrap());
    }

    // The reqwest middleware with client_credentials.
    let cache_cc =
        TokenCache::new(client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET).scope("read").build().unwrap()).unwrap();
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ClientCredentialsMiddleware::new(cache_cc.clone()))
        .build();
    let response = reqwest.get(format!("{api}/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    token(&mut secrets, "access token of the middleware", cache_cc.cached().unwrap().expose());

    // Rejected and accepted tokens straight at the API: HMAC, JWE, forged, expired, junk.
    let plain = reqwest::Client::new();
    let sent = [
        (StatusCode::OK, issuer.mint().issuer("https://internal.example").sign_with(&hs_key)),
        (StatusCode::OK, issuer.mint().encrypt(&encryption[1])),
        (StatusCode::OK, issuer.mint().encrypt(&encryption[3])),
        (StatusCode::UNAUTHORIZED, issuer.mint().expired().encrypt(&encryption[2])),
        (StatusCode::UNAUTHORIZED, issuer.mint().tampered_signature()),
        (
            StatusCode::UNAUTHORIZED,
            issuer.mint().issuer("https://internal.example").sign_with(
                &TestKey::hmac(Algorithm::HS256, b"a-wrong-hmac-secret-of-enough-bytes!").with_kid("hs-configured"),
            ),
        ),
        (
            StatusCode::UNAUTHORIZED,
            issuer.mint().encrypt(&TestEncryptionKey::generate("A256KW").with_kid(encryption[2].kid())),
        ),
        (StatusCode::UNAUTHORIZED, "secret-looking-opaque-token-0b5e7f".to_owned()),
        // Valid, but without the admin scope.
        (StatusCode::FORBIDDEN, issuer.mint().encrypt(&encryption[0])),
    ];
    for (i, (expected, token_text)) in sent.iter().enumerate() {
        token(&mut secrets, "a token sent to the API", token_text);
        let path = if *expected == StatusCode::FORBIDDEN { "/admin" } else { "/me" };
        let response = plain.get(format!("{api}{path}")).bearer_auth(token_text).send().await.unwrap();
        assert_eq!(response.status(), *expected, "token {i}");
        // The same again: the verified-token cache answers.
        let again = plain.get(format!("{api}{path}")).bearer_auth(token_text).send().await.unwrap();
        assert_eq!(again.status(), *expected, "token {i}, again");
    }

    // A failing token endpoint: the cache's refresher logs the failures.
    let failing = TokenCache::builder(
        client_endpoint(&issuer, CLIENT_ID, CLIENT_SECRET)
            .scope("read")
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .backoff(Duration::from_millis(10), Duration::from_millis(20))
    .build()
    .unwrap();
    for fault in [Fault::Status(500), Fault::Garbage, Fault::Stall, Fault::TooManyRequests { retry_after: None }] {
        issuer.set_fault(Endpoint::Token, fault);
        assert!(failing.refresh().await.is_err());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    issuer.clear_faults();
    let mut wrong =
        TokenEndpoint::builder(issuer.token_endpoint(), CLIENT_ID, format!("{CLIENT_SECRET}-wrong")).build().unwrap();
    let wrong_cache = TokenCache::new(
        TokenEndpoint::builder(issuer.token_endpoint(), CLIENT_ID, format!("{CLIENT_SECRET}-wrong")).build().unwrap(),
    )
    .unwrap();
    assert!(wrong.request_token().await.is_err());
    assert!(wrong_cache.token().await.is_err());
    secrets.text("wrong client secret", &format!("{CLIENT_SECRET}-wrong"));

    let logs = logs();
    for expected in [
        "marker=\"field-values-are-captured\"",
        "access token obtained",
        // The 401 from `/flaky` made the cache fetch a second token.
        "generation=2",
        "bearer_auth",
        "request rejected",
        "token fetch failed",
        "verified-token cache hit",
    ] {
        assert!(logs.contains(expected), "the logs lack {expected:?}; the capture is not working");
    }
    assert_logs_hold_no_secret(&secrets);
}

/// A token endpoint that echoes the request (the form, with the client secret and the
/// refresh token) in its error response: neither the error nor the logs may repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_response_that_echoes_the_request_shows_no_secret() {
    captured();
    // Secrets of this test alone: the logs are shared with the other tests.
    let (client_secret, refresh) =
        ("echo/client+secret&of=this%test~0e41", "refresh-token-echoed-by-a-careless-server-51c9");
    let mut secrets = Secrets::default();
    secrets.text("client secret", client_secret);
    secrets.text("refresh token", refresh);

    let server = Scripted::start(Canned::status(500)).await;
    let endpoint = |method| {
        TokenEndpoint::builder(server.url("/token"), CLIENT_ID, client_secret)
            .refresh_token(refresh)
            .auth_method(method)
            .build()
            .unwrap()
    };
    let mut shown = Shown::default();
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        // What this client sends; a careless server puts it in its error.
        let mut probe = endpoint(method);
        let _ = probe.request_token().await;
        let sent = server.seen().pop().unwrap();
        let echoed = format!(
            "bad request: {} (authorization: {})",
            String::from_utf8_lossy(&sent.body),
            sent.header("authorization").unwrap_or("none")
        );
        assert!(secrets.found_in(&echoed).is_some(), "the echo carries the secrets: {echoed}");
        server.set(Canned::json(
            400,
            json!({"error": "invalid_request", "error_description": echoed, "error_uri": format!("https://idp.example/errors?request={echoed}")}).to_string(),
        ));
        let error = endpoint(method).request_token().await.unwrap_err();
        assert!(error.oauth().is_some(), "{error:?}");
        shown.error("TokenError echoing the request", &error);
        // Through a cache, whose refresher logs the failure.
        let cache = TokenCache::new(endpoint(method)).unwrap();
        let error = cache.token().await.unwrap_err();
        shown.error("TokenError from the cache", &error);
        server.set(Canned::status(500));
    }
    // Both lists in one message: what the error shows, and what the refresher logged.
    let leaks = [shown.leaks(&secrets), log_leaks(&secrets)].concat();
    assert!(leaks.is_empty(), "{} rendering(s) or log line(s) show a secret:\n{}", leaks.len(), leaks.join("\n"));
}
