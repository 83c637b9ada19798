//! Encrypted access tokens: nested JWE(JWS) accepted through the same validator, every
//! refusal in place (each test fails if its refusal is removed), the bank-shaped flow,
//! and the layer with its cache.
#![cfg(all(feature = "testing", feature = "jwe", feature = "axum"))]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::testing::{TestEncryptionKey, TestIssuer};
use tower_oauth::validate::DecryptionKeys;
use tower_oauth::{BearerAuthLayer, BuildError, Claims, TypPolicy, ValidationError, Validator};

use crate::support::api::claims_api;

fn keys(key: &TestEncryptionKey) -> DecryptionKeys {
    DecryptionKeys::from_jwks(key.private_jwks().as_bytes()).unwrap()
}

fn validator(issuer: &TestIssuer, key: &TestEncryptionKey) -> Validator {
    Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).decryption_keys(keys(key)).build().unwrap()
}

/// A validator on `issuer` with `key`, weakened by `configure` (see `Dangerous`).
fn dangerous_validator(
    issuer: &TestIssuer,
    key: &TestEncryptionKey,
    configure: impl FnOnce(&mut tower_oauth::validate::Dangerous),
) -> Validator {
    Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .decryption_keys(keys(key))
        .dangerous(configure)
        .build()
        .unwrap()
}

fn members(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[tokio::test]
async fn a_nested_token_is_decrypted_then_verified_like_a_plain_one() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("RSA-OAEP-256");
    let token = issuer.mint().subject("alice").scope("read").encrypt(&key);
    assert_eq!(token.split('.').count(), 5);
    let claims = validator(&issuer, &key).validate(&token).await.unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    // The inner token gets the same policy: an expired or forged inner JWS fails.
    let v = validator(&issuer, &key);
    assert_eq!(v.validate(&issuer.mint().expired().encrypt(&key)).await.unwrap_err(), ValidationError::Expired);
    let forged = key.encrypt(issuer.mint().tampered_signature().as_bytes(), "A256GCM", Some("JWT"));
    assert_eq!(v.validate(&forged).await.unwrap_err(), ValidationError::InvalidSignature);
    // And the inner `typ` policy too.
    let strict = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .typ(TypPolicy::Rfc9068)
        .decryption_keys(keys(&key))
        .build()
        .unwrap();
    let jwt_typ = issuer.mint().header("typ", "JWT").encrypt(&key);
    assert_eq!(strict.validate(&jwt_typ).await.unwrap_err(), ValidationError::InvalidType);
}

#[tokio::test]
async fn every_supported_key_management_and_content_encryption_works() {
    let issuer = TestIssuer::start().await.unwrap();
    let inner = issuer.mint().sign();
    let algs = [
        "RSA-OAEP",
        "RSA-OAEP-256",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "ECDH-ES+A192KW",
        "ECDH-ES+A256KW",
        "A128KW",
        "A192KW",
        "A256KW",
        "dir",
    ];
    for alg in algs {
        let key = TestEncryptionKey::generate(alg);
        let v = validator(&issuer, &key);
        let encs: &[&str] = if alg == "dir" {
            &["A256GCM", "A128CBC-HS256"] // a 32-byte key fits these two
        } else {
            &["A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512", "A128GCM", "A192GCM", "A256GCM"]
        };
        for enc in encs {
            let token = key.encrypt(inner.as_bytes(), enc, Some("JWT"));
            assert!(v.validate(&token).await.is_ok(), "{alg} {enc}");
        }
    }
}

#[tokio::test]
async fn rsa1_5_is_refused_unless_dangerously_allowed() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("RSA1_5");
    let token = issuer.mint().encrypt(&key);
    let refused = validator(&issuer, &key).validate(&token).await.unwrap_err();
    assert!(matches!(refused, ValidationError::UnsupportedEncryption(_)), "{refused:?}");
    let dangerous = dangerous_validator(&issuer, &key, |d| {
        d.allow_rsa1_5();
    });
    assert!(dangerous.validate(&token).await.is_ok());
}

