//! One test per rule of the validation policy (see the `validate` module docs), against real tokens from the
//! test issuer and keys fetched from it over HTTP. Each test fails if its rule is removed.
#![cfg(feature = "testing")]

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::json;
use tower_oauth::testing::{TestIssuer, TestKey};
use tower_oauth::{
    Algorithm, BuildError, Claims, FetchError, Jwk, KeySet, KeyStore, Secret, TypPolicy, ValidationError, Validator,
};

use crate::support::api::{now, validator};

async fn issuer() -> TestIssuer {
    TestIssuer::start().await.expect("test issuer starts")
}

/// Re-encodes a token's header with `edit` applied, keeping its payload and signature.
fn with_header(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    edit(&mut header);
    let encoded = B64.encode(header.to_string());
    parts[0] = &encoded;
    parts.join(".")
}

#[tokio::test]
async fn a_token_from_the_issuer_is_accepted_with_its_claims() {
    let issuer = issuer().await;
    let token = issuer.mint().subject("alice").scope("read write").sign();
    let claims = validator(&issuer).validate(&token).await.unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert_eq!(claims.issuer(), Some(issuer.issuer()));
    assert!(claims.has_scope("write"));
}

#[tokio::test]
async fn every_asymmetric_algorithm_is_verified_with_its_published_key() {
    let issuer = issuer().await;
    // The issuer makes some keys on first use; publish them all before the first fetch,
    // or the unknown-kid cooldown would (rightly) allow only one extra fetch.
    for alg in Algorithm::ASYMMETRIC {
        issuer.current_key(alg);
    }
    let validator = validator(&issuer);
    for alg in Algorithm::ASYMMETRIC {
        let token = issuer.mint().alg(alg).sign();
        assert!(validator.validate(&token).await.is_ok(), "{alg}");
    }
}

#[tokio::test]
async fn alg_none_is_never_accepted() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    assert_eq!(validator.validate(&issuer.mint().unsigned()).await.unwrap_err(), ValidationError::AlgorithmNone);
    // Even with a real signature left in place and any capitalisation.
    let token = with_header(&issuer.mint().sign(), |h| h["alg"] = json!("nOnE"));
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::AlgorithmNone);
}

#[tokio::test]
async fn algorithms_outside_the_allow_list_are_rejected() {
    let issuer = issuer().await;
    let only_es256 = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .algorithms([Algorithm::ES256])
        .build()
        .unwrap();
    let token = issuer.mint().alg(Algorithm::RS256).sign();
    assert_eq!(only_es256.validate(&token).await.unwrap_err(), ValidationError::AlgorithmNotAllowed(Algorithm::RS256));
    assert!(only_es256.validate(&issuer.mint().alg(Algorithm::ES256).sign()).await.is_ok());
    let unknown = with_header(&token, |h| h["alg"] = json!("RS1"));
    assert_eq!(only_es256.validate(&unknown).await.unwrap_err(), ValidationError::UnsupportedAlgorithm);
}

#[tokio::test]
async fn hs256_needs_a_configured_secret_and_an_explicit_allow_list() {
    let issuer = issuer().await;
    let secret = TestKey::hmac(Algorithm::HS256, &[42u8; 32]).with_kid("hs");
    let token = issuer.mint().sign_with(&secret);

    // Default allow-list: asymmetric only.
    assert_eq!(
        validator(&issuer).validate(&token).await.unwrap_err(),
        ValidationError::AlgorithmNotAllowed(Algorithm::HS256)
    );

    // Allowed, but the remote JWKS offers no secret (an `oct` key there would be skipped).
    issuer.publish_key(&secret);
    let remote_only = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap();
    assert_eq!(remote_only.validate(&token).await.unwrap_err(), ValidationError::UnknownKey);

    // Allowed and configured.
    let keys = KeySet::from_keys([Jwk::hmac(Algorithm::HS256, &Secret::new([42u8; 32]), Some("hs")).unwrap()]);
    let configured = Validator::builder()
        .issuer_with_keys(issuer.issuer(), KeyStore::from_key_set(keys))
        .audience(issuer.audience())
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap();
    assert!(configured.validate(&token).await.is_ok());
    let forged = issuer.mint().sign_with(&TestKey::hmac(Algorithm::HS256, &[7u8; 32]).with_kid("hs"));
    assert_eq!(configured.validate(&forged).await.unwrap_err(), ValidationError::InvalidSignature);
}

