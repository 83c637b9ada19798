//! The embedded test issuer, exercised over real HTTP.
#![cfg(feature = "testing")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth::Algorithm;
use tower_oauth::client::DpopKey;
use tower_oauth::testing::{Endpoint, Fault, GrantType, TestIssuer, TestKey};

use crate::support::api::now;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("a plain HTTP client builds")
}

/// A response with its body read and, when it is JSON, parsed.
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Reply { status, headers, json })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn get(url: &str) -> Result<Reply, reqwest::Error> {
    Reply::read(client().get(url).send().await?).await
}

/// `client_secret_basic` done right: form-urlencode, join with `:`, base64
/// (RFC 6749 §2.3.1).
fn basic(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

fn form(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

async fn post_token(
    issuer: &TestIssuer,
    authorization: Option<&str>,
    params: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    post_form(&client(), &issuer.token_endpoint(), authorization, params).await
}

/// A form-encoded `POST` to `url` with `client`.
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    params: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut request = client.post(url).header("content-type", "application/x-www-form-urlencoded").body(form(params));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    Reply::read(request.send().await?).await
}

/// A `jti` no other assertion of this process has.
fn unique_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A compact JWS of `claims`, signed with `key` and naming its `alg` and `kid`.
fn signed(key: &TestKey, claims: &Value) -> String {
    let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "JWT"});
    key.sign_compact(&header.to_string(), &claims.to_string())
}

/// The claims of a good assertion (RFC 7523 §3) from `iss` about `sub` for `aud`:
/// a minute to live and a fresh `jti`.
fn assertion_claims(iss: &str, sub: &str, aud: &str) -> Value {
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now(), "exp": now() + 60, "jti": unique_jti()})
}

/// The metadata the issuer serves at its OpenID Connect location.
async fn metadata(issuer: &TestIssuer) -> Result<Value, reqwest::Error> {
    Ok(get(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await?.json)
}

fn default_basic() -> String {
    basic(TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET)
}

fn decode_segment(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url segment");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

fn b64_field(jwk: &Value, name: &str) -> Vec<u8> {
    let text = jwk[name].as_str().unwrap_or_default();
    URL_SAFE_NO_PAD.decode(text).expect("base64url JWK member")
}

/// Verifies a compact JWS with the JWK of its `kid` from `jwks`, using aws-lc-rs
/// directly; returns the header and claims.
fn verify(token: &str, jwks: &Value) -> Result<(Value, Value), String> {
    let segments: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = segments[..] else {
        return Err(format!("{} segments", segments.len()));
    };
    let header = decode_segment(header_b64);
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let alg: Algorithm = header["alg"].as_str().unwrap_or_default().parse().map_err(|_| "unknown alg")?;
    if jwk["alg"] != alg.as_str() {
        return Err("the JWK is for another algorithm".into());
    }
    let message = format!("{header_b64}.{payload_b64}");
    let message = message.as_bytes();
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|e| e.to_string())?;
    let verified = match alg {
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 => {
            let params = match alg {
                Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                _ => &signature::ECDSA_P521_SHA512_FIXED,
            };
            let mut point = vec![0x04];
            point.extend(b64_field(jwk, "x"));
            point.extend(b64_field(jwk, "y"));
            UnparsedPublicKey::new(params, point).verify(message, &signature)
        }
        Algorithm::EdDSA => {
            UnparsedPublicKey::new(&signature::ED25519, b64_field(jwk, "x")).verify(message, &signature)
        }
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Err("HMAC keys are not verified from a JWKS".into());
        }
        rsa => {
            let params = match rsa {
                Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            let components = RsaPublicKeyComponents { n: b64_field(jwk, "n"), e: b64_field(jwk, "e") };
            components.verify(params, message, &signature)
        }
    };
    verified.map_err(|_| "bad signature".to_owned())?;
    Ok((header, decode_segment(payload_b64)))
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect()
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_documents_describe_a_keycloak_like_issuer() -> TestResult {
    let issuer = TestIssuer::builder()
        .path_prefix("/auth/realms/provider/")
        .token_path("protocol/openid-connect/token")
        .access_token_typ("JWT")
        .start()
        .await?;
    let base = format!("http://{}", issuer.addr());
    assert_eq!(issuer.issuer(), format!("{base}/auth/realms/provider"));
    assert_eq!(issuer.token_endpoint(), format!("{base}/auth/realms/provider/protocol/openid-connect/token"));

    let oidc = get(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await?;
    assert_eq!(oidc.status, StatusCode::OK);
    assert_eq!(oidc.header("content-type"), Some("application/json"));
    assert_eq!(oidc.json["issuer"], issuer.issuer());
    assert_eq!(oidc.json["jwks_uri"], issuer.jwks_uri());
    assert_eq!(oidc.json["token_endpoint"], issuer.token_endpoint());
    assert_eq!(
        oidc.json["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"])
    );
    assert_eq!(oidc.json["response_types_supported"], json!(["code"]));
    assert_eq!(oidc.json["subject_types_supported"], json!(["public"]));
    assert_eq!(oidc.json["id_token_signing_alg_values_supported"], json!(["RS256"]));
    for field in ["authorization_endpoint", "grant_types_supported", "scopes_supported"] {
        assert!(!oidc.json[field].is_null(), "{field}");
    }

    // RFC 8414 §3.1: the well-known segment goes before the issuer's path...
    let rfc8414 = get(&format!("{base}/.well-known/oauth-authorization-server/auth/realms/provider")).await?;
    assert_eq!(rfc8414.status, StatusCode::OK);
    assert_eq!(rfc8414.json, oidc.json);
    // ...and the OIDC-style location is tolerated.
    let appended = get(&format!("{}/.well-known/oauth-authorization-server", issuer.issuer())).await?;
    assert_eq!(appended.json, oidc.json);
    // Nothing is served outside the prefix.
    let outside = get(&format!("{base}/.well-known/openid-configuration")).await?;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);

    // The advertised endpoints work, and tokens carry the configured `typ`.
    let jwks = get(oidc.json["jwks_uri"].as_str().unwrap_or_default()).await?;
    let token = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert_eq!(token.status, StatusCode::OK);
    let (header, claims) = verify(token.json["access_token"].as_str().unwrap_or_default(), &jwks.json)?;
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["iss"], issuer.issuer());
    Ok(())
}

