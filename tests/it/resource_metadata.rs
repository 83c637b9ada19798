//! Protected resource metadata (RFC 9728) served beside `BearerAuthLayer` in an axum
//! server on 127.0.0.1, whose validator takes the resource identifier for the audience:
//! the document at both well-known paths, `resource_metadata` in every challenge, the
//! RFC 3986 comparison of `aud` with the resource, and the signed metadata checked by
//! an independent JWT library.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::post;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tower_oauth::bearer::RequireScopeLayer;
use tower_oauth::client::ClientKey;
use tower_oauth::resource::ProtectedResourceMetadata;
use tower_oauth::testing::TestIssuer;
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, Validator};

use crate::support::api::{listen, now};

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// An MCP-style server: `POST /mcp` needs `mcp:tools`; its metadata is served beside.
struct Mcp {
    /// `http://127.0.0.1:PORT`
    url: String,
    /// `http://127.0.0.1:PORT/mcp`
    resource: String,
    port: u16,
    issuer: TestIssuer,
    /// How many requests reached `/mcp`.
    reached: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Mcp {
    async fn call(&self, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}/mcp", self.url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.send().await.expect("request is answered")
    }

    async fn well_known(&self, method: Method, path: &str) -> reqwest::Response {
        self.http.request(method, format!("{}{path}", self.url)).send().await.expect("request is answered")
    }

    /// The challenge of a 401 for a token this resource does not accept, worded as the
    /// metadata URL the RFC prescribes, not as the library computes it.
    fn invalid_token(&self) -> String {
        format!(
            r#"Bearer error="invalid_token", scope="mcp:tools mcp:resources", resource_metadata="http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp""#,
            self.port
        )
    }

    /// The document this server must serve.
    fn document(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": [self.issuer.issuer()],
            "scopes_supported": ["mcp:tools", "mcp:resources"],
            "bearer_methods_supported": ["header"],
        })
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

fn challenge(response: &reqwest::Response) -> Option<&str> {
    response.headers().get("www-authenticate").map(|v| v.to_str().unwrap())
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Serves the MCP server on a port bound first, so the resource can name it; the
/// metadata is signed by `signer` when given.
async fn mcp_with(signer: Option<&ClientKey>) -> Mcp {
    let issuer = TestIssuer::start().await.unwrap();
    let (listener, url) = listen().await;
    let port = listener.local_addr().unwrap().port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let validator = Validator::builder().issuer(issuer.issuer()).resource(&resource).build().unwrap();
    let auth = BearerAuthLayer::new(validator).challenge_scope(["mcp:tools", "mcp:resources"]);
    let mut metadata = ProtectedResourceMetadata::from_layer(&auth).unwrap();
    if let Some(key) = signer {
        metadata = metadata.signed_metadata(key.clone(), issuer.issuer());
    }
    let metadata = metadata.build().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let app = Router::new()
        .route(
            "/mcp",
            post(move |claims: Claims| async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Json(claims)
            }),
        )
        .route_layer(RequireScopeLayer::new(["mcp:tools"]))
        .layer(auth)
        .merge(metadata.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Mcp { url, resource, port, issuer, reached, http: reqwest::Client::new() }
}

async fn mcp() -> Mcp {
    mcp_with(None).await
}

#[tokio::test]
async fn the_document_is_served_at_both_well_known_paths_without_a_token() {
    let mcp = mcp().await;
    for path in [format!("{WELL_KNOWN}/mcp"), WELL_KNOWN.to_owned()] {
        let response = mcp.well_known(Method::GET, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), Some("application/json"), "{path}");
        assert_eq!(header(&response, "cache-control"), Some("public, max-age=300"), "{path}");
        assert_eq!(challenge(&response), None, "{path}");
        let document: Value = response.json().await.unwrap();
        assert_eq!(document, mcp.document(), "{path}");
    }
    assert_eq!(mcp.reached(), 0);
}

#[tokio::test]
async fn head_answers_with_the_headers_and_no_body() {
    let mcp = mcp().await;
    let length = mcp.well_known(Method::GET, &format!("{WELL_KNOWN}/mcp")).await.bytes().await.unwrap().len();
    for path in [format!("{WELL_KNOWN}/mcp"), WELL_KNOWN.to_owned()] {
        let response = mcp.well_known(Method::HEAD, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), Some("application/json"), "{path}");
        assert_eq!(header(&response, "content-length"), Some(length.to_string().as_str()), "{path}");
        assert_eq!(response.bytes().await.unwrap().len(), 0, "{path}");
    }
}

#[tokio::test]
async fn any_origin_may_read_it_and_preflights_are_answered() {
    let mcp = mcp().await;
    let path = format!("{}{WELL_KNOWN}/mcp", mcp.url);
    let response = mcp.http.get(&path).header("origin", "https://inspector.example").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));

    let preflight = mcp
        .http
        .request(Method::OPTIONS, &path)
        .header("origin", "https://inspector.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&preflight, "access-control-allow-methods"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(header(&preflight, "access-control-allow-headers"), Some("*"));

    let post = mcp.well_known(Method::POST, &format!("{WELL_KNOWN}/mcp")).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&post, "allow"), Some("GET, HEAD, OPTIONS"));
}