#[tokio::test]
async fn an_rsa_public_key_cannot_be_used_as_an_hmac_secret() {
    // The classic confusion: HS256 "signed" with the RSA public key's bytes as secret.
    let issuer = issuer().await;
    let rsa = issuer.current_key(Algorithm::RS256);
    let public_bytes = rsa.public_jwk().to_string();
    let confused = TestKey::hmac(Algorithm::HS256, public_bytes.as_bytes()).with_kid(rsa.kid());
    let token = issuer.mint().sign_with(&confused);
    let validator = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .algorithms(Algorithm::ALL)
        .build()
        .unwrap();
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::KeyAlgorithmMismatch);
}

#[tokio::test]
async fn the_algorithm_must_fit_the_keys_type_and_curve() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    // ES384 with the kid of the P-256 key.
    let p256 = issuer.current_key(Algorithm::ES256);
    let token = issuer.mint().alg(Algorithm::ES384).header("kid", p256.kid()).sign();
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::KeyAlgorithmMismatch);
}

#[tokio::test]
async fn a_key_restricted_to_one_alg_is_not_used_with_another() {
    let issuer = issuer().await;
    // The PS256 key declares `alg: PS256`; a PKCS#1 v1.5 signature under its kid fails.
    let ps = issuer.current_key(Algorithm::PS256);
    let rs_with_ps_key = issuer.mint().alg(Algorithm::RS256).header("kid", ps.kid()).sign();
    assert_eq!(validator(&issuer).validate(&rs_with_ps_key).await.unwrap_err(), ValidationError::KeyAlgorithmMismatch);
}

#[tokio::test]
async fn keys_marked_for_encryption_are_not_used_to_verify() {
    let issuer = issuer().await;
    let key = TestKey::generate(Algorithm::ES256).with_kid("enc-key");
    let mut jwk = key.public_jwk();
    jwk["use"] = json!("enc");
    issuer.set_jwks_override(Some(json!({"keys": [jwk, issuer.current_key(Algorithm::RS256).public_jwk()]})));
    let validator = validator(&issuer);
    let token = issuer.mint().sign_with(&key);
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::UnknownKey);
    assert!(validator.validate(&issuer.mint().sign()).await.is_ok());
}

#[tokio::test]
async fn embedded_keys_and_key_urls_in_the_header_are_never_followed() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let attacker = TestKey::generate(Algorithm::RS256).with_kid("attacker");
    let jwk = attacker.public_jwk();
    let token = issuer
        .mint()
        .header("jwk", jwk)
        .header("jku", format!("{}/attacker-jwks", issuer.issuer()))
        .header("x5u", "https://attacker.example/cert.pem")
        .header("x5c", json!(["MIIB"]))
        .sign_with(&attacker);
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::UnknownKey);
    // Pointing the kid at a real key does not help a forged signature.
    let token = with_header(&token, |h| h["kid"] = json!(issuer.current_key(Algorithm::RS256).kid()));
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::InvalidSignature);
}

#[tokio::test]
async fn unknown_critical_headers_and_unencoded_payloads_are_rejected() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let crit = issuer.mint().header("crit", json!(["exp"])).header("exp", now() + 60).sign();
    assert_eq!(validator.validate(&crit).await.unwrap_err(), ValidationError::UnsupportedCriticalHeader);
    let b64 = issuer.mint().header("crit", json!(["b64"])).header("b64", false).sign();
    assert_eq!(validator.validate(&b64).await.unwrap_err(), ValidationError::UnencodedPayload);
}

