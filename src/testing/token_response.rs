//! What every grant answers with: an access token, bound to the client's keys when the
//! request proved it holds some, in the response of RFC 6749 §5.1.

use std::sync::Arc;

use http::request::Parts;
use serde_json::{Map, Value, json};

use super::state::Shared;
use super::token::TokenBuilder;

/// The keys the access token is bound to (its `cnf` claim): the DPoP key of the
/// request's proof (RFC 9449 §6.1) and the TLS client certificate (RFC 8705 §3.1).
#[derive(Default)]
pub(crate) struct Confirmation {
    /// The JWK thumbprint of the DPoP key, `jkt`.
    pub(crate) jkt: Option<String>,
    /// The certificate's SHA-256 thumbprint, `x5t#S256`.
    pub(crate) x5t_s256: Option<String>,
}

impl Confirmation {
    /// The binding for a request with a DPoP proof for `jkt` (if any), over a
    /// connection with the client certificate (if any).
    pub(crate) fn of(jkt: Option<String>, parts: &Parts) -> Confirmation {
        #[cfg(feature = "mtls-rustls")]
        let x5t_s256 = parts.extensions.get::<super::tls::PeerCertificates>().map(|peer| peer.leaf.thumbprint_b64());
        #[cfg(not(feature = "mtls-rustls"))]
        let x5t_s256 = {
            let _ = parts;
            None
        };
        Confirmation { jkt, x5t_s256 }
    }

    fn claim(&self) -> Option<Value> {
        let mut cnf = Map::new();
        if let Some(jkt) = &self.jkt {
            cnf.insert("jkt".into(), jkt.clone().into());
        }
        if let Some(x5t) = &self.x5t_s256 {
            cnf.insert("x5t#S256".into(), x5t.clone().into());
        }
        (!cnf.is_empty()).then_some(Value::Object(cnf))
    }
}

/// The claims of an RFC 9068 access token for `subject`, issued to `client_id` (none
/// for an unauthenticated request), bound as `confirmation` says. Finish it with
/// [`issue`].
pub(crate) fn access_token(
    shared: &Arc<Shared>,
    client_id: Option<&str>,
    subject: &str,
    audience: Value,
    scope: &str,
    confirmation: &Confirmation,
) -> TokenBuilder {
    let token = TokenBuilder::new(Arc::clone(shared)).subject(subject).audience(audience);
    let token = match client_id {
        Some(client_id) => token.claim("client_id", client_id),
        None => token.without_claim("client_id"),
    };
    let token = if scope.is_empty() { token.without_claim("scope") } else { token.scope(scope) };
    match confirmation.claim() {
        Some(cnf) => token.claim("cnf", cnf),
        None => token,
    }
}

/// The access token as the issuer hands them out: signed, encrypted, or opaque with the
/// claims behind it.
pub(crate) fn issue(shared: &Shared, token: TokenBuilder) -> String {
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
pub(crate) fn token_response(shared: &Shared, access_token: String, scope: &str, confirmation: &Confirmation) -> Value {
    let mut response = json!({
        "access_token": access_token,
        "token_type": if confirmation.jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": shared.token_lifetime.as_secs(),
    });
    if !scope.is_empty() {
        response["scope"] = scope.into();
    }
    response
}
