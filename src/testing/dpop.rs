//! DPoP at the token endpoint (RFC 9449 §5): the proof of a token request is checked as
//! a resource server checks one (§4.3), less `ath`, and the access token is bound to
//! its key.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, Method, StatusCode};

use super::request::OAuthError;
use super::state::Shared;
use crate::validate::dpop::{DpopError, DpopReplayCache, DpopVerifier, RequestFacts};

/// The `DPoP` request header (RFC 9449 §4.1).
const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Proofs the token endpoint remembers for the replay check: plenty for any test.
const REPLAY_CAPACITY: usize = 100_000;

/// The token endpoint's proof checker: `htu` is checked against the issuer's origin
/// followed by the request's path, which is the token endpoint's URL.
pub(crate) fn verifier(origin: &str, nonce: bool) -> Result<DpopVerifier, crate::BuildError> {
    let builder = DpopVerifier::builder(origin).replay_cache(DpopReplayCache::in_memory(REPLAY_CAPACITY));
    let builder = if nonce { builder.require_nonce() } else { builder };
    builder.build()
}

/// The thumbprint the access token is to be bound to (`cnf.jkt`), when the token request
/// came with a good proof; `None` when it came with none and none is required.
///
/// # Errors
///
/// `invalid_dpop_proof` for several proofs or one that fails a check (a replayed one
/// among them), `use_dpop_nonce` when a server nonce is required and the proof has no
/// current one (the response carries one in `DPoP-Nonce`), and `invalid_request` when
/// proofs are required and there is none.
pub(crate) fn bound_key(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, OAuthError> {
    let mut proofs = headers.get_all(DPOP).iter();
    let (proof, another) = (proofs.next(), proofs.next());
    let proof = match (proof, another) {
        (None, _) if shared.require_dpop => return Err(OAuthError::invalid_request("a DPoP proof is required")),
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(invalid_proof("more than one DPoP header")),
        (Some(proof), None) => proof,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let facts = RequestFacts { method: method.as_str(), path, access_token: None, now };
    let checked = shared.dpop.check(proof.as_bytes(), &facts).map_err(|error| match error {
        // RFC 9449 §8: the client retries with the nonce in `DPoP-Nonce`.
        DpopError::UseNonce => OAuthError::new(StatusCode::BAD_REQUEST, "use_dpop_nonce", error.to_string()),
        error => invalid_proof(error.to_string()),
    })?;
    // RFC 9449 §11.1: each proof once.
    if shared.dpop.replay_cache().check_local(&checked.replay_key, checked.expires_at, now).is_err() {
        return Err(invalid_proof(DpopError::Replayed.to_string()));
    }
    Ok(Some(URL_SAFE_NO_PAD.encode(checked.thumbprint)))
}

/// The nonce every token response carries when nonces are required (RFC 9449 §8.2).
pub(crate) fn current_nonce(shared: &Shared) -> Option<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    shared.dpop.nonce(now)
}

fn invalid_proof(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
}

/// The `dpop_signing_alg_values_supported` of the metadata (RFC 9449 §5.1).
pub(crate) fn algorithms(shared: &Shared) -> Vec<&str> {
    shared.dpop.algs().split(' ').collect()
}