#[tokio::test]
async fn rsa_keys_under_2048_bits_are_refused() {
    // A 1024-bit modulus published under a kid: the key is skipped at load, so a token
    // naming it finds no key.
    let issuer = issuer().await;
    let modulus = B64.encode([0xC3u8; 128]);
    let small = json!({"kty": "RSA", "kid": "small", "n": modulus, "e": "AQAB", "alg": "RS256"});
    issuer.set_jwks_override(Some(json!({"keys": [small, issuer.current_key(Algorithm::RS256).public_jwk()]})));
    let store = KeyStore::builder().issuer(issuer.issuer()).build().unwrap();
    assert!(store.wait_until_loaded(Duration::from_secs(5)).await);
    let keys = store.keys().unwrap();
    assert!(keys.get("small").is_none());
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn iss_must_match_a_trusted_issuer_exactly() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    for other in [format!("{}/", issuer.issuer()), issuer.issuer().to_uppercase(), "https://evil.example".into()] {
        let token = issuer.mint().issuer(&other).sign();
        assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::UntrustedIssuer, "{other}");
    }
    let missing = issuer.mint().without_claim("iss").sign();
    assert_eq!(validator.validate(&missing).await.unwrap_err(), ValidationError::MissingClaim("iss"));
}

#[tokio::test]
async fn each_issuer_is_verified_with_its_own_keys_only() {
    let a = issuer().await;
    let b = issuer().await;
    let validator = Validator::builder().issuer(a.issuer()).issuer(b.issuer()).audience(a.audience()).build().unwrap();
    assert!(validator.validate(&a.mint().sign()).await.is_ok());
    assert!(validator.validate(&b.mint().sign()).await.is_ok());
    // B's key and kid, but claiming to be A.
    let token = b.mint().issuer(a.issuer()).sign();
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::UnknownKey);
}

#[tokio::test]
async fn aud_is_required_and_may_be_a_string_or_an_array() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let aud = issuer.audience().to_owned();
    assert!(validator.validate(&issuer.mint().audience(aud.clone()).sign()).await.is_ok());
    assert!(validator.validate(&issuer.mint().audience(json!(["other", aud])).sign()).await.is_ok());
    let wrong = issuer.mint().audience(json!(["other", "another"])).sign();
    assert_eq!(validator.validate(&wrong).await.unwrap_err(), ValidationError::InvalidAudience);
    let missing = issuer.mint().without_claim("aud").sign();
    assert_eq!(validator.validate(&missing).await.unwrap_err(), ValidationError::MissingClaim("aud"));
    let wrong_type = issuer.mint().audience(json!(7)).sign();
    assert_eq!(validator.validate(&wrong_type).await.unwrap_err(), ValidationError::InvalidClaim("aud"));
}

#[tokio::test]
async fn exp_is_required_and_checked_with_leeway() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let missing = issuer.mint().without_claim("exp").sign();
    assert_eq!(validator.validate(&missing).await.unwrap_err(), ValidationError::MissingClaim("exp"));
    assert_eq!(validator.validate(&issuer.mint().expired().sign()).await.unwrap_err(), ValidationError::Expired);
    let within_leeway = issuer.mint().claim("exp", now() - 30).sign();
    assert!(validator.validate(&within_leeway).await.is_ok());
    let beyond_leeway = issuer.mint().claim("exp", now() - 90).sign();
    assert_eq!(validator.validate(&beyond_leeway).await.unwrap_err(), ValidationError::Expired);
    let string_exp = issuer.mint().claim("exp", "tomorrow").sign();
    assert_eq!(validator.validate(&string_exp).await.unwrap_err(), ValidationError::InvalidClaim("exp"));
    let no_leeway = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(no_leeway.validate(&within_leeway).await.unwrap_err(), ValidationError::Expired);
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_rejected_beyond_the_leeway() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let nbf_soon = issuer.mint().not_before_in(Duration::from_secs(30)).sign();
    assert!(validator.validate(&nbf_soon).await.is_ok());
    let nbf_later = issuer.mint().not_before_in(Duration::from_secs(300)).sign();
    assert_eq!(validator.validate(&nbf_later).await.unwrap_err(), ValidationError::NotYetValid);
    let iat_soon = issuer.mint().issued_in(Duration::from_secs(30)).sign();
    assert!(validator.validate(&iat_soon).await.is_ok());
    let iat_later = issuer.mint().issued_in(Duration::from_secs(300)).sign();
    assert_eq!(validator.validate(&iat_later).await.unwrap_err(), ValidationError::IssuedInFuture);
}