#[tokio::test]
async fn pbes2_is_refused_without_running_its_key_derivation() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("A256KW");
    // A header asking for a hundred million PBKDF2 iterations: refused before any work.
    let header =
        json!({"alg":"PBES2-HS512+A256KW","enc":"A256GCM","p2s":"c2FsdHNhbHQ","p2c":100_000_000,"kid":key.kid()});
    let token = format!("{}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA", B64.encode(header.to_string()));
    let started = Instant::now();
    let error = validator(&issuer, &key).validate(&token).await.unwrap_err();
    assert!(matches!(error, ValidationError::UnsupportedEncryption(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn compressed_payloads_are_refused() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("A256KW");
    let inner = issuer.mint().sign();
    let zipped = key.encrypt_with_header(
        inner.as_bytes(),
        members(&[("enc", "A256GCM".into()), ("cty", "JWT".into()), ("zip", "DEF".into())]),
    );
    let error = validator(&issuer, &key).validate(&zipped).await.unwrap_err();
    assert!(matches!(error, ValidationError::UnsupportedEncryption(_)), "{error:?}");
}

#[tokio::test]
async fn a_header_matching_no_key_is_rejected_before_decryption() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("RSA-OAEP-256");
    let v = validator(&issuer, &key);
    let inner = issuer.mint().sign();
    // Unknown kid.
    let stranger = TestEncryptionKey::generate("RSA-OAEP-256");
    assert_eq!(v.validate(&issuer.mint().encrypt(&stranger)).await.unwrap_err(), ValidationError::NoDecryptionKey);
    // The right kid, another algorithm than the key's.
    let other_alg = TestEncryptionKey::generate("RSA-OAEP").with_kid(key.kid());
    assert_eq!(
        v.validate(&other_alg.encrypt(inner.as_bytes(), "A256GCM", Some("JWT"))).await.unwrap_err(),
        ValidationError::NoDecryptionKey
    );
    // A content encryption we do not accept, and an unknown critical member.
    let header = json!({"alg":"RSA-OAEP-256","enc":"XC20P","kid":key.kid()});
    let odd_enc = format!("{}.AAAA.AAAA.AAAA.AAAA", B64.encode(header.to_string()));
    assert!(matches!(v.validate(&odd_enc).await.unwrap_err(), ValidationError::UnsupportedEncryption(_)));
    let crit = key.encrypt_with_header(
        inner.as_bytes(),
        members(&[("enc", "A256GCM".into()), ("cty", "JWT".into()), ("crit", json!(["exp"])), ("exp", 1.into())]),
    );
    assert_eq!(v.validate(&crit).await.unwrap_err(), ValidationError::UnsupportedCriticalHeader);
    // Strict base64url in every segment.
    let mut padded: Vec<String> = issuer.mint().encrypt(&key).split('.').map(str::to_owned).collect();
    padded[3].push('=');
    assert!(matches!(v.validate(&padded.join(".")).await.unwrap_err(), ValidationError::Malformed(_)));
}

#[tokio::test]
async fn tampering_fails_decryption() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("ECDH-ES+A256KW");
    let token = issuer.mint().encrypt(&key);
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut ciphertext = B64.decode(&segments[3]).unwrap();
    ciphertext[0] ^= 1;
    segments[3] = B64.encode(ciphertext);
    let error = validator(&issuer, &key).validate(&segments.join(".")).await.unwrap_err();
    assert_eq!(error, ValidationError::DecryptionFailed);
}

#[tokio::test]
async fn an_unsigned_inner_token_is_always_rejected() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("A256KW");
    let unsigned = key.encrypt(issuer.mint().unsigned().as_bytes(), "A256GCM", Some("JWT"));
    let lenient = dangerous_validator(&issuer, &key, |d| {
        d.accept_unsigned_encrypted_claims();
    });
    assert_eq!(lenient.validate(&unsigned).await.unwrap_err(), ValidationError::AlgorithmNone);
}

#[tokio::test]
async fn claims_encrypted_without_a_signature_pass_only_when_allowed_and_symmetric() {
    let issuer = TestIssuer::start().await.unwrap();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = json!({"iss": issuer.issuer(), "aud": issuer.audience(), "exp": exp, "sub": "direct"}).to_string();
    for alg in ["A256KW", "dir", "RSA-OAEP-256"] {
        let key = TestEncryptionKey::generate(alg);
        let token = key.encrypt(claims.as_bytes(), "A256GCM", None);
        let strict = validator(&issuer, &key);
        assert_eq!(strict.validate(&token).await.unwrap_err(), ValidationError::UnsignedEncryptedToken, "{alg}");
        let lenient = dangerous_validator(&issuer, &key, |d| {
            d.accept_unsigned_encrypted_claims();
        });
        let result = lenient.validate(&token).await;
        if alg == "RSA-OAEP-256" {
            // Anyone with the public key could have made it.
            assert_eq!(result.unwrap_err(), ValidationError::UnsignedEncryptedToken);
        } else {
            assert_eq!(result.unwrap().subject(), Some("direct"), "{alg}");
        }
    }
}

