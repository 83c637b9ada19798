//! A Keycloak-shaped token endpoint (seed 001): the documented path, request and sample
//! response served exactly as published, and every documented status as a typed error.
#![cfg(feature = "testing")]

use std::time::Duration;

use tower_oauth::client::{
    AuthMethod, ErrorCode, InvalidResponse, TokenCache, TokenEndpoint, TokenError, TokenResponse,
};

use crate::support::server::{Canned, Scripted};

const PATH: &str = "/auth/realms/provider/protocol/openid-connect/token";

/// The sample response of seed 001, exactly as published.
const SAMPLE: &str = r#"{ "access_token": "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ1VXhOb2Q0TWlEY0ZrdXhmQVFzaGZUYUREOVhTZnJCaDdLblRrOTdyNlNjIn0.eyJleHAiOjE2MjcwMzU0MTUsImlhdCI6MTYyNzAzNTExNSwianRpIjoiMDZiMzE5MzItMmRkMi00MDkwLTk5ZTEtYTg5MTBiYjhiNmQxIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmJhbmthLmJhbmZpY28ubmV0L2F1dGgvcmVhbG1zL3Byb3ZpZGVyIiwiYXVkIjoib3V0Ym91bmQwMSIsInN1YiI6ImI3NjM5OTI4LTFiNmItNDhiYS05YTJmLWIyYjcwOTI2NWQ4NCIsInR5cCI6IkJlYXJlciIsImF6cCI6Im91dGJvdW5kMDEiLCJzZXNzaW9uX3N0YXRlIjoiZjA5YTAxYTYtYzMzNS00MjJhLWFhM2YtYzJmOTU2Yjc2MjNmIiwiYWNyIjoiMSIsImFsbG93ZWQtb3JpZ2lucyI6WyIqIl0sInNjb3BlIjoicHJvZmlsZSBvZmZsaW5lX2FjY2VzcyBlbWFpbCIsInN1YiI6InNlcnZpY2UtYWNjb3VudC1vdXRib3VuZDAxIiwiZW1haWxfdmVyaWZpZWQiOmZhbHNlLCJjbGllbnRIb3N0IjoiMTAuMTMwLjQuMTU4IiwiY2xpZW50SWQiOiJvdXRib3VuZDAxIiwicHJlZmVycmVkX3VzZXJuYW1lIjoic2VydmljZS1hY2NvdW50LW91dGJvdW5kMDEiLCJjbGllbnRBZGRyZXNzIjoiMTAuMTMwLjQuMTU4IiwiY2xpZW50X2lkIjoib3V0Ym91bmQwMSJ9.dMSwkA3Poi4KXSDCpsvup-qRg8GksHSy4sV_KrjTHaCbS-0TuE6upLsbP1x5en9KXdl42zz06KmQNkREdwZAv79r3rPtYAhK_1rMgV8KRoVxy3ijWEB99i7-MraAHPeHiv2yG8jqewegyEmJf_0D4okHUfkNvdyQXqD8ks7_kl8iH1tSDwlr1iv-oYQMCDsunDaOiVgRYC4sjYwOZtenOS16o3lZsu7g-t1EW_zyzzY-ei0ybNMt32OjPKVHo1Z--i0He9pKYnvxJawXLeOxPbhlt2J1-xIRMnjiLPZIRfdklNJC69ap7G4IiBzOGBKkBKy5HP4fGYHE7TWVbyUISg", "expires_in": 300, "refresh_expires_in": 0, "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJhZDg2Mjk4Mi0yOWIwLTQ5ZTAtYjUxMC0xOGU2OWE5YzI5M2YifQ.eyJpYXQiOjE2MjcwMzUxMTUsImp0aSI6IjdhMzA3ZDJiLWQ4YTItNDM3Mi1iNjdhLWU5YjZjMDcwMjE3YyIsImlzcyI6Imh0dHBzOi8vYXV0aC5iYW5rYS5iYW5maWNvLm5ldC9hdXRoL3JlYWxtcy9wcm92aWRlciIsImF1ZCI6Imh0dHBzOi8vYXV0aC5iYW5rYS5iYW5maWNvLm5ldC9hdXRoL3JlYWxtcy9wcm92aWRlciIsInN1YiI6ImI3NjM5OTI4LTFiNmItNDhiYS05YTJmLWIyYjcwOTI2NWQ4NCIsInR5cCI6Ik9mZmxpbmUiLCJhenAiOiJvdXRib3VuZDAxIiwic2Vzc2lvbl9zdGF0ZSI6ImYwOWEwMWE2LWMzMzUtNDIyYS1hYTNmLWMyZjk1NmI3NjIzZiIsInNjb3BlIjoicHJvZmlsZSBvZmZsaW5lX2FjY2VzcyBlbWFpbCJ9.2lK3zIyL5IjoL_ZkHznhGuifZByaQ5Xh3GAnoltbSNY", "token_type": "Bearer", "not-before-policy": 0, "session_state": "f09a01a6-c335-422a-aa3f-c2f956b7623f", "scope": "profile offline_access email" }"#;

