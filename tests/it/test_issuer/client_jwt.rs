//! Client authentication with a JWT (RFC 7523 §2.2): `private_key_jwt` with the
//! client's registered keys and `client_secret_jwt` with its secret, at the token and
//! introspection endpoints.

use super::*;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A `client_credentials` request authenticated by `assertion` alone.
async fn with_assertion(issuer: &TestIssuer, assertion: &str) -> Result<Reply, reqwest::Error> {
    let params = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    post_token(issuer, None, &params).await
}

/// A 401 `invalid_client` with a challenge, and this description, which never quotes
/// the assertion.
fn assert_invalid_client(reply: &Reply, what: &str, assertion: &str, expected: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.json);
    assert_eq!(reply.json["error"], "invalid_client", "{what}");
    assert!(reply.header("www-authenticate").is_some(), "{what}");
    let description = reply.json["error_description"].as_str().unwrap_or_default();
    assert_eq!(description, expected, "{what}");
    // Never the assertion, nor any piece of it.
    for segment in assertion.split('.').filter(|segment| segment.len() > 8) {
        assert!(!description.contains(segment), "{what}: {description}");
    }
}

#[tokio::test]
async fn private_key_jwt_authenticates_with_each_registered_key() -> TestResult {
    let keys: Vec<TestKey> = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .map(TestKey::generate)
        .collect();
    let jwks = json!({ "keys": keys.iter().map(TestKey::public_jwk).collect::<Vec<_>>() }).to_string();
    let issuer = TestIssuer::builder().client_jwks("signer", &jwks).start().await?;
    let jwks = issuer.jwks();
    for key in &keys {
        let assertion = signed(key, &assertion_claims("signer", "signer", &issuer.token_endpoint()));
        let reply = with_assertion(&issuer, &assertion).await?;
        assert_eq!(reply.status, StatusCode::OK, "{:?}: {}", key.alg(), reply.json);
        let (_, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &jwks)?;
        assert_eq!(claims["client_id"], "signer");
    }

    // Without a `kid`, any registered key that fits `alg`; the issuer itself as `aud`,
    // in an array; and a matching `client_id` in the form.
    let mut claims = assertion_claims("signer", "signer", "https://elsewhere.example");
    claims["aud"] = json!(["https://elsewhere.example", issuer.issuer()]);
    let kidless = keys[2].sign_compact(r#"{"alg":"ES256"}"#, &claims.to_string());
    let params = [
        ("grant_type", "client_credentials"),
        ("client_id", "signer"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &kidless),
    ];
    let reply = post_token(&issuer, None, &params).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);

    // The default client is still there, with its secret.
    assert_eq!(post_token(&issuer, Some(&default_basic()), &[("grant_type", "client_credentials")]).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn private_key_jwt_authenticates_at_the_introspection_endpoint_too() -> TestResult {
    let key = TestKey::generate(Algorithm::EdDSA);
    // One JWK, not a set.
    let issuer = TestIssuer::builder().client_jwks("resource-server", &key.public_jwk().to_string()).start().await?;
    let token = issuer.mint().sign();
    for audience in [issuer.introspection_endpoint(), issuer.token_endpoint(), issuer.issuer().to_owned()] {
        let assertion = signed(&key, &assertion_claims("resource-server", "resource-server", &audience));
        let params =
            [("token", token.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)];
        let reply = post_form(&client(), &issuer.introspection_endpoint(), None, &params).await?;
        assert_eq!(reply.status, StatusCode::OK, "{audience}: {}", reply.json);
        assert_eq!(reply.json["active"], true);
    }
    let stranger = TestKey::generate(Algorithm::EdDSA).with_kid(key.kid());
    let assertion =
        signed(&stranger, &assertion_claims("resource-server", "resource-server", &issuer.introspection_endpoint()));
    let params =
        [("token", token.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)];
    let reply = post_form(&client(), &issuer.introspection_endpoint(), None, &params).await?;
    assert_invalid_client(&reply, "a stranger's signature", &assertion, "the assertion's signature does not verify");
    Ok(())
}

#[tokio::test]
async fn private_key_jwt_refuses_every_bad_assertion_with_401_invalid_client() -> TestResult {
    let key = TestKey::generate(Algorithm::ES256);
    let es384 = TestKey::generate(Algorithm::ES384);
    let other = TestKey::generate(Algorithm::ES256);
    let jwks = json!({ "keys": [key.public_jwk(), es384.public_jwk()] }).to_string();
    let issuer = TestIssuer::builder()
        .client_jwks("signer", &jwks)
        .client_jwks("other", &other.public_jwk().to_string())
        .start()
        .await?;
    let good = || assertion_claims("signer", "signer", &issuer.token_endpoint());
    let with = |name: &str, value: Value| {
        let mut claims = good();
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = good();
        claims.as_object_mut().map(|claims| claims.remove(name));
        claims
    };
    let stranger = TestKey::generate(Algorithm::ES256).with_kid(key.kid());
    let unknown_kid = TestKey::generate(Algorithm::ES256).with_kid("unknown");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed by a stranger under the client's kid",
            signed(&stranger, &good()),
            "the assertion's signature does not verify",
        ),
        (
            "signed by a key the client does not have",
            signed(&unknown_kid, &good()),
            "no registered key fits the assertion",
        ),
        ("signed by another client's key", signed(&other, &good()), "no registered key fits the assertion"),
        ("an algorithm outside the allow-list", signed(&es384, &good()), "the assertion's alg is not accepted"),
        (
            "unsigned",
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(good().to_string())),
            "the assertion's alg is not accepted",
        ),
        ("iss is not sub", signed(&key, &with("iss", json!("other"))), "the assertion's iss is wrong"),
        (
            "sub is an unknown client",
            signed(&key, &with("sub", json!("nobody"))),
            "unknown client or no registered keys",
        ),
        ("no sub", signed(&key, &without("sub")), "the assertion has no sub"),
        (
            "aud is another server",
            signed(&key, &with("aud", json!("https://elsewhere.example"))),
            "the assertion's aud is not this authorization server",
        ),
        ("no aud", signed(&key, &without("aud")), "the assertion has no aud"),
        ("expired", signed(&key, &with("exp", json!(now() - 120))), "the assertion has expired"),
        ("no exp", signed(&key, &without("exp")), "the assertion has no exp"),
        (
            "exp an hour ahead",
            signed(&key, &with("exp", json!(now() + 3600))),
            "the assertion's exp is too far in the future",
        ),
        (
            "issued in the future",
            signed(&key, &with("iat", json!(now() + 3600))),
            "the assertion was issued in the future",
        ),
        ("not valid yet", signed(&key, &with("nbf", json!(now() + 3600))), "the assertion is not valid yet"),
        ("no jti", signed(&key, &without("jti")), "the assertion has no jti"),
        ("not a JWT", "not-a-jwt".to_owned(), "client_assertion is not a JWT"),
    ];
    for (what, assertion, expected) in &cases {
        assert_invalid_client(&with_assertion(&issuer, assertion).await?, what, assertion, expected);
    }

    // A `jti` is good once.
    let assertion = signed(&key, &good());
    assert_eq!(with_assertion(&issuer, &assertion).await?.status, StatusCode::OK);
    let replayed = with_assertion(&issuer, &assertion).await?;
    assert_invalid_client(&replayed, "replayed", &assertion, "the assertion was used before");

    // The form's `client_id` must name the same client.
    let assertion = signed(&key, &good());
    let params = [
        ("grant_type", "client_credentials"),
        ("client_id", "other"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
    ];
    let reply = post_token(&issuer, None, &params).await?;
    assert_invalid_client(&reply, "another client_id", &assertion, "client_id does not match the client_assertion");
    let params = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", "urn:example:saml"),
        ("client_assertion", &assertion),
    ];
    let reply = post_token(&issuer, None, &params).await?;
    assert_invalid_client(&reply, "another assertion type", &assertion, "unsupported client_assertion_type");

    // Malformed requests are 400 invalid_request.
    let half = [("grant_type", "client_credentials"), ("client_assertion", assertion.as_str())];
    let reply = post_token(&issuer, None, &half).await?;
    assert_eq!((reply.status, &reply.json["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));
    let both = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
    ];
    let reply = post_token(&issuer, Some(&default_basic()), &both).await?;
    assert_eq!((reply.status, &reply.json["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));
    // That assertion was never spent.
    assert_eq!(with_assertion(&issuer, &assertion).await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn client_secret_jwt_uses_the_client_secret_as_the_hmac_key() -> TestResult {
    let secret = "a-client-secret-of-sixty-four-bytes-for-hs512-0123456789abcdefgh";
    assert_eq!(secret.len(), 64);
    let key = TestKey::generate(Algorithm::EdDSA);
    let issuer = TestIssuer::builder()
        .client("hmac", secret)
        .client("short", "test-secret")
        .client_jwks("keys-only", &key.public_jwk().to_string())
        .start()
        .await?;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let assertion =
            signed(&TestKey::hmac(alg, secret.as_bytes()), &assertion_claims("hmac", "hmac", issuer.issuer()));
        let reply = with_assertion(&issuer, &assertion).await?;
        assert_eq!(reply.status, StatusCode::OK, "{alg:?}: {}", reply.json);
        assert_eq!(access_token_claims(&reply)["client_id"], "hmac");
    }
    let introspected = {
        let assertion = signed(
            &TestKey::hmac(Algorithm::HS256, secret.as_bytes()),
            &assertion_claims("hmac", "hmac", &issuer.introspection_endpoint()),
        );
        let token = issuer.mint().sign();
        let params =
            [("token", token.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", &assertion)];
        post_form(&client(), &issuer.introspection_endpoint(), None, &params).await?
    };
    assert_eq!(introspected.json["active"], true, "{}", introspected.json);

    let cases = [
        (
            "another secret",
            "hmac",
            TestKey::hmac(Algorithm::HS256, &[7; 32]),
            "the assertion's signature does not verify",
        ),
        // RFC 7518 §3.2: the key must be as long as the hash.
        (
            "a secret too short for HS256",
            "short",
            TestKey::hmac(Algorithm::HS256, b"test-secret"),
            "the client secret is too short for the assertion's alg",
        ),
        (
            "a client without a secret",
            "keys-only",
            TestKey::hmac(Algorithm::HS256, &[7; 32]),
            "unknown client or no client secret",
        ),
        (
            "an unknown client",
            "nobody",
            TestKey::hmac(Algorithm::HS256, secret.as_bytes()),
            "unknown client or no client secret",
        ),
    ];
    for (what, client_id, key, expected) in &cases {
        let assertion = signed(key, &assertion_claims(client_id, client_id, &issuer.token_endpoint()));
        assert_invalid_client(&with_assertion(&issuer, &assertion).await?, what, &assertion, expected);
    }
    Ok(())
}

#[tokio::test]
async fn unusable_client_keys_fail_the_start() {
    for jwks in ["not json", r#"{"keys":[]}"#, r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#]
    {
        let error = TestIssuer::builder().client_jwks("c", jwks).start().await.expect_err(jwks);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{jwks}");
        let error = TestIssuer::builder().trust_assertion_issuer("https://idp", jwks).start().await.expect_err(jwks);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{jwks}");
    }
}