#[tokio::test]
async fn typ_is_lenient_by_default_and_strict_on_request() {
    let issuer = issuer().await;
    let lenient = validator(&issuer);
    let strict = Validator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .typ(TypPolicy::Rfc9068)
        .build()
        .unwrap();
    let at_jwt = issuer.mint().header("typ", "at+jwt").sign();
    let app_at_jwt = issuer.mint().header("typ", "application/at+jwt").sign();
    let jwt = issuer.mint().header("typ", "JWT").sign();
    let none = issuer.mint().without_header("typ").sign();
    let dpop = issuer.mint().header("typ", "dpop+jwt").sign();
    for token in [&at_jwt, &app_at_jwt, &jwt, &none] {
        assert!(lenient.validate(token).await.is_ok());
    }
    assert_eq!(lenient.validate(&dpop).await.unwrap_err(), ValidationError::InvalidType);
    for token in [&at_jwt, &app_at_jwt] {
        assert!(strict.validate(token).await.is_ok());
    }
    for token in [&jwt, &none, &dpop] {
        assert_eq!(strict.validate(token).await.unwrap_err(), ValidationError::InvalidType);
    }
}

#[tokio::test]
async fn tokens_over_the_size_limit_are_rejected_before_parsing() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let big = issuer.mint().claim("padding", "x".repeat(17 * 1024)).sign();
    assert_eq!(validator.validate(&big).await.unwrap_err(), ValidationError::TokenTooLarge);
    let small_limit =
        Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).max_token_size(100).build().unwrap();
    assert_eq!(small_limit.validate(&issuer.mint().sign()).await.unwrap_err(), ValidationError::TokenTooLarge);
}

#[tokio::test]
async fn parsing_is_strict_about_segments_and_base64url() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let token = issuer.mint().sign();
    let (head, rest) = token.split_once('.').unwrap();
    let cases = [
        format!("{token}."),
        token.replacen('.', "..", 1),
        format!("{head}=.{rest}"),
        format!("{head} .{rest}"),
        format!("{head}\n.{rest}"),
        token.replace('-', "+").replace('_', "/"),
        format!("{token}=="),
        "".to_owned(),
        "....".to_owned(),
    ];
    for case in cases {
        let error = validator.validate(&case).await.unwrap_err();
        assert!(
            matches!(error, ValidationError::Malformed(_) | ValidationError::EncryptedToken),
            "{case:?}: {error:?}"
        );
    }
    assert_eq!(validator.validate("a.b.c.d.e").await.unwrap_err(), ValidationError::EncryptedToken);
    let not_json = format!("{}.{}.{}", B64.encode("nope"), B64.encode("{}"), B64.encode("sig"));
    assert!(matches!(validator.validate(&not_json).await.unwrap_err(), ValidationError::Malformed(_)));
    let duplicate_alg = format!("{}.{}", B64.encode(r#"{"alg":"RS256","alg":"none"}"#), rest);
    assert!(matches!(validator.validate(&duplicate_alg).await.unwrap_err(), ValidationError::Malformed(_)));
}

#[tokio::test]
async fn tampering_with_payload_or_signature_fails_verification() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let payload = issuer.mint().alg(alg).tampered_payload();
        assert_eq!(validator.validate(&payload).await.unwrap_err(), ValidationError::InvalidSignature, "{alg}");
        let signature = issuer.mint().alg(alg).tampered_signature();
        assert_eq!(validator.validate(&signature).await.unwrap_err(), ValidationError::InvalidSignature, "{alg}");
    }
}