// ---------------------------------------------------------------- keys

#[tokio::test]
async fn jwks_publishes_one_signing_key_per_algorithm_with_max_age() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let reply = get(&issuer.jwks_uri()).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("max-age=300"));
    assert_eq!(reply.json, issuer.jwks());

    let keys = reply.json["keys"].as_array().cloned().unwrap_or_default();
    let algs: Vec<&str> = keys.iter().filter_map(|k| k["alg"].as_str()).collect();
    assert_eq!(algs, ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"]);
    let mut unique = kids(&reply.json);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "kids are unique");
    for key in &keys {
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "no private parameters: {key}");
    }
    let by_alg = |alg: &str| keys.iter().find(|k| k["alg"] == alg).cloned().unwrap_or_default();
    assert_eq!(by_alg("RS256")["kty"], "RSA");
    assert_eq!(b64_field(&by_alg("RS256"), "n").len(), 256);
    assert_eq!(by_alg("ES256")["crv"], "P-256");
    assert_eq!(by_alg("ES384")["crv"], "P-384");
    assert_eq!(by_alg("ES512")["crv"], "P-521");
    assert_eq!(b64_field(&by_alg("ES512"), "x").len(), 66);
    assert_eq!(by_alg("EdDSA")["kty"], "OKP");
    assert_eq!(by_alg("EdDSA")["crv"], "Ed25519");
    assert_eq!(issuer.current_key(Algorithm::ES384).kid(), by_alg("ES384")["kid"]);
    Ok(())
}

#[tokio::test]
async fn jwks_max_age_can_be_changed_or_left_out() -> TestResult {
    let short = TestIssuer::builder().jwks_max_age(Some(7)).start().await?;
    assert_eq!(get(&short.jwks_uri()).await?.header("cache-control"), Some("max-age=7"));
    let none = TestIssuer::builder().jwks_max_age(None).start().await?;
    assert_eq!(get(&none.jwks_uri()).await?.header("cache-control"), None);
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_old_keys_published_until_they_are_retired() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let before = issuer.current_key(Algorithm::RS256);
    let old_token = issuer.mint().sign();

    issuer.rotate_keys();
    let after = issuer.current_key(Algorithm::RS256);
    assert_ne!(before.kid(), after.kid());
    let new_token = issuer.mint().sign();

    let jwks = get(&issuer.jwks_uri()).await?.json;
    assert_eq!(kids(&jwks).len(), 12, "six current and six previous keys");
    let (old_header, _) = verify(&old_token, &jwks)?;
    let (new_header, _) = verify(&new_token, &jwks)?;
    assert_eq!(old_header["kid"], before.kid());
    assert_eq!(new_header["kid"], after.kid());

    issuer.retire_old_keys();
    let jwks = get(&issuer.jwks_uri()).await?.json;
    assert_eq!(kids(&jwks).len(), 6);
    assert!(verify(&old_token, &jwks).is_err());
    assert!(verify(&new_token, &jwks).is_ok());
    Ok(())
}

#[tokio::test]
async fn keys_can_be_published_unpublished_or_replaced_by_raw_json() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let stranger = TestKey::generate_rsa(Algorithm::RS512, 3072).with_kid("stranger");
    let token = issuer.mint().sign_with(&stranger);
    assert!(verify(&token, &get(&issuer.jwks_uri()).await?.json).is_err());

    issuer.publish_key(&stranger);
    let jwks = get(&issuer.jwks_uri()).await?.json;
    let (header, _) = verify(&token, &jwks)?;
    assert_eq!(header["alg"], "RS512");
    assert_eq!(header["kid"], "stranger");
    assert_eq!(b64_field(&jwks["keys"][6], "n").len(), 384);

    issuer.unpublish_key("stranger");
    assert!(!kids(&get(&issuer.jwks_uri()).await?.json).contains(&"stranger".to_owned()));

    let hostile = json!({"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"}], "extra": 1});
    issuer.set_jwks_override(Some(hostile.clone()));
    assert_eq!(get(&issuer.jwks_uri()).await?.json, hostile);
    assert_eq!(issuer.jwks(), hostile);
    issuer.set_jwks_override(None);
    assert_eq!(kids(&get(&issuer.jwks_uri()).await?.json).len(), 6);
    Ok(())
}

// ---------------------------------------------------------------- minting

