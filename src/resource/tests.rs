use base64::Engine as _;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::json;
use tower_service::Service as _;

use super::*;
use crate::jwk::B64;
use crate::jwks::KeyStore;
use crate::validate::DpopMode;
use crate::validate::dpop::DpopVerifier;
use crate::{Algorithm, Jwk, KeySet, Secret, Validator};

fn keys() -> KeyStore {
    let jwk = Jwk::hmac(Algorithm::HS256, &Secret::new(b"0123456789abcdef0123456789abcdef"), Some("k1")).unwrap();
    KeyStore::from_key_set(KeySet::from_keys([jwk]))
}

fn document(metadata: &ProtectedResourceMetadata) -> Value {
    serde_json::from_str(metadata.as_json()).unwrap()
}

#[test]
fn the_document_holds_what_was_set_and_nothing_else() {
    let metadata = ProtectedResourceMetadata::builder("https://api.example.com/mcp")
        .authorization_servers(["https://login.example.com", "https://login.example.com"])
        .scopes_supported(["mcp", ""])
        .bearer_methods_supported(["header"])
        .jwks_uri("https://api.example.com/jwks.json")
        .resource_signing_alg_values_supported(["ES256"])
        .resource_encryption_values_supported(["ECDH-ES"], ["A256GCM"])
        .resource_name("Example")
        .resource_documentation("https://docs.example.com/mcp")
        .resource_policy_uri("https://example.com/policy")
        .resource_tos_uri("https://example.com/tos")
        .tls_client_certificate_bound_access_tokens(true)
        .authorization_details_types_supported(["payment_initiation"])
        .member("x_tenant", "blue")
        .member("resource", "https://evil.example")
        .build()
        .unwrap();
    assert_eq!(
        document(&metadata),
        json!({
            "resource": "https://api.example.com/mcp",
            "authorization_servers": ["https://login.example.com"],
            "jwks_uri": "https://api.example.com/jwks.json",
            "scopes_supported": ["mcp"],
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": ["ES256"],
            "resource_encryption_alg_values_supported": ["ECDH-ES"],
            "resource_encryption_enc_values_supported": ["A256GCM"],
            "resource_name": "Example",
            "resource_documentation": "https://docs.example.com/mcp",
            "resource_policy_uri": "https://example.com/policy",
            "resource_tos_uri": "https://example.com/tos",
            "tls_client_certificate_bound_access_tokens": true,
            "authorization_details_types_supported": ["payment_initiation"],
            "x_tenant": "blue",
        })
    );
    assert_eq!(metadata.url(), "https://api.example.com/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        metadata.paths(),
        ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
    );
    let minimal = ProtectedResourceMetadata::builder("http://127.0.0.1:8080").serve_root(false).build().unwrap();
    assert_eq!(document(&minimal), json!({"resource": "http://127.0.0.1:8080"}));
    assert_eq!(minimal.paths(), ["/.well-known/oauth-protected-resource"]);
}

#[test]
fn unusable_urls_are_refused_at_build() {
    let build = |b: ProtectedResourceMetadataBuilder| b.build().map(|_| ()).unwrap_err();
    assert!(matches!(build(ProtectedResourceMetadata::builder("http://api.example.com/mcp")), BuildError::Url(_)));
    assert!(matches!(build(ProtectedResourceMetadata::builder("https://api.example.com/#x")), BuildError::InvalidUrl));
    assert!(matches!(build(ProtectedResourceMetadata::builder("mcp")), BuildError::Url(_)));
    let ok = || ProtectedResourceMetadata::builder("https://api.example.com");
    assert!(matches!(build(ok().authorization_servers(["http://login.example.com"])), BuildError::Url(_)));
    assert!(matches!(build(ok().jwks_uri("http://api.example.com/jwks")), BuildError::Url(_)));
    assert!(matches!(build(ok().resource_documentation("docs")), BuildError::InvalidUrl));
}

