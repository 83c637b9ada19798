//! Encrypted access tokens from an independent IdP: node-oidc-provider (npm `oidc-provider`,
//! pinned in `tests/oidc/package-lock.json`), run by `tests/oidc/idp.mjs` on 127.0.0.1.
//!
//! Its resource `https://jwe.example.test` gets RFC 9068 access tokens signed with RS256,
//! then encrypted to the resource server's RSA key (RSA-OAEP-256 + A256GCM; oidc-provider's
//! `jwt.encrypt` resource-server option). The IdP holds only the public half; the test
//! fetches the private JWK Set from the script's `/__jwe_keys` route and loads it into
//! [`DecryptionKeys`]. The tokens then go through [`BearerAuthLayer`] in an axum app, with
//! the signing keys found by discovery.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(feature = "testing", feature = "axum", feature = "jwe"))]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use tower_oauth::validate::DecryptionKeys;
use tower_oauth::{BearerAuthLayer, TypPolicy, Validator};

use crate::support;
use crate::support::api::claims_api;
use support::oidc_idp::{API, API_JWE, API_JWE_NO_KID, CLIENT, Idp, Reply, TestResult, call, http_client, segment};

/// A compact JWE with one bit of its ciphertext (segment 3) flipped.
fn tamper_ciphertext(token: &str) -> String {
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(segments.len(), 5);
    let mut ciphertext = URL_SAFE_NO_PAD.decode(&segments[3]).expect("base64url");
    ciphertext[0] ^= 0x01;
    segments[3] = URL_SAFE_NO_PAD.encode(ciphertext);
    segments.join(".")
}

/// Asserts a 401 `invalid_token` whose (verbose) description contains `why`.
fn assert_rejected(reply: &Reply, why: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?} {}", reply.challenge, reply.json);
    let challenge = reply.challenge.as_deref().unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");
    assert!(challenge.contains(why), "expected {why:?} in {challenge}");
}