fn endpoint(server: &Scripted) -> TokenEndpoint {
    TokenEndpoint::builder(server.url(PATH), "cop-client-id", "cop-client-secret")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_published_keycloak_response_is_accepted_as_it_is() {
    let server = Scripted::start(Canned::json(200, SAMPLE)).await;
    let response = endpoint(&server).request_token().await.unwrap();
    assert!(response.access_token().starts_with("eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICJ1VXhOb2Q0"));
    assert!(response.access_token().ends_with("7TWVbyUISg"));
    assert_eq!(response.expires_in(), Some(Duration::from_secs(300)));
    let refresh = response.refresh_token().expect("a refresh token");
    assert!(refresh.expose().starts_with(b"eyJhbGciOiJIUzI1NiIs"));
    assert_eq!(response.scope(), Some("profile offline_access email"));

    // The request the seed documents.
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.path, PATH);
    assert_eq!(request.header("authorization"), Some("Basic Y29wLWNsaWVudC1pZDpjb3AtY2xpZW50LXNlY3JldA=="));
    assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.form(), [("grant_type".to_owned(), "client_credentials".to_owned())]);
}

#[tokio::test]
async fn the_cache_holds_the_keycloak_token_for_its_300_seconds() {
    let server = Scripted::start(Canned::json(200, SAMPLE)).await;
    let cache = TokenCache::new(endpoint(&server)).unwrap();
    let token = cache.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(300));
    assert_eq!(token.scope(), Some("profile offline_access email"));
    assert!(token.header_value().to_str().unwrap().starts_with("Bearer eyJhbGciOiJSUzI1NiIs"));
    assert_eq!(cache.token().await.unwrap().generation(), 1);
    assert_eq!(server.count(), 1, "a cached token needs no second request");
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let server = Scripted::start(Canned::json(200, SAMPLE)).await;
    let mut endpoint = TokenEndpoint::builder(server.url(PATH), "cop client", "s&cr=t%")
        .auth_method(AuthMethod::ClientSecretPost)
        .build()
        .unwrap();
    endpoint.request_token().await.unwrap();
    let request = &server.seen()[0];
    assert_eq!(request.header("authorization"), None);
    let form = request.form();
    assert!(form.contains(&("client_id".into(), "cop client".into())), "{form:?}");
    assert!(form.contains(&("client_secret".into(), "s&cr=t%".into())), "{form:?}");
}

/// What a status (and body) from the token endpoint becomes.
async fn error_for(canned: Canned) -> TokenError {
    let server = Scripted::start(canned).await;
    endpoint(&server).request_token().await.expect_err("an error status")
}