#[tokio::test]
async fn minted_tokens_verify_against_the_published_jwk_for_every_asymmetric_algorithm() -> TestResult {
    let issuer = TestIssuer::builder().audience("my-api").start().await?;
    let tokens: Vec<(Algorithm, String)> =
        Algorithm::ASYMMETRIC.into_iter().map(|alg| (alg, issuer.mint().alg(alg).sign())).collect();
    // Algorithms outside the start-up set got a key on first use, published since.
    let jwks = get(&issuer.jwks_uri()).await?.json;
    assert_eq!(kids(&jwks).len(), Algorithm::ASYMMETRIC.len());

    for (alg, token) in tokens {
        let (header, claims) = verify(&token, &jwks).map_err(|e| format!("{alg}: {e}"))?;
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], issuer.current_key(alg).kid());
        assert_eq!(claims["iss"], issuer.issuer());
        assert_eq!(claims["aud"], "my-api");
        assert_eq!(claims["sub"], "test-subject");
        assert_eq!(claims["client_id"], "test-client");
        assert_eq!(claims["scope"], "read");
        assert!(claims["jti"].is_string());
        assert!(claims.get("nbf").is_none());
        let iat = claims["iat"].as_i64().unwrap_or_default();
        assert!((iat - now()).abs() <= 5);
        assert_eq!(claims["exp"].as_i64(), Some(iat + 300));
    }
    Ok(())
}

#[tokio::test]
async fn minted_tokens_are_accepted_by_jsonwebtoken() -> TestResult {
    let issuer = TestIssuer::start().await?;
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = issuer.mint().alg(alg).sign();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.current_key(alg).public_jwk())?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)?;
        let mut validation = jsonwebtoken::Validation::new(alg.as_str().parse()?);
        validation.set_audience(&[issuer.audience()]);
        validation.set_issuer(&[issuer.issuer()]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation)?;
        assert_eq!(data.claims["sub"], "test-subject", "{alg}");
    }
    Ok(())
}

#[tokio::test]
async fn hmac_tokens_use_a_shared_secret_that_is_never_published() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let shared = issuer.current_key(Algorithm::HS256);
    let token = issuer.mint().alg(Algorithm::HS256).sign();
    let (signing_input, signature) = token.rsplit_once('.').unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, shared.hmac_secret().unwrap_or_default());
    hmac::verify(&key, signing_input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature)?)
        .map_err(|_| "HS256 signature does not verify")?;
    assert!(!kids(&issuer.jwks()).contains(&shared.kid().to_owned()));

    let explicit = TestKey::hmac(Algorithm::HS512, b"a secret configured out of band");
    let token = issuer.mint().sign_with(&explicit);
    assert_eq!(decode_segment(token.split('.').next().unwrap_or_default())["alg"], "HS512");
    assert_eq!(explicit.public_jwk()["kty"], "oct");
    assert_eq!(URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap_or_default())?.len(), 64);
    Ok(())
}

#[tokio::test]
async fn broken_tokens_are_broken_in_exactly_one_way() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let jwks = issuer.jwks();
    let claims = |token: &str| verify(token, &jwks).map(|(_, c)| c);

    let expired = claims(&issuer.mint().expired().sign())?;
    assert!(expired["exp"].as_i64().unwrap_or(i64::MAX) < now() - 3000);
    assert!(expired["iat"].as_i64() < expired["exp"].as_i64());
    let early = claims(&issuer.mint().not_before_in(Duration::from_secs(600)).sign())?;
    assert!(early["nbf"].as_i64().unwrap_or_default() > now() + 500);
    let future = claims(&issuer.mint().issued_in(Duration::from_secs(600)).sign())?;
    assert!(future["iat"].as_i64().unwrap_or_default() > now() + 500);
    let short = claims(&issuer.mint().expires_in(Duration::from_secs(5)).sign())?;
    assert!(short["exp"].as_i64().unwrap_or_default() <= now() + 6);
    let other = claims(
        &issuer
            .mint()
            .audience(vec!["a", "b"])
            .issuer("https://evil.example")
            .subject("alice")
            .claim("scp", json!(["x", "y"]))
            .without_claim("jti")
            .sign(),
    )?;
    assert_eq!(other["aud"], json!(["a", "b"]));
    assert_eq!(other["iss"], "https://evil.example");
    assert_eq!(other["sub"], "alice");
    assert_eq!(other["scp"], json!(["x", "y"]));
    assert!(other.get("jti").is_none());

    let unsigned = issuer.mint().unsigned();
    assert!(unsigned.ends_with('.'));
    let header = decode_segment(unsigned.split('.').next().unwrap_or_default());
    assert_eq!(header["alg"], "none");
    assert!(header.get("kid").is_none());

    let tampered = issuer.mint().tampered_signature();
    assert_eq!(verify(&tampered, &jwks), Err("bad signature".into()));
    let tampered = issuer.mint().tampered_payload();
    assert_eq!(verify(&tampered, &jwks), Err("bad signature".into()));
    assert_eq!(decode_segment(tampered.split('.').nth(1).unwrap_or_default())["sub"], "attacker");

    let headers = issuer
        .mint()
        .without_header("typ")
        .header("crit", json!(["exp"]))
        .header("kid", "made-up")
        .sign_then(|parts| parts.signature.push('A'));
    let header = decode_segment(headers.split('.').next().unwrap_or_default());
    assert!(header.get("typ").is_none());
    assert_eq!(header["crit"], json!(["exp"]));
    assert_eq!(header["kid"], "made-up");
    assert!(headers.ends_with('A'));

    // Byte-exact input: duplicate members survive, and the signature covers them.
    let key = issuer.current_key(Algorithm::ES256);
    let raw_header = format!(r#"{{"alg":"ES256","kid":"{}","kid":"dup"}}"#, key.kid());
    let token = key.sign_compact(&raw_header, r#"{"sub":"a" , "sub":"b"}"#);
    let mut segments = token.split('.');
    assert_eq!(URL_SAFE_NO_PAD.decode(segments.next().unwrap_or_default())?, raw_header.as_bytes());
    let signature = URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap_or_default())?;
    assert_eq!(signature.len(), 64, "fixed-width R || S");
    Ok(())
}