#[tokio::test]
async fn duplicate_security_claims_are_rejected() {
    let issuer = issuer().await;
    let key = issuer.current_key(Algorithm::RS256);
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid());
    let exp = now() + 300;
    let iss = issuer.issuer();
    let aud = issuer.audience();
    let payload = format!(r#"{{"iss":"{iss}","aud":"{aud}","exp":{exp},"exp":{}}}"#, exp + 1_000_000);
    let token = key.sign_compact(&header, &payload);
    assert_eq!(validator(&issuer).validate(&token).await.unwrap_err(), ValidationError::InvalidClaim("exp"));
}

#[tokio::test]
async fn scopes_come_from_scope_or_scp() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    let scp_array = issuer.mint().without_claim("scope").claim("scp", json!(["orders.read", "orders.write"])).sign();
    let claims = validator.validate(&scp_array).await.unwrap();
    assert!(claims.scopes().contains_all(["orders.read", "orders.write"]));
    let scp_string = issuer.mint().without_claim("scope").claim("scp", "a b").sign();
    assert!(validator.validate(&scp_string).await.unwrap().scopes().contains_all(["a", "b"]));
    let none = issuer.mint().without_claim("scope").sign();
    assert!(validator.validate(&none).await.unwrap().scopes().is_empty());
}

#[tokio::test]
async fn claims_deserialize_into_the_applications_own_type() {
    #[derive(Debug, Deserialize)]
    struct Mine {
        sub: String,
        tenant: String,
        roles: Vec<String>,
    }
    let issuer = issuer().await;
    let validator =
        Validator::builder().issuer(issuer.issuer()).audience(issuer.audience()).claims::<Mine>().build().unwrap();
    let token = issuer.mint().subject("bob").claim("tenant", "acme").claim("roles", json!(["ops"])).sign();
    let mine = validator.validate(&token).await.unwrap();
    assert_eq!(
        (mine.sub.as_str(), mine.tenant.as_str(), mine.roles.as_slice()),
        ("bob", "acme", &["ops".to_owned()][..])
    );
    let missing_tenant = issuer.mint().sign();
    assert_eq!(validator.validate(&missing_tenant).await.unwrap_err(), ValidationError::ClaimsType);
}