#[tokio::test]
async fn encryption_can_be_required_and_is_refused_without_keys() {
    let issuer = TestIssuer::start().await.unwrap();
    let key = TestEncryptionKey::generate("RSA-OAEP-256");
    let required = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .decryption_keys(keys(&key))
        .require_encryption()
        .build()
        .unwrap();
    assert_eq!(required.validate(&issuer.mint().sign()).await.unwrap_err(), ValidationError::EncryptionRequired);
    assert!(required.validate(&issuer.mint().encrypt(&key)).await.is_ok());
    let no_keys = Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).require_encryption().build();
    assert!(matches!(no_keys, Err(BuildError::NoDecryptionKeys)));
    // Without decryption keys, an encrypted token is simply not accepted.
    let plain = Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).build().unwrap();
    assert_eq!(plain.validate(&issuer.mint().encrypt(&key)).await.unwrap_err(), ValidationError::EncryptedToken);
}

#[tokio::test]
async fn decryption_keys_reload_at_run_time() {
    let issuer = TestIssuer::start().await.unwrap();
    let old = TestEncryptionKey::generate("RSA-OAEP-256");
    let new = TestEncryptionKey::generate("ECDH-ES+A256KW");
    let keys = keys(&old);
    let v = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .decryption_keys(keys.clone())
        .build()
        .unwrap();
    assert!(v.validate(&issuer.mint().encrypt(&old)).await.is_ok());
    keys.reload(new.private_jwks().as_bytes()).unwrap();
    assert!(v.validate(&issuer.mint().encrypt(&new)).await.is_ok());
    assert_eq!(v.validate(&issuer.mint().encrypt(&old)).await.unwrap_err(), ValidationError::NoDecryptionKey);
    // A bad document leaves the current keys in place.
    assert!(keys.reload(b"not json").is_err());
    assert!(v.validate(&issuer.mint().encrypt(&new)).await.is_ok());
}

#[tokio::test]
async fn debug_of_decryption_keys_shows_no_key_material() {
    let key = TestEncryptionKey::generate("A256KW");
    let keys = keys(&key);
    let secret = key.public_jwk()["k"].as_str().unwrap().to_owned();
    let debug = format!("{keys:?} {key:?}");
    assert!(!debug.contains(&secret), "{debug}");
    assert!(debug.contains(key.kid()));
}

/// A bank-style issuer: authorization_code then refresh_token at its documented
/// path, Basic auth, encrypted access tokens and signed ID tokens; the resource server
/// accepts the access tokens through the layer, cached on repeat.
#[tokio::test]
async fn the_bank_flow_issues_encrypted_access_tokens_the_layer_accepts() {
    let key = TestEncryptionKey::generate("RSA-OAEP-256");
    let issuer = TestIssuer::builder()
        .path_prefix("/baas/prod/auth-server/api/v1")
        .token_path("/oauth2/token")
        .client("bank-client", "bank-secret")
        .encrypt_access_tokens(key.clone())
        .start()
        .await
        .unwrap();
    assert!(issuer.token_endpoint().ends_with("/baas/prod/auth-server/api/v1/oauth2/token"));
    let http = reqwest::Client::new();
    let redirect = "https://app.example/callback";
    let code = issuer.issue_code("bank-client", redirect, "openid read write", "customer-42");
    let first: Value = http
        .post(issuer.token_endpoint())
        .basic_auth("bank-client", Some("bank-secret"))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    let id_token = first["id_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 5, "the access token is a JWE");
    assert_eq!(id_token.split('.').count(), 3, "the id token is signed only");

    // The ID token is for the client: validate it as such.
    let id_validator = Validator::builder().issuer(issuer.issuer()).audience("bank-client").build().unwrap();
    assert_eq!(id_validator.validate(id_token).await.unwrap().subject(), Some("customer-42"));

    // Refresh with a subset of the scope; the refresh token rotates.
    let refresh = first["refresh_token"].as_str().unwrap();
    let second: Value = http
        .post(issuer.token_endpoint())
        .basic_auth("bank-client", Some("bank-secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let refreshed = second["access_token"].as_str().unwrap().to_owned();

    let cache = VerifiedTokenCache::<Claims>::default();
    let layer = BearerAuthLayer::new(validator(&issuer, &key)).cache(cache.clone());
    let url = claims_api(layer).await;
    for _ in 0..3 {
        let response = http.get(&url).bearer_auth(&refreshed).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let claims: Value = response.json().await.unwrap();
        assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("customer-42"), Some("read")));
    }
    assert_eq!(cache.len(), 1, "decrypted once, then served from the cache");
    let tampered = format!("{}x", &refreshed[..refreshed.len() - 1]);
    assert_eq!(http.get(&url).bearer_auth(tampered).send().await.unwrap().status(), 401);
}