#[tokio::test]
async fn debug_output_never_contains_key_material() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let key = TestKey::hmac(Algorithm::HS256, b"super-secret-value");
    let debug = format!("{key:?} {issuer:?} {:?}", TestIssuer::builder().client("c", "hunter2"));
    assert!(!debug.contains("super-secret-value"));
    assert!(!debug.contains("hunter2"));
    let rsa = issuer.current_key(Algorithm::RS256);
    assert_eq!(format!("{rsa:?}"), format!("TestKey {{ alg: RS256, kid: {:?}, .. }}", rsa.kid()));
    Ok(())
}

// ---------------------------------------------------------------- token endpoint

#[tokio::test]
async fn client_credentials_with_basic_auth_issues_a_verifiable_access_token() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let reply =
        post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials"), ("scope", "read write")])
            .await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.json["token_type"], "Bearer");
    assert_eq!(reply.json["expires_in"], 300);
    assert_eq!(reply.json["scope"], "read write");
    assert!(reply.json.get("refresh_token").is_none());

    let token = reply.json["access_token"].as_str().unwrap_or_default();
    let (header, claims) = verify(token, &get(&issuer.jwks_uri()).await?.json)?;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], issuer.issuer());
    assert_eq!(claims["sub"], "test-client");
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(claims["aud"], issuer.audience());
    assert_eq!(claims["scope"], "read write");
    assert!(claims["jti"].is_string());

    let unscoped = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert!(unscoped.json.get("scope").is_none());
    Ok(())
}

#[tokio::test]
async fn client_credentials_with_post_auth_takes_the_audience_from_resource_or_audience() -> TestResult {
    let issuer =
        TestIssuer::builder().signing_alg(Algorithm::ES256).token_lifetime(Duration::from_secs(60)).start().await?;
    let jwks = issuer.jwks();
    let aud = async |extra: &[(&str, &str)]| -> Result<Value, Box<dyn std::error::Error>> {
        let mut params = vec![
            ("grant_type", "client_credentials"),
            ("client_id", TestIssuer::DEFAULT_CLIENT_ID),
            ("client_secret", TestIssuer::DEFAULT_CLIENT_SECRET),
        ];
        params.extend_from_slice(extra);
        let reply = post_token(&issuer, None, &params).await?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        assert_eq!(reply.json["expires_in"], 60);
        let (header, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &jwks)?;
        assert_eq!(header["alg"], "ES256");
        Ok(claims["aud"].clone())
    };
    assert_eq!(aud(&[]).await?, issuer.audience());
    assert_eq!(aud(&[("resource", "https://api.example/")]).await?, "https://api.example/");
    assert_eq!(
        aud(&[("resource", "https://a.example/"), ("resource", "https://b.example/")]).await?,
        json!(["https://a.example/", "https://b.example/"])
    );
    assert_eq!(aud(&[("audience", "orders")]).await?, "orders");

    let fragment = post_token(
        &issuer,
        Some(&default_basic()),
        &[("grant_type", "client_credentials"), ("resource", "https://a.example/#x")],
    )
    .await?;
    assert_eq!(fragment.status, StatusCode::BAD_REQUEST);
    assert_eq!(fragment.json["error"], "invalid_target");
    Ok(())
}

#[tokio::test]
async fn basic_auth_works_with_reserved_characters_when_form_encoded() -> TestResult {
    let secret = "p@ss:w+rd%/ &=";
    let issuer = TestIssuer::builder().client("svc:one", secret).client("other", "x").start().await?;
    let grant = [("grant_type", "client_credentials")];
    let reply = post_token(&issuer, Some(&basic("svc:one", secret)), &grant).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);

    // A client that skips the encoding of RFC 6749 §2.3.1 is refused.
    let raw = format!("Basic {}", STANDARD.encode(format!("svc%3Aone:{secret}")));
    let reply = post_token(&issuer, Some(&raw), &grant).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // The builder's clients replace the default one.
    let reply = post_token(&issuer, Some(&default_basic()), &grant).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    issuer.register_client("late", "s");
    let reply = post_token(&issuer, Some(&basic("late", "s")), &grant).await?;
    assert_eq!(reply.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn failed_client_authentication_is_401_invalid_client_with_a_challenge() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let grant = [("grant_type", "client_credentials")];
    for authorization in [
        Some(basic("test-client", "wrong")),
        Some(basic("nobody", "test-secret")),
        Some("Basic !!!".to_owned()),
        Some("Bearer abc".to_owned()),
        None,
    ] {
        let reply = post_token(&issuer, authorization.as_deref(), &grant).await?;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(reply.json["error"], "invalid_client");
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"test-issuer\""));
    }
    let wrong_post = post_token(
        &issuer,
        None,
        &[("grant_type", "client_credentials"), ("client_id", "test-client"), ("client_secret", "no")],
    )
    .await?;
    assert_eq!(wrong_post.json["error"], "invalid_client");
    Ok(())
}