#[tokio::test]
async fn another_resources_metadata_path_is_not_found() {
    let mcp = mcp().await;
    for path in [format!("{WELL_KNOWN}/other"), format!("{WELL_KNOWN}/mcp/other")] {
        let response = mcp.well_known(Method::GET, &path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_request_without_a_token_is_pointed_at_the_metadata() {
    let mcp = mcp().await;
    let response = mcp.call(None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let expected = format!(
        r#"Bearer scope="mcp:tools mcp:resources", resource_metadata="http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp""#,
        mcp.port
    );
    assert_eq!(challenge(&response), Some(expected.as_str()));

    // A client follows the challenge to the document, and from it to the issuer.
    let url = expected.split("resource_metadata=\"").nth(1).and_then(|rest| rest.strip_suffix('"')).unwrap();
    let document: Value = mcp.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["resource"], mcp.resource);
    assert_eq!(document["authorization_servers"], json!([mcp.issuer.issuer()]));
    assert_eq!(mcp.reached(), 0);
}

#[tokio::test]
async fn a_token_for_this_resource_is_accepted_up_to_rfc_3986_equivalence() {
    let mcp = mcp().await;
    let port = mcp.port;
    let equivalent = [
        json!(mcp.resource),
        json!(format!("HTTP://127.0.0.1:{port}/mcp")),
        json!(format!("Http://127.0.0.1:{port}/%6Dcp")),
        json!(["https://other.example/api", mcp.resource]),
    ];
    for aud in equivalent {
        let token = mcp.issuer.mint().audience(aud.clone()).scope("mcp:tools").subject("dana").sign();
        let response = mcp.call(Some(&token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{aud}");
        let claims: Value = response.json().await.unwrap();
        assert_eq!((&claims["sub"], &claims["aud"]), (&json!("dana"), &aud));
    }
    assert_eq!(mcp.reached(), 4);
}

#[tokio::test]
async fn a_token_for_another_resource_is_invalid_token_with_the_metadata() {
    let mcp = mcp().await;
    let port = mcp.port;
    let other_port = if port == 8443 { 8444 } else { 8443 };
    let others = [
        format!("http://127.0.0.1:{port}/mcp/"),
        format!("http://127.0.0.1:{port}/MCP"),
        format!("http://127.0.0.1:{port}/mcp?tenant=a"),
        format!("http://127.0.0.1:{port}/other"),
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{other_port}/mcp"),
        format!("https://127.0.0.1:{port}/mcp"),
        format!("http://localhost:{port}/mcp"),
        // The issuer's default audience: not this resource.
        mcp.issuer.audience().to_owned(),
    ];
    for aud in others {
        let token = mcp.issuer.mint().audience(aud.as_str()).scope("mcp:tools").sign();
        let response = mcp.call(Some(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{aud}");
        assert_eq!(challenge(&response), Some(mcp.invalid_token().as_str()), "{aud}");
    }
    assert_eq!(mcp.reached(), 0);
}

#[tokio::test]
async fn a_missing_scope_is_403_with_the_routes_scope_and_the_metadata() {
    let mcp = mcp().await;
    let token = mcp.issuer.mint().audience(mcp.resource.as_str()).scope("mcp:resources").sign();
    let response = mcp.call(Some(&token)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let expected = format!(
        r#"Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp""#,
        mcp.port
    );
    assert_eq!(challenge(&response), Some(expected.as_str()));
    assert_eq!(mcp.reached(), 0);
}

#[tokio::test]
async fn signed_metadata_verifies_with_the_public_jwk_and_repeats_the_members() {
    let key = ClientKey::generate_for(Algorithm::ES256).unwrap();
    let mcp = mcp_with(Some(&key)).await;
    let mut document: Map<String, Value> =
        mcp.well_known(Method::GET, &format!("{WELL_KNOWN}/mcp")).await.json().await.unwrap();
    let signed = document.remove("signed_metadata").expect("signed_metadata is served");
    let signed = signed.as_str().expect("a compact JWT");
    assert_eq!(Value::Object(document.clone()), mcp.document(), "the plain members are all there");

    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&key.public_jwk()).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[mcp.issuer.issuer()]);
    let mut claims = jsonwebtoken::decode::<Map<String, Value>>(signed, &decoding, &validation).unwrap().claims;

    let iat = claims.remove("iat").and_then(|iat| iat.as_i64()).expect("an integer iat");
    assert!((now() - 60..=now()).contains(&iat), "{iat}");
    let mut expected = document;
    expected.insert("iss".into(), json!(mcp.issuer.issuer()));
    assert_eq!(claims, expected);

    // Not a signature anyone could have made: another key does not verify it.
    let stranger = ClientKey::generate_for(Algorithm::ES256).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&stranger.public_jwk()).unwrap();
    let stranger = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    assert!(jsonwebtoken::decode::<Map<String, Value>>(signed, &stranger, &validation).is_err());
}