#[tokio::test]
async fn from_layer_states_nothing_twice() {
    let validator = Validator::builder()
        .issuer_with_keys("https://login.example.com", keys())
        .issuer_with_keys("https://partner.example.com", keys())
        .resource("https://api.example.com/mcp")
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(validator).challenge_scope(["mcp:tools", "mcp:read"]);
    let metadata = ProtectedResourceMetadata::from_layer(&layer).unwrap().build().unwrap();
    let mut described = document(&metadata);
    let mut servers: Vec<String> = serde_json::from_value(described["authorization_servers"].take()).unwrap();
    servers.sort();
    assert_eq!(servers, ["https://login.example.com", "https://partner.example.com"]);
    assert_eq!(
        described,
        json!({
            "resource": "https://api.example.com/mcp",
            "authorization_servers": null,
            "scopes_supported": ["mcp:tools", "mcp:read"],
            "bearer_methods_supported": ["header"],
        })
    );

    // DPoP required: the algorithms and the requirement, and the query method when allowed.
    let validator = Validator::builder()
        .issuer_with_keys("https://login.example.com", keys())
        .resource("https://api.example.com")
        .algorithms([Algorithm::HS256])
        .dpop(DpopMode::Required)
        .build()
        .unwrap();
    let dpop = DpopVerifier::builder("https://api.example.com")
        .algorithms([Algorithm::ES256, Algorithm::EdDSA])
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(validator).dpop(dpop).allow_query_token();
    let described = document(&ProtectedResourceMetadata::from_layer(&layer).unwrap().build().unwrap());
    assert_eq!(described["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]));
    assert_eq!(described["dpop_bound_access_tokens_required"], json!(true));
    assert_eq!(described["bearer_methods_supported"], json!(["header", "query"]));

    let no_resource = Validator::builder()
        .issuer_with_keys("https://login.example.com", keys())
        .audience("api")
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap();
    assert!(matches!(
        ProtectedResourceMetadata::from_layer(&BearerAuthLayer::new(no_resource)),
        Err(BuildError::MissingResource)
    ));
}

#[test]
fn signed_metadata_carries_the_same_members_signed_by_the_key() {
    let key = ClientKey::generate_for(Algorithm::ES256).unwrap().with_kid("rs-1");
    let metadata = ProtectedResourceMetadata::builder("https://api.example.com/mcp")
        .authorization_servers(["https://login.example.com"])
        .resource_name("Example")
        .signed_metadata(key.clone(), "https://api.example.com")
        .build()
        .unwrap();
    let document = document(&metadata);
    let jwt = document["signed_metadata"].as_str().unwrap();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let (header, claims) = input.split_once('.').unwrap();
    let decode = |part: &str| serde_json::from_slice::<Value>(&B64.decode(part).unwrap()).unwrap();
    assert_eq!(decode(header), json!({"alg": "ES256", "kid": "rs-1"}));
    let claims = decode(claims);
    assert_eq!(claims["iss"], "https://api.example.com");
    assert!(claims["iat"].is_i64());
    for member in ["resource", "authorization_servers", "resource_name"] {
        assert_eq!(claims[member], document[member], "{member}");
    }
    assert!(claims.get("signed_metadata").is_none());
    let public = Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
    assert!(public.verify(Algorithm::ES256, input.as_bytes(), &B64.decode(signature).unwrap()));
}

async fn call(
    service: &mut ProtectedResourceMetadataService,
    method: Method,
    path: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let request = Request::builder().method(method).uri(path).body(()).unwrap();
    let response = service.call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn the_service_serves_get_head_and_preflight_at_its_paths_only() {
    let metadata = ProtectedResourceMetadata::builder("https://api.example.com/mcp")
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut service = metadata.service();
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let (status, headers, body) = call(&mut service, Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=60");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(body, metadata.as_json().as_bytes());
    }
    let (status, headers, body) = call(&mut service, Method::HEAD, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(headers[header::CONTENT_LENGTH], metadata.as_json().len().to_string().as_str());
    let (status, headers, _) = call(&mut service, Method::OPTIONS, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD, OPTIONS");
    let (status, headers, _) = call(&mut service, Method::POST, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, HEAD, OPTIONS");
    for path in ["/mcp", "/.well-known/oauth-protected-resource/other", "/.well-known/oauth-protected-resource/mcp/"] {
        assert_eq!(call(&mut service, Method::GET, path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}