#[tokio::test]
async fn malformed_token_requests_are_400_with_the_rfc_6749_error_code() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let auth = Some(default_basic());
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("grant_type", "password")], "unsupported_grant_type"),
        (&[], "invalid_request"),
        (&[("grant_type", "client_credentials"), ("grant_type", "client_credentials")], "invalid_request"),
        (&[("grant_type", "client_credentials"), ("scope", "bad\"scope")], "invalid_scope"),
        (&[("grant_type", "client_credentials"), ("scope", "double  space")], "invalid_scope"),
        (&[("grant_type", "refresh_token")], "invalid_request"),
        (&[("grant_type", "authorization_code"), ("code", "x")], "invalid_request"),
    ];
    for (params, error) in cases {
        let reply = post_token(&issuer, auth.as_deref(), params).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(reply.json["error"], error, "{params:?}");
    }

    // RFC 6749 §2.3: one authentication method at a time.
    let both = post_token(
        &issuer,
        auth.as_deref(),
        &[("grant_type", "client_credentials"), ("client_id", "test-client"), ("client_secret", "test-secret")],
    )
    .await?;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert_eq!(both.json["error"], "invalid_request");

    let json_body = Reply::read(
        client()
            .post(issuer.token_endpoint())
            .header("authorization", default_basic())
            .header("content-type", "application/json")
            .body(r#"{"grant_type":"client_credentials"}"#)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.json["error"], "invalid_request");
    Ok(())
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let auth = Some(default_basic());
    let first = issuer.issue_refresh_token("test-client", "read write", "alice");

    let reply =
        post_token(&issuer, auth.as_deref(), &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["scope"], "read write");
    let second = reply.json["refresh_token"].as_str().unwrap_or_default().to_owned();
    assert!(!second.is_empty() && second != first);
    let (_, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &issuer.jwks())?;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "test-client");

    // Replaying the spent token fails and takes the live one down with it.
    let replay =
        post_token(&issuer, auth.as_deref(), &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await?;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json["error"], "invalid_grant");
    let revoked =
        post_token(&issuer, auth.as_deref(), &[("grant_type", "refresh_token"), ("refresh_token", &second)]).await?;
    assert_eq!(revoked.json["error"], "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn a_refresh_may_narrow_but_not_widen_the_scope_and_is_bound_to_its_client() -> TestResult {
    let issuer =
        TestIssuer::builder().client("test-client", "test-secret").client("other", "other-secret").start().await?;
    let auth = Some(default_basic());
    let token = issuer.issue_refresh_token("test-client", "read write", "alice");

    let stolen = post_token(
        &issuer,
        Some(&basic("other", "other-secret")),
        &[("grant_type", "refresh_token"), ("refresh_token", &token)],
    )
    .await?;
    assert_eq!(stolen.json["error"], "invalid_grant");

    let wider = post_token(
        &issuer,
        auth.as_deref(),
        &[("grant_type", "refresh_token"), ("refresh_token", &token), ("scope", "read admin")],
    )
    .await?;
    assert_eq!(wider.status, StatusCode::BAD_REQUEST);
    assert_eq!(wider.json["error"], "invalid_scope");

    let narrower = post_token(
        &issuer,
        auth.as_deref(),
        &[("grant_type", "refresh_token"), ("refresh_token", &token), ("scope", "read")],
    )
    .await?;
    assert_eq!(narrower.status, StatusCode::OK, "{}", narrower.json);
    assert_eq!(narrower.json["scope"], "read");
    // RFC 6749 §6: the new refresh token keeps the original scope.
    let next = narrower.json["refresh_token"].as_str().unwrap_or_default();
    let again = post_token(
        &issuer,
        auth.as_deref(),
        &[("grant_type", "refresh_token"), ("refresh_token", next), ("scope", "write")],
    )
    .await?;
    assert_eq!(again.json["scope"], "write");
    Ok(())
}

#[tokio::test]
async fn an_authorization_code_is_exchanged_once_for_tokens_and_an_id_token() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let auth = Some(default_basic());
    let redirect = "https://app.example/callback";
    let code = issuer.issue_code("test-client", redirect, "openid read", "alice");

    let wrong_redirect = post_token(
        &issuer,
        auth.as_deref(),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "https://evil.example/")],
    )
    .await?;
    assert_eq!(wrong_redirect.json["error"], "invalid_grant");

    let params = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect)];
    let reply = post_token(&issuer, auth.as_deref(), &params).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["scope"], "openid read");
    assert_eq!(reply.json["expires_in"], 300);
    let jwks = issuer.jwks();
    let (_, access) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &jwks)?;
    assert_eq!(access["sub"], "alice");
    assert_eq!(access["aud"], issuer.audience());
    let (id_header, id) = verify(reply.json["id_token"].as_str().unwrap_or_default(), &jwks)?;
    assert_eq!(id_header["typ"], "JWT");
    assert_eq!(id["iss"], issuer.issuer());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["aud"], "test-client");
    assert!(id["iat"].is_i64() && id["exp"].is_i64());

    let refresh = reply.json["refresh_token"].as_str().unwrap_or_default().to_owned();
    let reused = post_token(&issuer, auth.as_deref(), &params).await?;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.json["error"], "invalid_grant");
    // RFC 6749 §4.1.2: the reuse revoked what the code had produced.
    let refreshed =
        post_token(&issuer, auth.as_deref(), &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await?;
    assert_eq!(refreshed.json["error"], "invalid_grant");
    Ok(())
}

// ---------------------------------------------------------------- HTTP behaviour

