//! The JWT bearer grant (RFC 7523 §2.1): an assertion from a trusted issuer, for the
//! subject it names.

use super::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const IDP: &str = "https://idp.example";

async fn grant(issuer: &TestIssuer, authorization: Option<&str>, assertion: &str) -> Result<Reply, reqwest::Error> {
    post_token(issuer, authorization, &[("grant_type", GRANT), ("assertion", assertion), ("scope", "read")]).await
}

#[tokio::test]
async fn a_trusted_issuers_assertion_gets_an_access_token_for_its_subject() -> TestResult {
    let key = TestKey::generate(Algorithm::PS256);
    let issuer = TestIssuer::builder().trust_assertion_issuer(IDP, &key.public_jwk().to_string()).start().await?;
    let jwks = issuer.jwks();

    // Without client authentication: a token with no `client_id`.
    let reply = grant(&issuer, None, &signed(&key, &assertion_claims(IDP, "alice", &issuer.token_endpoint()))).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!((&reply.json["token_type"], &reply.json["scope"]), (&json!("Bearer"), &json!("read")));
    assert!(reply.json.get("refresh_token").is_none());
    let (_, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &jwks)?;
    assert_eq!((&claims["sub"], &claims["iss"]), (&json!("alice"), &json!(issuer.issuer())));
    assert_eq!(claims["aud"], issuer.audience());
    assert!(claims.get("client_id").is_none(), "{claims}");

    // With it: the client is the token's `client_id`. The issuer itself is a good `aud`,
    // and a `jti` is not required.
    let mut claims = assertion_claims(IDP, "bob", issuer.issuer());
    claims.as_object_mut().map(|claims| claims.remove("jti"));
    let reply = grant(&issuer, Some(&default_basic()), &signed(&key, &claims)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(access_token_claims(&reply)["sub"], "bob");
    assert_eq!(access_token_claims(&reply)["client_id"], TestIssuer::DEFAULT_CLIENT_ID);
    assert_eq!(issuer.grant_requests(GrantType::JwtBearer), 2);
    Ok(())
}

#[tokio::test]
async fn a_bad_assertion_is_400_invalid_grant() -> TestResult {
    let key = TestKey::generate(Algorithm::ES256);
    let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
    let issuer = TestIssuer::builder().trust_assertion_issuer(IDP, &jwks).start().await?;
    let good = || assertion_claims(IDP, "alice", &issuer.token_endpoint());
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
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "from an untrusted issuer",
            signed(&key, &with("iss", json!("https://evil.example"))),
            "the assertion's issuer is not trusted",
        ),
        ("signed by a stranger", signed(&stranger, &good()), "the assertion's signature does not verify"),
        (
            "HMAC-signed",
            signed(&TestKey::hmac(Algorithm::HS256, &[1; 32]), &good()),
            "the assertion's alg is not accepted",
        ),
        (
            "for another audience",
            signed(&key, &with("aud", json!("https://elsewhere.example"))),
            "the assertion's aud is not this authorization server",
        ),
        ("expired", signed(&key, &with("exp", json!(now() - 120))), "the assertion has expired"),
        ("without exp", signed(&key, &without("exp")), "the assertion has no exp"),
        ("without sub", signed(&key, &without("sub")), "the assertion has no sub"),
        ("with an empty sub", signed(&key, &with("sub", json!(""))), "the assertion has no sub"),
        ("not a JWT", "not-a-jwt".to_owned(), "the assertion is not a JWT with an iss"),
    ];
    for (what, assertion, expected) in &cases {
        let reply = grant(&issuer, None, assertion).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.json);
        assert_eq!(reply.json["error"], "invalid_grant", "{what}");
        assert_eq!(reply.json["error_description"], *expected, "{what}");
    }

    // A `jti` is good once.
    let assertion = signed(&key, &good());
    assert_eq!(grant(&issuer, None, &assertion).await?.status, StatusCode::OK);
    let replayed = grant(&issuer, None, &assertion).await?;
    assert_eq!((replayed.status, &replayed.json["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    assert_eq!(replayed.json["error_description"], "the assertion was used before");

    // No assertion; a client that fails to authenticate.
    let missing = post_token(&issuer, None, &[("grant_type", GRANT)]).await?;
    assert_eq!((missing.status, &missing.json["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));
    let assertion = signed(&key, &good());
    let wrong_client = grant(&issuer, Some(&basic("test-client", "wrong")), &assertion).await?;
    assert_eq!(
        (wrong_client.status, &wrong_client.json["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
    assert_eq!(issuer.grant_requests(GrantType::JwtBearer), cases.len() as u64 + 4);
    Ok(())
}
