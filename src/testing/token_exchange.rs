//! Token exchange (RFC 8693): an access token of this issuer, presented by a client
//! with an exchange policy, for a new one to a target that policy allows, naming the
//! client (or the actor token's subject) as the actor.

use std::collections::HashSet;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use super::introspection::active_claims;
use super::request::{OAuthError, Params};
use super::state::Shared;
use super::token_response::{Confirmation, access_token, issue, token_response};

/// RFC 8693 §3: an access token of this issuer.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 8693 §2.1 and §2.2: exchanges `subject_token` for an access token for the
/// requested `audience`s and `resource`s (the issuer's audience when none), which
/// `client_id`'s exchange policy must allow.
pub(crate) fn token_exchange(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    confirmation: &Confirmation,
) -> Result<Value, OAuthError> {
    let subject_token =
        params.single("subject_token")?.ok_or_else(|| OAuthError::invalid_request("missing subject_token"))?;
    let subject_token_type = params
        .single("subject_token_type")?
        .ok_or_else(|| OAuthError::invalid_request("missing subject_token_type"))?;
    if !is_supported(subject_token_type) {
        return Err(OAuthError::invalid_request("unsupported subject_token_type"));
    }
    // RFC 8693 §2.1: `actor_token_type` is required with an actor token, and only then.
    let actor_token = match (params.single("actor_token")?, params.single("actor_token_type")?) {
        (None, None) => None,
        (Some(token), Some(kind)) if is_supported(kind) => Some(token),
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("unsupported actor_token_type")),
        _ => return Err(OAuthError::invalid_request("actor_token and actor_token_type go together")),
    };
    let issued_token_type = match params.single("requested_token_type")? {
        None | Some(ACCESS_TOKEN_TYPE) => ACCESS_TOKEN_TYPE,
        Some(JWT_TOKEN_TYPE) => JWT_TOKEN_TYPE,
        Some(_) => return Err(OAuthError::invalid_request("unsupported requested_token_type")),
    };
    let requested_scope = params.scope()?;
    let mut targets: Vec<&str> = params.all("audience");
    targets.extend(params.resources()?);
    if targets.is_empty() {
        targets.push(&shared.audience);
    }

    let allowed = shared.clients().exchange_audiences(client_id).map(<[String]>::to_vec).ok_or_else(|| {
        OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", "the client may not exchange tokens")
    })?;
    if !targets.iter().all(|target| allowed.iter().any(|a| a == target)) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "the client may not exchange tokens for this audience",
        ));
    }

    let subject = active_claims(shared, subject_token)
        .ok_or_else(|| OAuthError::invalid_grant("subject_token is not an active token of this issuer"))?;
    let subject_id = subject
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::invalid_grant("subject_token has no sub"))?;
    let actor = match actor_token {
        Some(token) => active_claims(shared, token)
            .and_then(|claims| claims.get("sub").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| OAuthError::invalid_grant("actor_token is not an active token of this issuer"))?,
        None => client_id.to_owned(),
    };
    let granted_scope = subject.get("scope").and_then(Value::as_str).unwrap_or_default();
    let scope = match requested_scope {
        Some(requested) => {
            let granted: HashSet<&str> = granted_scope.split(' ').filter(|s| !s.is_empty()).collect();
            if !requested.split(' ').all(|scope| granted.contains(scope)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "scope exceeds the subject token's",
                ));
            }
            requested
        }
        None => granted_scope,
    };

    // RFC 8693 §4.1: the current actor, with the subject token's actors nested inside.
    let mut act = json!({ "sub": actor });
    if let Some(prior) = subject.get("act") {
        act["act"] = prior.clone();
    }
    let audience = match targets.as_slice() {
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    };
    let token = access_token(shared, Some(client_id), subject_id, audience, scope, confirmation).claim("act", act);
    let mut response = token_response(shared, issue(shared, token), scope, confirmation);
    // RFC 8693 §2.2.1.
    response["issued_token_type"] = issued_token_type.into();
    Ok(response)
}

/// The token types a subject or actor token may be: what this issuer issues.
fn is_supported(token_type: &str) -> bool {
    token_type == ACCESS_TOKEN_TYPE || token_type == JWT_TOKEN_TYPE
}