#[tokio::test]
async fn wrong_methods_are_405_unknown_paths_404_and_big_bodies_413() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let get_token = Reply::read(client().get(issuer.token_endpoint()).send().await?).await?;
    assert_eq!(get_token.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_token.header("allow"), Some("POST"));
    let post_jwks = Reply::read(client().post(issuer.jwks_uri()).send().await?).await?;
    assert_eq!(post_jwks.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_jwks.header("allow"), Some("GET, HEAD"));
    let head = client().head(issuer.jwks_uri()).send().await?;
    assert_eq!(head.status(), StatusCode::OK);

    assert_eq!(get(&format!("{}/nope", issuer.issuer())).await?.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{}/authorize", issuer.issuer())).await?.status, StatusCode::NOT_FOUND);

    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(70 * 1024));
    let reply = Reply::read(
        client()
            .post(issuer.token_endpoint())
            .header("authorization", default_basic())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    Ok(())
}

#[tokio::test]
async fn counters_count_every_request_that_reaches_an_endpoint() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let oidc = format!("{}/.well-known/openid-configuration", issuer.issuer());
    get(&oidc).await?;
    get(&issuer.jwks_uri()).await?;
    get(&issuer.jwks_uri()).await?;
    client().post(issuer.jwks_uri()).send().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    get(&issuer.jwks_uri()).await?;
    get(&format!("{}/unknown", issuer.issuer())).await?;
    post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;

    assert_eq!(issuer.requests(Endpoint::OpenIdConfiguration), 1);
    assert_eq!(issuer.requests(Endpoint::OAuthServerMetadata), 0);
    assert_eq!(issuer.requests(Endpoint::Jwks), 4);
    assert_eq!(issuer.requests(Endpoint::Token), 1);
    issuer.reset_counters();
    assert_eq!(issuer.requests(Endpoint::Jwks), 0);
    assert_eq!(issuer.requests(Endpoint::Token), 0);
    Ok(())
}

#[tokio::test]
async fn the_server_stops_when_the_last_handle_is_dropped() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let url = issuer.jwks_uri();
    let clone = issuer.clone();
    drop(issuer);
    assert_eq!(get(&url).await?.status, StatusCode::OK);
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let error = client().get(&url).send().await.err().ok_or("still serving")?;
    assert!(error.is_connect(), "{error:?}");
    Ok(())
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn fault_down_closes_the_connection_without_a_response() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Down);
    let error = client().get(issuer.jwks_uri()).send().await.err().ok_or("got a response")?;
    assert!(error.is_request() && !error.is_timeout(), "{error:?}");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1);
    // Other endpoints are unaffected.
    let oidc = get(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await?;
    assert_eq!(oidc.status, StatusCode::OK);
    issuer.clear_fault(Endpoint::Jwks);
    assert_eq!(get(&issuer.jwks_uri()).await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn fault_delay_answers_normally_but_late() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(600)));
    let impatient = client()
        .post(issuer.token_endpoint())
        .timeout(Duration::from_millis(150))
        .send()
        .await
        .err()
        .ok_or("answered too early")?;
    assert!(impatient.is_timeout(), "{impatient:?}");

    let started = std::time::Instant::now();
    let reply = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json["access_token"].is_string());
    Ok(())
}

#[tokio::test]
async fn fault_stall_sends_headers_then_a_body_that_never_ends() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Stall);
    let mut response = tokio::time::timeout(Duration::from_secs(2), client().get(issuer.jwks_uri()).send()).await??;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), None);
    let first = tokio::time::timeout(Duration::from_secs(2), response.chunk()).await??;
    assert_eq!(first.as_deref(), Some(&b"{"[..]));
    let second = tokio::time::timeout(Duration::from_secs(3), response.chunk()).await??;
    assert_eq!(second.as_deref(), Some(&b" "[..]));
    let rest = tokio::time::timeout(Duration::from_millis(2500), response.bytes()).await;
    assert!(rest.is_err(), "the body ended");
    Ok(())
}

#[tokio::test]
async fn fault_status_and_too_many_requests_answer_with_that_status() -> TestResult {
    let issuer = TestIssuer::start().await?;
    for code in [404, 500, 503] {
        issuer.set_fault(Endpoint::OpenIdConfiguration, Fault::Status(code));
        let reply = get(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await?;
        assert_eq!(reply.status.as_u16(), code);
        assert_eq!(reply.json, Value::Null);
    }
    issuer.set_fault(Endpoint::Token, Fault::TooManyRequests { retry_after: Some(7) });
    let limited = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("7"));
    issuer.set_fault(Endpoint::Token, Fault::TooManyRequests { retry_after: None });
    let limited = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), None);

    issuer.clear_faults();
    let ok = post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?;
    assert_eq!(ok.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn fault_garbage_is_a_200_that_is_not_json() -> TestResult {
    let issuer = TestIssuer::start().await?;
    issuer.set_fault(Endpoint::Jwks, Fault::Garbage);
    let response = client().get(issuer.jwks_uri()).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await?;
    assert!(!body.is_empty());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    Ok(())
}

#[tokio::test]
async fn fault_oversized_sends_exactly_that_many_bytes() -> TestResult {
    let issuer = TestIssuer::start().await?;
    for size in [3, 1024 * 1024 + 1] {
        issuer.set_fault(Endpoint::OAuthServerMetadata, Fault::Oversized(size));
        let url = format!("http://{}/.well-known/oauth-authorization-server", issuer.addr());
        let response = client().get(url).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.content_length(), Some(size as u64));
        let body = response.bytes().await?;
        assert_eq!(body.len(), size);
        assert!(body.starts_with(&b"{\"keys\":["[..size.min(9)]));
        assert!(serde_json::from_slice::<Value>(&body).is_err());
    }
    Ok(())
}

