//! The token endpoint (RFC 6749 §3.2): client authentication, the grants, and access
//! tokens bound to the client's DPoP key (RFC 9449 §5) or certificate (RFC 8705 §3).

use std::sync::Arc;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::GrantType;
use super::assertion::{self, Expected, KEY_ALGORITHMS, Unverified};
use super::client_auth::{authenticate, required};
use super::dpop::{DPOP_NONCE, bound_key, current_nonce};
use super::grants::Grant;
use super::request::{OAuthError, Params, read_form};
use super::response::{Body, json};
use super::state::Shared;
use super::token::TokenBuilder;
use super::token_exchange::token_exchange;
use super::token_response::{Confirmation, access_token, issue, token_response};

/// Answers a `POST` to the token endpoint.
pub(crate) async fn token(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let mut response = match exchange(&shared, request).await {
        Ok(body) => json(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    };
    // RFC 6749 §5.1: token responses must not be cached.
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    // RFC 9449 §8.2: a fresh nonce in any response, the `use_dpop_nonce` error included.
    if let Some(nonce) = current_nonce(&shared).and_then(|nonce| HeaderValue::from_str(&nonce).ok()) {
        headers.insert(DPOP_NONCE, nonce);
    }
    response
}

async fn exchange(shared: &Arc<Shared>, request: Request<Incoming>) -> Result<Value, OAuthError> {
    let (parts, params) = read_form(request).await?;
    let grant_type = params.single("grant_type")?;
    let grant = grant_type.and_then(GrantType::from_param);
    if let Some(grant) = grant {
        shared.record_grant(grant);
    }
    let client = authenticate(shared, &parts, &params)?;
    // Before the grant, which may spend a code or a refresh token.
    let jkt = bound_key(shared, &parts.method, parts.uri.path(), &parts.headers)?;
    let confirmation = Confirmation::of(jkt, &parts);
    match (grant, grant_type) {
        (Some(GrantType::ClientCredentials), _) => {
            client_credentials(shared, &required(client)?, &params, &confirmation)
        }
        (Some(GrantType::RefreshToken), _) => refresh_token(shared, &required(client)?, &params, &confirmation),
        (Some(GrantType::AuthorizationCode), _) => {
            authorization_code(shared, &required(client)?, &params, &confirmation)
        }
        // RFC 7523 §2.1: client authentication is optional for this grant.
        (Some(GrantType::JwtBearer), _) => jwt_bearer(shared, client.as_deref(), &params, &confirmation),
        (Some(GrantType::TokenExchange), _) => token_exchange(shared, &required(client)?, &params, &confirmation),
        (None, Some(_)) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type is not supported"))
        }
        (None, None) => Err(OAuthError::invalid_request("missing grant_type")),
    }
}

/// The `aud` a client asked for with RFC 8707 `resource` or the Auth0-style
/// `audience`; the issuer's audience by default.
fn requested_audience(shared: &Shared, params: &Params) -> Result<Value, OAuthError> {
    Ok(match params.resources()?.as_slice() {
        [] => Value::from(params.single("audience")?.unwrap_or(&shared.audience)),
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    })
}

/// RFC 6749 §4.4, with the target audience from RFC 8707 `resource` or the
/// Auth0-style `audience` parameter.
fn client_credentials(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    confirmation: &Confirmation,
) -> Result<Value, OAuthError> {
    let scope = params.scope()?.unwrap_or_default();
    let audience = requested_audience(shared, params)?;
    let token = access_token(shared, Some(client_id), client_id, audience, scope, confirmation);
    // RFC 6749 §4.4.3: no refresh token for this grant.
    Ok(token_response(shared, issue(shared, token), scope, confirmation))
}

/// RFC 6749 §6.
fn refresh_token(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    confirmation: &Confirmation,
) -> Result<Value, OAuthError> {
    let token = params.single("refresh_token")?.ok_or_else(|| OAuthError::invalid_request("missing refresh_token"))?;
    let scope = params.scope()?;
    let grant = shared.grants().refresh(client_id, token, scope)?;
    Ok(grant_response(shared, client_id, grant, None, confirmation))
}

/// RFC 6749 §4.1.3, answered with an OpenID Connect ID token as well.
fn authorization_code(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    confirmation: &Confirmation,
) -> Result<Value, OAuthError> {
    let code = params.single("code")?.ok_or_else(|| OAuthError::invalid_request("missing code"))?;
    let redirect_uri =
        params.single("redirect_uri")?.ok_or_else(|| OAuthError::invalid_request("missing redirect_uri"))?;
    let grant = shared.grants().redeem_code(client_id, code, redirect_uri)?;
    // OpenID Connect Core 1.0 §2: the ID token is for the client itself.
    let id_token = TokenBuilder::new(Arc::clone(shared))
        .subject(&grant.subject)
        .audience(client_id)
        .without_claim("client_id")
        .without_claim("scope")
        .header("typ", "JWT")
        .sign();
    Ok(grant_response(shared, client_id, grant, Some(id_token), confirmation))
}

fn grant_response(
    shared: &Arc<Shared>,
    client_id: &str,
    grant: Grant,
    id_token: Option<String>,
    confirmation: &Confirmation,
) -> Value {
    let audience = Value::from(shared.audience.as_str());
    let token = access_token(shared, Some(client_id), &grant.subject, audience, &grant.scope, confirmation);
    let mut response = token_response(shared, issue(shared, token), &grant.scope, confirmation);
    response["refresh_token"] = grant.refresh_token.into();
    if let Some(id_token) = id_token {
        response["id_token"] = id_token.into();
    }
    response
}

/// RFC 7523 §2.1: an assertion from a trusted issuer, signed with its key, for the
/// subject it names. The client, if it authenticated, is the token's `client_id`.
fn jwt_bearer(
    shared: &Arc<Shared>,
    client_id: Option<&str>,
    params: &Params,
    confirmation: &Confirmation,
) -> Result<Value, OAuthError> {
    let assertion = params.single("assertion")?.ok_or_else(|| OAuthError::invalid_request("missing assertion"))?;
    let scope = params.scope()?.unwrap_or_default();
    let audience = requested_audience(shared, params)?;
    // RFC 7521 §4.1.1: every problem with the assertion is `invalid_grant`.
    let issuer = Unverified::read(assertion)
        .and_then(|unverified| unverified.iss)
        .ok_or_else(|| OAuthError::invalid_grant("the assertion is not a JWT with an iss"))?;
    let keys = shared
        .assertion_issuers
        .get(&issuer)
        .ok_or_else(|| OAuthError::invalid_grant("the assertion's issuer is not trusted"))?;
    let audiences = [shared.issuer.clone(), shared.token_endpoint()];
    let expected = Expected {
        issuer: &issuer,
        subject: None,
        audiences: &audiences,
        max_lifetime: None,
        require_jti: false,
        replay_domain: "jwt_bearer",
    };
    let claims = assertion::verify(assertion, keys, &KEY_ALGORITHMS, &expected, &shared.assertion_replay)
        .map_err(OAuthError::invalid_grant)?;
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
    let token = access_token(shared, client_id, subject, audience, scope, confirmation);
    Ok(token_response(shared, issue(shared, token), scope, confirmation))
}