/// The Keycloak sample token (the bank's realm): its header and claims byte for byte, signed
/// with a test key published under the token's `kid`. Keycloak sends `typ: "JWT"`,
/// `sub` twice, `azp`, and a space-separated `scope`.
#[tokio::test]
async fn the_keycloak_sample_token_is_accepted_as_it_is() {
    const SEED_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ1VXhOb2Q0TWlEY0ZrdXhmQVFzaGZUYUREOVhTZnJCaDdLblRrOTdyNlNjIn0.eyJleHAiOjE2MjcwMzU0MTUsImlhdCI6MTYyNzAzNTExNSwianRpIjoiMDZiMzE5MzItMmRkMi00MDkwLTk5ZTEtYTg5MTBiYjhiNmQxIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmJhbmthLmJhbmZpY28ubmV0L2F1dGgvcmVhbG1zL3Byb3ZpZGVyIiwiYXVkIjoib3V0Ym91bmQwMSIsInN1YiI6ImI3NjM5OTI4LTFiNmItNDhiYS05YTJmLWIyYjcwOTI2NWQ4NCIsInR5cCI6IkJlYXJlciIsImF6cCI6Im91dGJvdW5kMDEiLCJzZXNzaW9uX3N0YXRlIjoiZjA5YTAxYTYtYzMzNS00MjJhLWFhM2YtYzJmOTU2Yjc2MjNmIiwiYWNyIjoiMSIsImFsbG93ZWQtb3JpZ2lucyI6WyIqIl0sInNjb3BlIjoicHJvZmlsZSBvZmZsaW5lX2FjY2VzcyBlbWFpbCIsInN1YiI6InNlcnZpY2UtYWNjb3VudC1vdXRib3VuZDAxIiwiZW1haWxfdmVyaWZpZWQiOmZhbHNlLCJjbGllbnRIb3N0IjoiMTAuMTMwLjQuMTU4IiwiY2xpZW50SWQiOiJvdXRib3VuZDAxIiwicHJlZmVycmVkX3VzZXJuYW1lIjoic2VydmljZS1hY2NvdW50LW91dGJvdW5kMDEiLCJjbGllbnRBZGRyZXNzIjoiMTAuMTMwLjQuMTU4IiwiY2xpZW50X2lkIjoib3V0Ym91bmQwMSJ9.dMSwkA3Poi4KXSDCpsvup-qRg8GksHSy4sV_KrjTHaCbS-0TuE6upLsbP1x5en9KXdl42zz06KmQNkREdwZAv79r3rPtYAhK_1rMgV8KRoVxy3ijWEB99i7-MraAHPeHiv2yG8jqewegyEmJf_0D4okHUfkNvdyQXqD8ks7_kl8iH1tSDwlr1iv-oYQMCDsunDaOiVgRYC4sjYwOZtenOS16o3lZsu7g-t1EW_zyzzY-ei0ybNMt32OjPKVHo1Z--i0He9pKYnvxJawXLeOxPbhlt2J1-xIRMnjiLPZIRfdklNJC69ap7G4IiBzOGBKkBKy5HP4fGYHE7TWVbyUISg";
    let mut segments = SEED_TOKEN.split('.');
    let header = String::from_utf8(B64.decode(segments.next().unwrap()).unwrap()).unwrap();
    let payload = String::from_utf8(B64.decode(segments.next().unwrap()).unwrap()).unwrap();
    assert!(header.contains(r#""typ" : "JWT""#), "{header}");

    let key = TestKey::generate(Algorithm::RS256).with_kid("uUxNod4MiDcFkuxfAQshfTaDD9XSfrBh7KnTk97r6Sc");
    let token = key.sign_compact(&header, &payload);
    let keys = KeySet::from_jwks(json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
    let validator = Validator::builder()
        .issuer_with_keys("https://auth.banka.banfico.net/auth/realms/provider", KeyStore::from_key_set(keys))
        .audience("outbound01")
        .build()
        .unwrap();
    // Its `exp` is 2021-07-23; validate as of a minute after `iat`.
    let at = UNIX_EPOCH + Duration::from_secs(1_627_035_115 + 60);
    let claims: Claims = validator.validate_at(&token, at).await.unwrap();
    assert_eq!(claims.subject(), Some("service-account-outbound01"), "the lexically last `sub`");
    assert_eq!(claims.client_id(), Some("outbound01"));
    assert!(claims.scopes().contains_all(["profile", "offline_access", "email"]));
    assert_eq!(claims.get::<String>("preferred_username").as_deref(), Some("service-account-outbound01"));
    // Today it is simply expired.
    assert_eq!(validator.validate(&token).await.unwrap_err(), ValidationError::Expired);
}

#[tokio::test]
async fn nothing_is_accepted_until_issuer_and_audience_are_configured() {
    let issuer = issuer().await;
    assert!(matches!(Validator::builder().audience("a").build(), Err(BuildError::MissingIssuer)));
    assert!(matches!(Validator::builder().issuer(issuer.issuer()).build(), Err(BuildError::MissingAudience)));
    assert!(matches!(
        Validator::builder().issuer(issuer.issuer()).audience("a").algorithms([]).build(),
        Err(BuildError::NoAlgorithms)
    ));
    assert!(matches!(
        Validator::builder().issuer("http://idp.example").audience("a").build(),
        Err(BuildError::Url(FetchError::InsecureUrl))
    ));
    assert!(matches!(
        Validator::builder().issuer(issuer.issuer()).issuer(issuer.issuer()).audience("a").build(),
        Err(BuildError::DuplicateIssuer)
    ));
}

#[tokio::test]
async fn validation_without_waiting_reports_unknown_keys_and_missing_keys() {
    let issuer = issuer().await;
    let validator = validator(&issuer);
    // Nothing loaded yet may be reported as unavailable; after a first validate, keys are there.
    assert!(validator.validate(&issuer.mint().sign()).await.is_ok());
    let stranger = TestKey::generate(Algorithm::ES256).with_kid("stranger");
    let token = issuer.mint().sign_with(&stranger);
    assert_eq!(validator.validate_with_current_keys(&token).unwrap_err(), ValidationError::UnknownKey);
}