// ---------------------------------------------------------------- DPoP at the token endpoint

/// A `client_credentials` request with these `DPoP` headers.
async fn post_token_with_proofs(issuer: &TestIssuer, proofs: &[&str]) -> Result<Reply, reqwest::Error> {
    let mut request = client()
        .post(issuer.token_endpoint())
        .header("authorization", default_basic())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "client_credentials")]));
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    Reply::read(request.send().await?).await
}

/// A proof for a token request: `POST` to the token endpoint, no access token.
fn token_request_proof(key: &DpopKey, issuer: &TestIssuer, nonce: Option<&str>) -> String {
    let url: url::Url = issuer.token_endpoint().parse().unwrap();
    key.proof(&http::Method::POST, &url, None, nonce).unwrap()
}

fn access_token_claims(reply: &Reply) -> Value {
    let token = reply.json["access_token"].as_str().expect("an access token");
    decode_segment(token.split('.').nth(1).expect("a JWS"))
}

#[tokio::test]
async fn a_token_request_with_a_good_proof_gets_a_token_bound_to_its_key() -> TestResult {
    let issuer = TestIssuer::builder().path_prefix("/realms/dpop").start().await?;
    let key = DpopKey::generate()?;
    let reply = post_token_with_proofs(&issuer, &[&token_request_proof(&key, &issuer, None)]).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["token_type"], "DPoP");
    let (_, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &issuer.jwks())?;
    assert_eq!(claims["cnf"], json!({ "jkt": key.thumbprint() }));
    assert!(reply.header("dpop-nonce").is_none(), "no nonces unless asked for");

    // Without a proof: a bearer token, bound to nothing.
    let bearer = post_token_with_proofs(&issuer, &[]).await?;
    assert_eq!(bearer.json["token_type"], "Bearer");
    assert!(access_token_claims(&bearer).get("cnf").is_none());

    let metadata = get(&format!("{}/.well-known/openid-configuration", issuer.issuer())).await?;
    let algs = metadata.json["dpop_signing_alg_values_supported"].as_array().cloned().unwrap_or_default();
    assert!(algs.contains(&json!("ES256")) && !algs.contains(&json!("HS256")), "{algs:?}");
    Ok(())
}

#[tokio::test]
async fn a_refresh_with_a_proof_binds_the_new_access_token_too() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let key = DpopKey::generate()?;
    let refresh = issuer.issue_refresh_token("test-client", "read", "alice");
    let url: url::Url = issuer.token_endpoint().parse()?;
    let reply = client()
        .post(issuer.token_endpoint())
        .header("authorization", default_basic())
        .header("dpop", key.proof(&http::Method::POST, &url, None, None)?)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await?;
    let reply = Reply::read(reply).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["token_type"], "DPoP");
    assert_eq!(access_token_claims(&reply)["cnf"]["jkt"], key.thumbprint());
    assert_eq!(access_token_claims(&reply)["sub"], "alice");
    Ok(())
}

#[tokio::test]
async fn a_bad_proof_at_the_token_endpoint_is_400_invalid_dpop_proof() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let key = DpopKey::generate()?;
    let endpoint: url::Url = issuer.token_endpoint().parse()?;
    let elsewhere: url::Url = format!("{}/elsewhere", issuer.issuer()).parse()?;
    let bad = [
        ("for GET", key.proof(&http::Method::GET, &endpoint, None, None)?),
        ("for another URL", key.proof(&http::Method::POST, &elsewhere, None, None)?),
        (
            "with an ath, though a token request has no token",
            key.proof(&http::Method::POST, &endpoint, Some("t"), None)?,
        ),
        ("not a JWT", "not-a-proof".to_owned()),
    ];
    for (what, proof) in &bad {
        let reply = post_token_with_proofs(&issuer, &[proof]).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(reply.json["error"], "invalid_dpop_proof", "{what}");
    }

    let good = token_request_proof(&key, &issuer, None);
    let two = post_token_with_proofs(&issuer, &[&good, &token_request_proof(&key, &issuer, None)]).await?;
    assert_eq!((two.status, &two.json["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_dpop_proof")));
    assert_eq!(post_token_with_proofs(&issuer, &[&good]).await?.status, StatusCode::OK);
    let replayed = post_token_with_proofs(&issuer, &[&good]).await?;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "a proof is good once");
    assert_eq!(replayed.json["error"], "invalid_dpop_proof");
    Ok(())
}

#[tokio::test]
async fn a_token_endpoint_that_wants_nonces_hands_one_out_and_then_accepts_it() -> TestResult {
    let issuer = TestIssuer::builder().dpop_nonce().start().await?;
    let key = DpopKey::generate()?;
    let first = post_token_with_proofs(&issuer, &[&token_request_proof(&key, &issuer, None)]).await?;
    assert_eq!(first.status, StatusCode::BAD_REQUEST);
    assert_eq!(first.json["error"], "use_dpop_nonce");
    let nonce = first.header("dpop-nonce").expect("a nonce to retry with").to_owned();

    let wrong = post_token_with_proofs(&issuer, &[&token_request_proof(&key, &issuer, Some("made-up"))]).await?;
    assert_eq!(wrong.json["error"], "use_dpop_nonce");

    let retry = post_token_with_proofs(&issuer, &[&token_request_proof(&key, &issuer, Some(&nonce))]).await?;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.json);
    assert_eq!(retry.json["token_type"], "DPoP");
    assert_eq!(access_token_claims(&retry)["cnf"]["jkt"], key.thumbprint());
    assert!(retry.header("dpop-nonce").is_some(), "the next nonce comes with the token");

    // A client without DPoP is not asked for nonces.
    assert_eq!(post_token_with_proofs(&issuer, &[]).await?.json["token_type"], "Bearer");
    Ok(())
}