/// Issuer via discovery, RFC 9068 `typ`, the given audiences, and the resource server's
/// decryption keys.
fn validator(issuer: &str, audiences: &[&str], keys: &DecryptionKeys, require_encryption: bool) -> Validator {
    let mut builder = Validator::builder().issuer(issuer).typ(TypPolicy::Rfc9068).decryption_keys(keys.clone());
    for audience in audiences {
        builder = builder.audience(*audience);
    }
    if require_encryption {
        builder = builder.require_encryption();
    }
    builder.build().expect("validator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_encrypted_access_tokens_pass_the_bearer_layer() -> TestResult {
    let idp = Idp::start().await?;
    let jwks = idp.decryption_jwks().await?;
    let private: Value = serde_json::from_slice(&jwks)?;
    let kid = private["keys"][0]["kid"].as_str().ok_or("no kid on the decryption key")?.to_owned();
    let keys = DecryptionKeys::from_jwks(&jwks)?;
    assert_eq!(keys.len(), 1, "one RSA key, bound to RSA-OAEP-256 by its alg");

    // What oidc-provider sends: a compact JWE, RSA-OAEP-256 + A256GCM, with our kid, and
    // `cty: at+jwt` (RFC 7519 §5.2 suggests "JWT"; `at+jwt` says more and is accepted as a
    // JWT media type), plus `iss` and `aud` replicated into the header (RFC 7519 §5.3).
    let token = idp.token(CLIENT, API_JWE, "read write").await?;
    assert_eq!(token.split('.').count(), 5, "a compact JWE");
    let header = segment(&token, 0);
    eprintln!("oidc-provider JWE header: {header}");
    assert_eq!(header["alg"], "RSA-OAEP-256", "{header}");
    assert_eq!(header["enc"], "A256GCM", "{header}");
    assert_eq!(header["kid"], kid.as_str(), "{header}");
    assert_eq!(header["cty"], "at+jwt", "{header}");
    assert_eq!(header["iss"], idp.issuer.as_str(), "{header}");
    assert_eq!(header["aud"], API_JWE, "{header}");
    assert!(header.get("zip").is_none() && header.get("typ").is_none(), "{header}");

    // Decrypted directly: a nested RFC 9068 JWS signed with the IdP's RS256 key.
    let decrypted = keys.decrypt(&token)?;
    assert!(decrypted.is_nested(), "cty at+jwt marks a nested token");
    let inner = std::str::from_utf8(decrypted.payload())?.to_owned();
    let inner_header = segment(&inner, 0);
    assert_eq!((&inner_header["alg"], &inner_header["typ"]), (&"RS256".into(), &"at+jwt".into()), "{inner_header}");
    let inner_claims = segment(&inner, 1);
    assert_eq!(inner_claims["aud"], API_JWE, "{inner_claims}");

    // Through the layer: discovery finds the signing keys, the token decrypts and verifies.
    let url =
        claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API_JWE], &keys, false)).verbose_errors(true)).await;
    let http = http_client();
    let reply = call(&http, &url, Some(&token)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["iss"], idp.issuer.as_str(), "{}", reply.json);
    assert_eq!(reply.json["aud"], API_JWE, "{}", reply.json);
    assert_eq!(reply.json["client_id"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["sub"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["scope"], "read write", "{}", reply.json);
    assert_eq!(reply.json["jti"], inner_claims["jti"], "the claims are the inner token's: {}", reply.json);

    // One flipped ciphertext bit: the GCM tag fails, before any signature is looked at.
    let reply = call(&http, &url, Some(&tamper_ciphertext(&token))).await?;
    assert_rejected(&reply, "decryption failed");
    // The same token encrypted for the kid-less resource: another audience.
    let other = idp.token(CLIENT, API_JWE_NO_KID, "read").await?;
    assert_rejected(&call(&http, &url, Some(&other)).await?, "invalid audience");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwe_without_kid_is_decrypted_with_the_key_for_its_algorithm() -> TestResult {
    let idp = Idp::start().await?;
    let keys = DecryptionKeys::from_jwks(&idp.decryption_jwks().await?)?;
    let token = idp.token(CLIENT, API_JWE_NO_KID, "read").await?;
    let header = segment(&token, 0);
    assert!(header.get("kid").is_none(), "{header}");
    assert_eq!((&header["alg"], &header["enc"]), (&"RSA-OAEP-256".into(), &"A256GCM".into()), "{header}");

    let url = claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API_JWE_NO_KID], &keys, true))).await;
    let http = http_client();
    let reply = call(&http, &url, Some(&token)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["aud"], API_JWE_NO_KID, "{}", reply.json);

    // A key of the right algorithm but another modulus: one private-key operation, failure.
    let stranger = tower_oauth::testing::TestEncryptionKey::generate("RSA-OAEP-256");
    let wrong_keys = DecryptionKeys::from_jwks(stranger.private_jwks().as_bytes())?;
    assert_eq!(wrong_keys.decrypt(&token).unwrap_err(), tower_oauth::ValidationError::DecryptionFailed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encryption_refuses_the_idps_plain_jws_tokens() -> TestResult {
    let idp = Idp::start().await?;
    let keys = DecryptionKeys::from_jwks(&idp.decryption_jwks().await?)?;
    let http = http_client();
    let plain = idp.token(CLIENT, API, "read").await?;
    assert_eq!(plain.split('.').count(), 3, "the RS256 resource gets a plain JWS");
    let encrypted = idp.token(CLIENT, API_JWE, "read").await?;

    // Without the rule, both audiences' tokens pass: what fails below fails for the rule.
    let open = claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API, API_JWE], &keys, false))).await;
    for token in [&plain, &encrypted] {
        let reply = call(&http, &open, Some(token)).await?;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    }

    let strict = BearerAuthLayer::new(validator(&idp.issuer, &[API, API_JWE], &keys, true)).verbose_errors(true);
    let strict = claims_api(strict).await;
    assert_rejected(&call(&http, &strict, Some(&plain)).await?, "token must be encrypted");
    let reply = call(&http, &strict, Some(&encrypted)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["aud"], API_JWE, "{}", reply.json);

    // The genuine inner JWS of the encrypted token, taken out and replayed on its own (a
    // token leaked after decryption): its signature is good, but it is not encrypted.
    let inner = String::from_utf8(keys.decrypt(&encrypted)?.payload().to_vec())?;
    assert_eq!(call(&http, &open, Some(&inner)).await?.status, StatusCode::OK, "the inner token is genuine");
    assert_rejected(&call(&http, &strict, Some(&inner)).await?, "token must be encrypted");
    // And a tampered JWE is refused under the strict policy too.
    assert_rejected(&call(&http, &strict, Some(&tamper_ciphertext(&encrypted))).await?, "decryption failed");
    Ok(())
}
