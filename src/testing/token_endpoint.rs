//! The token endpoint (RFC 6749 §3.2): client authentication, the three grants, and
//! DPoP-bound access tokens (RFC 9449 §5).

use std::sync::Arc;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::dpop::{DPOP_NONCE, bound_key, current_nonce};
use super::grants::Grant;
use super::request::{OAuthError, Params, authenticate, read_form};
use super::response::{Body, json};
use super::state::Shared;
use super::token::TokenBuilder;

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
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let (headers, params) = read_form(request).await?;
    let client_id = authenticate(shared, &headers, &params)?;
    // Before the grant, which may spend a code or a refresh token.
    let jkt = bound_key(shared, &method, &path, &headers)?;
    let jkt = jkt.as_deref();
    match params.single("grant_type")? {
        Some("client_credentials") => client_credentials(shared, &client_id, &params, jkt),
        Some("refresh_token") => refresh_token(shared, &client_id, &params, jkt),
        Some("authorization_code") => authorization_code(shared, &client_id, &params, jkt),
        Some(_) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type is not supported"))
        }
        None => Err(OAuthError::invalid_request("missing grant_type")),
    }
}

/// RFC 6749 §4.4, with the target audience from RFC 8707 `resource` or the
/// Auth0-style `audience` parameter.
fn client_credentials(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let scope = params.scope()?.unwrap_or_default();
    let resources = params.all("resource");
    for resource in &resources {
        // RFC 8707 §2: an absolute URI without a fragment.
        if url::Url::parse(resource).map_or(true, |url| url.fragment().is_some()) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "resource must be an absolute URI without a fragment",
            ));
        }
    }
    let audience = match resources.as_slice() {
        [] => Value::from(params.single("audience")?.unwrap_or(&shared.audience)),
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    };
    let access_token = access_token(shared, client_id, client_id, audience, scope, jkt);
    // RFC 6749 §4.4.3: no refresh token for this grant.
    Ok(token_response(shared, access_token, scope, jkt))
}

/// RFC 6749 §6.
fn refresh_token(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let token = params.single("refresh_token")?.ok_or_else(|| OAuthError::invalid_request("missing refresh_token"))?;
    let scope = params.scope()?;
    let grant = shared.grants().refresh(client_id, token, scope)?;
    Ok(grant_response(shared, client_id, grant, None, jkt))
}

/// RFC 6749 §4.1.3, answered with an OpenID Connect ID token as well.
fn authorization_code(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    jkt: Option<&str>,
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
    Ok(grant_response(shared, client_id, grant, Some(id_token), jkt))
}

fn grant_response(
    shared: &Arc<Shared>,
    client_id: &str,
    grant: Grant,
    id_token: Option<String>,
    jkt: Option<&str>,
) -> Value {
    let audience = Value::from(shared.audience.as_str());
    let access_token = access_token(shared, client_id, &grant.subject, audience, &grant.scope, jkt);
    let mut response = token_response(shared, access_token, &grant.scope, jkt);
    response["refresh_token"] = grant.refresh_token.into();
    if let Some(id_token) = id_token {
        response["id_token"] = id_token.into();
    }
    response
}

/// An RFC 9068 access token, or an opaque one with the same claims behind it; bound to
/// the DPoP key with thumbprint `jkt` when there is one (RFC 9449 §6.1).
fn access_token(
    shared: &Arc<Shared>,
    client_id: &str,
    subject: &str,
    audience: Value,
    scope: &str,
    jkt: Option<&str>,
) -> String {
    let token = TokenBuilder::new(Arc::clone(shared)).subject(subject).audience(audience).claim("client_id", client_id);
    let token = if scope.is_empty() { token.without_claim("scope") } else { token.scope(scope) };
    let token = match jkt {
        Some(jkt) => token.claim("cnf", json!({ "jkt": jkt })),
        None => token,
    };
    if shared.opaque_access_tokens {
        return token.opaque();
    }
    #[cfg(feature = "jwe")]
    if let Some(key) = &shared.access_token_encryption {
        return token.encrypt(key);
    }
    token.sign()
}

/// RFC 6749 §5.1; `token_type` is `DPoP` for a DPoP-bound token (RFC 9449 §5).
fn token_response(shared: &Shared, access_token: String, scope: &str, jkt: Option<&str>) -> Value {
    let mut response = json!({
        "access_token": access_token,
        "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": shared.token_lifetime.as_secs(),
    });
    if !scope.is_empty() {
        response["scope"] = scope.into();
    }
    response
}