#[tokio::test]
async fn a_token_endpoint_that_requires_dpop_refuses_requests_without_a_proof() -> TestResult {
    let issuer = TestIssuer::builder().require_dpop().start().await?;
    let without = post_token_with_proofs(&issuer, &[]).await?;
    assert_eq!(without.status, StatusCode::BAD_REQUEST);
    assert_eq!(without.json["error"], "invalid_request");
    let key = DpopKey::generate()?;
    let with = post_token_with_proofs(&issuer, &[&token_request_proof(&key, &issuer, None)]).await?;
    assert_eq!(with.status, StatusCode::OK, "{}", with.json);
    assert_eq!(with.json["token_type"], "DPoP");
    Ok(())
}

// ---------------------------------------------------------------- client authentication and grants

mod client_jwt;
mod jwt_bearer;
#[cfg(all(feature = "mtls-rustls", feature = "tonic"))]
mod mutual_tls;
mod token_exchange;

#[tokio::test]
async fn metadata_lists_every_client_authentication_method_and_grant() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let metadata = metadata(&issuer).await?;
    let methods = json!(["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"]);
    assert_eq!(metadata["token_endpoint_auth_methods_supported"], methods);
    assert_eq!(metadata["introspection_endpoint_auth_methods_supported"], methods);
    let algorithms = json!(["RS256", "PS256", "ES256", "EdDSA", "HS256", "HS384", "HS512"]);
    assert_eq!(metadata["token_endpoint_auth_signing_alg_values_supported"], algorithms);
    assert_eq!(metadata["introspection_endpoint_auth_signing_alg_values_supported"], algorithms);
    assert_eq!(
        metadata["grant_types_supported"],
        json!([
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    // Plain HTTP: no mutual TLS to speak of.
    assert!(metadata.get("tls_client_certificate_bound_access_tokens").is_none());
    assert!(metadata.get("mtls_endpoint_aliases").is_none());
    Ok(())
}

#[tokio::test]
async fn grant_requests_count_each_grant_type_whatever_the_outcome() -> TestResult {
    let issuer = TestIssuer::start().await?;
    let grant = [("grant_type", "client_credentials")];
    assert_eq!(post_token(&issuer, Some(&default_basic()), &grant).await?.status, StatusCode::OK);
    assert_eq!(
        post_token(&issuer, Some(&basic("test-client", "wrong")), &grant).await?.status,
        StatusCode::UNAUTHORIZED
    );
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", "unknown")];
    assert_eq!(post_token(&issuer, Some(&default_basic()), &refresh).await?.status, StatusCode::BAD_REQUEST);
    let password = [("grant_type", "password")];
    assert_eq!(post_token(&issuer, Some(&default_basic()), &password).await?.status, StatusCode::BAD_REQUEST);
    assert_eq!(issuer.grant_requests(GrantType::ClientCredentials), 2);
    assert_eq!(issuer.grant_requests(GrantType::RefreshToken), 1);
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 0);
    assert_eq!(issuer.requests(Endpoint::Token), 4);
    issuer.reset_counters();
    assert_eq!(issuer.grant_requests(GrantType::ClientCredentials), 0);
    Ok(())
}

#[tokio::test]
async fn basic_without_form_decoding_compares_as_sent_and_refuses_with_a_bare_403() -> TestResult {
    let secret = "p@ss w+rd%";
    let issuer = TestIssuer::builder().client("svc", secret).basic_without_form_decoding().start().await?;
    let grant = [("grant_type", "client_credentials")];
    let raw = format!("Basic {}", STANDARD.encode(format!("svc:{secret}")));
    let reply = post_token(&issuer, Some(&raw), &grant).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(access_token_claims(&reply)["client_id"], "svc");

    // What RFC 6749 §2.3.1 asks for, a wrong secret and garbage: each a 403 with nothing in it.
    for authorization in [basic("svc", secret), basic("svc", "wrong"), basic("nobody", secret), "Basic !!!".to_owned()]
    {
        let response = client()
            .post(issuer.token_endpoint())
            .header("authorization", &authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&grant))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{authorization}");
        assert!(response.headers().get("www-authenticate").is_none());
        assert!(response.bytes().await?.is_empty(), "{authorization}");
    }
    let introspection =
        post_form(&client(), &issuer.introspection_endpoint(), Some(&basic("svc", secret)), &[("token", "t")]).await?;
    assert_eq!((introspection.status, introspection.json), (StatusCode::FORBIDDEN, Value::Null));
    let introspection = post_form(&client(), &issuer.introspection_endpoint(), Some(&raw), &[("token", "t")]).await?;
    assert_eq!(introspection.json, json!({"active": false}));

    // Other methods are unchanged: the form, and a missing client.
    let posted = [("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", secret)];
    assert_eq!(post_token(&issuer, None, &posted).await?.status, StatusCode::OK);
    let nobody = post_token(&issuer, None, &grant).await?;
    assert_eq!((nobody.status, &nobody.json["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")));
    Ok(())
}
