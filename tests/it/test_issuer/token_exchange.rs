//! Token exchange (RFC 8693): a token of this issuer for one to an allowed audience,
//! with the client (or the actor token's subject) as the actor.

use super::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

async fn exchange(
    issuer: &TestIssuer,
    authorization: Option<&str>,
    params: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut form = vec![("grant_type", GRANT)];
    form.extend_from_slice(params);
    post_token(issuer, authorization, &form).await
}

async fn policy_issuer() -> std::io::Result<TestIssuer> {
    TestIssuer::builder()
        .client("gateway", "gateway-secret")
        .client("no-policy", "no-policy-secret")
        .exchange_policy("gateway", ["orders-api", "https://billing.example/"])
        .start()
        .await
}

fn gateway() -> String {
    basic("gateway", "gateway-secret")
}

#[tokio::test]
async fn a_subject_token_is_exchanged_for_an_allowed_audience_with_the_client_as_actor() -> TestResult {
    let issuer = policy_issuer().await?;
    let jwks = issuer.jwks();
    let subject = issuer.mint().subject("alice").scope("read write").sign();

    let reply = exchange(
        &issuer,
        Some(&gateway()),
        &[("subject_token", &subject), ("subject_token_type", ACCESS_TOKEN), ("audience", "orders-api")],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(reply.json["token_type"], "Bearer");
    assert_eq!(reply.json["expires_in"], 300);
    assert_eq!(reply.json["scope"], "read write");
    let (header, claims) = verify(reply.json["access_token"].as_str().unwrap_or_default(), &jwks)?;
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(
        (&claims["iss"], &claims["sub"], &claims["aud"]),
        (&json!(issuer.issuer()), &json!("alice"), &json!("orders-api"))
    );
    assert_eq!(claims["act"], json!({ "sub": "gateway" }));
    assert_eq!((&claims["client_id"], &claims["scope"]), (&json!("gateway"), &json!("read write")));

    // Down-scoped, to a resource, as a JWT, on behalf of an actor; the exchanged token's
    // own actor nests inside.
    let exchanged = reply.json["access_token"].as_str().unwrap_or_default().to_owned();
    let actor = issuer.mint().subject("service-b").sign();
    let reply = exchange(
        &issuer,
        Some(&gateway()),
        &[
            ("subject_token", &exchanged),
            ("subject_token_type", JWT),
            ("resource", "https://billing.example/"),
            ("scope", "read"),
            ("requested_token_type", JWT),
            ("actor_token", &actor),
            ("actor_token_type", ACCESS_TOKEN),
        ],
    )
    .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!((&reply.json["issued_token_type"], &reply.json["scope"]), (&json!(JWT), &json!("read")));
    let claims = access_token_claims(&reply);
    assert_eq!((&claims["sub"], &claims["aud"]), (&json!("alice"), &json!("https://billing.example/")));
    assert_eq!(claims["act"], json!({ "sub": "service-b", "act": { "sub": "gateway" } }));

    // Both targets at once; none at all is the issuer's audience, which this policy
    // does not allow.
    let reply = exchange(
        &issuer,
        Some(&gateway()),
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "orders-api"),
            ("resource", "https://billing.example/"),
        ],
    )
    .await?;
    assert_eq!(access_token_claims(&reply)["aud"], json!(["orders-api", "https://billing.example/"]));
    let reply =
        exchange(&issuer, Some(&gateway()), &[("subject_token", &subject), ("subject_token_type", ACCESS_TOKEN)])
            .await?;
    assert_eq!(reply.json["error"], "invalid_target");

    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 4);
    Ok(())
}

#[tokio::test]
async fn each_refusal_of_an_exchange_has_its_rfc_8693_error() -> TestResult {
    let issuer = policy_issuer().await?;
    let subject = issuer.mint().subject("alice").scope("read").sign();
    let other_issuer = TestIssuer::start().await?;
    let revoked = issuer.mint().sign();
    issuer.revoke(&revoked);

    let expect = async |authorization: Option<&str>, params: &[(&str, &str)], status: StatusCode, error: &str| {
        let reply = exchange(&issuer, authorization, params).await?;
        assert_eq!((reply.status, reply.json["error"].as_str()), (status, Some(error)), "{params:?}: {}", reply.json);
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    let bad_request = StatusCode::BAD_REQUEST;
    let target = ("audience", "orders-api");
    let subject_type = ("subject_token_type", ACCESS_TOKEN);

    // invalid_request: what the request says is incomplete or unsupported.
    expect(Some(&gateway()), &[subject_type, target], bad_request, "invalid_request").await?;
    expect(Some(&gateway()), &[("subject_token", &subject), target], bad_request, "invalid_request").await?;
    let saml = ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2");
    expect(Some(&gateway()), &[("subject_token", &subject), saml, target], bad_request, "invalid_request").await?;
    let lone_actor = [("subject_token", subject.as_str()), subject_type, target, ("actor_token", &subject)];
    expect(Some(&gateway()), &lone_actor, bad_request, "invalid_request").await?;
    let refresh = ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token");
    expect(
        Some(&gateway()),
        &[("subject_token", &subject), subject_type, target, refresh],
        bad_request,
        "invalid_request",
    )
    .await?;

    // The client: unauthenticated, or without a policy.
    let request = [("subject_token", subject.as_str()), subject_type, target];
    expect(None, &request, StatusCode::UNAUTHORIZED, "invalid_client").await?;
    expect(Some(&basic("no-policy", "no-policy-secret")), &request, bad_request, "unauthorized_client").await?;

    // invalid_target: an audience or resource the policy does not allow.
    let elsewhere = [("subject_token", subject.as_str()), subject_type, ("audience", "admin-api")];
    expect(Some(&gateway()), &elsewhere, bad_request, "invalid_target").await?;
    let partly = [("subject_token", subject.as_str()), subject_type, target, ("resource", "https://admin.example/")];
    expect(Some(&gateway()), &partly, bad_request, "invalid_target").await?;

    // invalid_grant: a subject or actor token that is not an active token of this issuer.
    let expired = issuer.mint().expired().sign();
    let tampered = issuer.mint().tampered_signature();
    let foreign = other_issuer.mint().sign();
    for token in [expired.as_str(), tampered.as_str(), foreign.as_str(), revoked.as_str(), "opaque-garbage"] {
        expect(Some(&gateway()), &[("subject_token", token), subject_type, target], bad_request, "invalid_grant")
            .await?;
        let actor = [
            ("subject_token", subject.as_str()),
            subject_type,
            target,
            ("actor_token", token),
            ("actor_token_type", ACCESS_TOKEN),
        ];
        expect(Some(&gateway()), &actor, bad_request, "invalid_grant").await?;
    }

    // invalid_scope: more than the subject token has.
    let wider = [("subject_token", subject.as_str()), subject_type, target, ("scope", "read admin")];
    expect(Some(&gateway()), &wider, bad_request, "invalid_scope").await?;

    // Every one of them reached the grant.
    assert_eq!(issuer.grant_requests(GrantType::TokenExchange), 20);
    Ok(())
}
