//! Token introspection (RFC 7662) and OpenID Connect userinfo (Core 1.0 §5.3): both
//! answer from what the issuer knows about a token it issued.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::client_auth::{authenticate, required};
use super::request::{OAuthError, read_form};
use super::response::{Body, empty, json};
use super::state::Shared;
use crate::validate::verify_jws;
use crate::{Algorithm, KeySet};

/// The claims of `token` if the issuer considers it active: an opaque token it
/// issued, or a JWT signed with a key it publishes and naming it as `iss`; in both
/// cases not revoked and not expired.
pub(crate) fn active_claims(shared: &Shared, token: &str) -> Option<Map<String, Value>> {
    if shared.is_revoked(token) {
        return None;
    }
    let claims = match shared.opaque_claims(token) {
        Some(claims) => claims,
        None => jwt_claims(shared, token)?,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let timely = claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| now < exp)
        && claims.get("nbf").and_then(Value::as_i64).is_none_or(|nbf| nbf <= now);
    timely.then_some(claims)
}

fn jwt_claims(shared: &Shared, token: &str) -> Option<Map<String, Value>> {
    let jwks = shared.keys().published_jwks().to_string();
    let keys = KeySet::from_jwks(jwks.as_bytes()).ok()?;
    let verified = verify_jws(token, &keys, &Algorithm::ASYMMETRIC).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(verified.payload()).ok()?;
    (claims.get("iss").and_then(Value::as_str) == Some(shared.issuer.as_str())).then_some(claims)
}

/// Answers a `POST` to the introspection endpoint (RFC 7662 §2). The caller must
/// authenticate as a registered client, by any method the token endpoint takes.
pub(crate) async fn introspect(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let mut response = match introspection(&shared, request).await {
        Ok(body) => json(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn introspection(shared: &Shared, request: Request<Incoming>) -> Result<Value, OAuthError> {
    let (parts, params) = read_form(request).await?;
    required(authenticate(shared, &parts, &params)?)?;
    let token = params.single("token")?.ok_or_else(|| OAuthError::invalid_request("missing token"))?;
    // RFC 7662 §2.2: anything not active is just `active: false`, with no reason why.
    let Some(claims) = active_claims(shared, token) else {
        return Ok(json!({ "active": false }));
    };
    let mut response = Map::new();
    response.insert("active".into(), true.into());
    // RFC 9449 §6.2: a token bound to a DPoP key is a `DPoP` token.
    let dpop = claims.get("cnf").and_then(|cnf| cnf.get("jkt")).is_some();
    response.insert("token_type".into(), if dpop { "DPoP" } else { "Bearer" }.into());
    response.extend(claims);
    Ok(Value::Object(response))
}

/// Answers the userinfo endpoint (OpenID Connect Core 1.0 §5.3): `GET` or `POST`
/// with the access token as a bearer token (RFC 6750 §2.1). The answer is `sub`
/// and the claims set with [`TestIssuer::set_user_claims`](super::TestIssuer::set_user_claims).
pub(crate) fn userinfo(shared: &Shared, request: &Request<Incoming>) -> Response<Body> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(claims) = token.and_then(|token| active_claims(shared, token)) else {
        // RFC 6750 §3.1.
        let mut response = empty(StatusCode::UNAUTHORIZED);
        let challenge = if token.is_some() { r#"Bearer error="invalid_token""# } else { "Bearer" };
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        return response;
    };
    let Some(subject) = claims.get("sub").and_then(Value::as_str) else {
        return empty(StatusCode::FORBIDDEN);
    };
    let mut answer = Map::new();
    answer.insert("sub".into(), subject.into());
    if let Some(extra) = shared.user_claims(subject) {
        answer.extend(extra);
    }
    let mut response = json(StatusCode::OK, &Value::Object(answer));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