#[tokio::test]
async fn every_documented_keycloak_status_is_a_typed_error() {
    assert!(matches!(error_for(Canned::status(400)).await, TokenError::BadRequest));
    assert!(matches!(error_for(Canned::status(401)).await, TokenError::Unauthorized));
    assert!(matches!(error_for(Canned::status(403)).await, TokenError::Forbidden));
    assert!(matches!(error_for(Canned::status(404)).await, TokenError::NotFound));
    assert!(matches!(error_for(Canned::status(405)).await, TokenError::MethodNotAllowed));
    assert!(matches!(error_for(Canned::status(406)).await, TokenError::NotAcceptable));
    assert!(matches!(error_for(Canned::status(415)).await, TokenError::UnsupportedMediaType));
    match error_for(Canned::status(429).header("retry-after", "7")).await {
        TokenError::RateLimited { retry_after } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("{other:?}"),
    }
    match error_for(Canned::status(500)).await {
        TokenError::ServerError { status, retry_after: None } => assert_eq!(status, 500),
        other => panic!("{other:?}"),
    }
    match error_for(Canned::status(503).header("retry-after", "2")).await {
        error @ TokenError::ServerError { .. } => {
            assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
            assert!(error.is_transient());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(error_for(Canned::status(502)).await, TokenError::ServerError { .. }));
    // A redirect is not followed: it would carry the credentials elsewhere.
    let redirect = error_for(Canned::status(307).header("location", "http://127.0.0.1:9/steal")).await;
    assert!(matches!(redirect, TokenError::UnexpectedStatus(s) if s == 307), "{redirect:?}");
}

#[tokio::test]
async fn rfc6749_error_bodies_are_typed_with_their_description() {
    let error =
        error_for(Canned::json(401, r#"{"error":"unauthorized_client","error_description":"Invalid client secret"}"#))
            .await;
    let oauth = error.oauth().expect("an RFC 6749 error");
    assert_eq!(oauth.code(), &ErrorCode::UnauthorizedClient);
    assert_eq!(oauth.description(), Some("Invalid client secret"));
    assert_eq!(error.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(error.to_string(), "token endpoint refused the request: unauthorized_client (Invalid client secret)");

    for (code, expected) in [
        ("invalid_request", ErrorCode::InvalidRequest),
        ("invalid_client", ErrorCode::InvalidClient),
        ("invalid_grant", ErrorCode::InvalidGrant),
        ("unsupported_grant_type", ErrorCode::UnsupportedGrantType),
        ("invalid_scope", ErrorCode::InvalidScope),
        ("temporarily_unavailable", ErrorCode::Other("temporarily_unavailable".into())),
    ] {
        let error = error_for(Canned::json(400, format!(r#"{{"error":"{code}","error_uri":"https://kc/e"}}"#))).await;
        assert_eq!(error.oauth().map(|e| e.code()), Some(&expected), "{code}");
        assert_eq!(error.oauth().and_then(|e| e.uri()), Some("https://kc/e"));
    }
}

#[tokio::test]
async fn a_hostile_error_body_never_reaches_display_verbatim() {
    let description = format!("line one\r\nSet-Cookie: x=1\u{1b}[2J{}", "A".repeat(10_000));
    let body = serde_json::json!({"error": "invalid_grant", "error_description": description}).to_string();
    let error = error_for(Canned::json(400, body)).await;
    let shown = error.to_string();
    assert!(!shown.contains('\r') && !shown.contains('\n') && !shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.len() < 400, "{} bytes", shown.len());

    // A body that is not an RFC 6749 error is not echoed at all.
    let error = error_for(Canned::json(400, r#"{"message":"secret internal detail"}"#)).await;
    assert!(matches!(error, TokenError::BadRequest));
    assert!(!error.to_string().contains("secret internal detail"));
}

#[tokio::test]
async fn success_responses_are_checked_where_it_matters() {
    let error = error_for(Canned::json(200, r#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#)).await;
    assert!(matches!(&error, TokenError::UnsupportedTokenType(t) if t == "DPoP"), "{error:?}");
    let error = error_for(Canned::json(200, "<html>oops</html>")).await;
    assert!(matches!(error, TokenError::InvalidResponse(InvalidResponse::NotJson)));
    let error = error_for(Canned::json(200, r#"{"token_type":"Bearer"}"#)).await;
    assert!(matches!(error, TokenError::InvalidResponse(InvalidResponse::MissingAccessToken)));
    let huge = format!(r#"{{"access_token":"{}","token_type":"Bearer"}}"#, "a".repeat(70_000));
    assert!(matches!(error_for(Canned::json(200, huge)).await, TokenError::BodyTooLarge { limit: 65536 }));
}

#[tokio::test]
async fn a_token_without_expires_in_gets_the_default_lifetime() {
    let server = Scripted::start(Canned::json(200, r#"{"access_token":"opaque-1","token_type":"bearer"}"#)).await;
    let cache = TokenCache::builder(endpoint(&server)).default_lifetime(Duration::from_secs(42)).build().unwrap();
    let token = cache.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(42));
    assert_eq!(token.expose(), "opaque-1");
}

#[test]
fn the_sample_parses_without_a_server_too() {
    let response = TokenResponse::parse(SAMPLE.as_bytes()).unwrap();
    assert_eq!(response.expires_in(), Some(Duration::from_secs(300)));
}
