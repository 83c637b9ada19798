//! One DPoP proof checked as RFC 9449 §4.3 says, but for the replay check, which comes
//! after the token (so only holders of a valid token can fill the replay cache).

use std::borrow::Cow;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{DpopError, VerifierConfig, htu};
use crate::validate::jws::{Compact, HeaderBuf, SignatureBuf};
use crate::{Algorithm, Jwk};

/// A proof that passed every check but the replay check.
#[derive(Debug)]
pub(crate) struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key: what `cnf.jkt` must name.
    pub(crate) thumbprint: [u8; 32],
    /// SHA-256 of the thumbprint and the `jti`: the replay cache's key.
    pub(crate) replay_key: [u8; 32],
    /// When the proof becomes too old to pass anyway (Unix seconds): the replay
    /// cache may forget it then.
    pub(crate) expires_at: i64,
}

#[derive(Deserialize)]
struct ProofHeader<'a> {
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    jwk: Option<&'a RawValue>,
    crit: Option<IgnoredAny>,
}

/// The members a private JWK would have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
#[derive(Deserialize)]
struct PrivateMembers {
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

impl PrivateMembers {
    fn any(&self) -> bool {
        [&self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k].iter().any(|m| m.is_some())
    }
}

#[derive(Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htu: Option<Cow<'a, str>>,
    iat: Option<serde_json::Number>,
    #[serde(borrow)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow)]
    nonce: Option<Cow<'a, str>>,
}

/// The request a proof must match.
pub(crate) struct RequestFacts<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// The access token the proof goes with, whose hash `ath` must be; `None` for a
    /// request without one (a token request, RFC 9449 §5), whose proof must have no `ath`.
    pub(crate) access_token: Option<&'a str>,
    /// Unix seconds.
    pub(crate) now: i64,
}

/// The longest `jti` kept: a random value needs far less (RFC 9449 §4.2: 96 bits).
const MAX_JTI: usize = 256;

pub(crate) fn check(
    config: &VerifierConfig,
    proof: &[u8],
    request: &RequestFacts<'_>,
) -> Result<CheckedProof, DpopError> {
    if proof.len() > config.max_proof_size {
        return Err(DpopError::TooLarge);
    }
    let proof = std::str::from_utf8(proof).map_err(|_| DpopError::Malformed("not a JWT"))?;
    let compact = Compact::split(proof).map_err(|_| DpopError::Malformed("not a compact JWS"))?;

    // RFC 9449 §4.3 steps 4-7: the header.
    let mut header_buf = HeaderBuf::new();
    let header_json = compact.header(&mut header_buf).map_err(|_| DpopError::Malformed("header is not base64url"))?;
    let header: ProofHeader<'_> =
        serde_json::from_slice(header_json).map_err(|_| DpopError::Malformed("header is not a JSON object"))?;
    if !header.typ.as_deref().is_some_and(|typ| typ.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(DpopError::InvalidType);
    }
    if header.crit.is_some() {
        return Err(DpopError::Malformed("critical header parameters are not understood"));
    }
    // RFC 9864: `Ed25519` is the fully-specified name of EdDSA with an Ed25519 key (the
    // key's `crv` is checked below either way).
    let alg = if header.alg == "Ed25519" { "EdDSA" } else { &header.alg };
    let alg = Algorithm::from_name(alg)
        .filter(|alg| !alg.is_symmetric() && config.algorithms.contains(*alg))
        .ok_or(DpopError::AlgorithmNotAllowed)?;
    let jwk = header.jwk.ok_or(DpopError::Malformed("no jwk header"))?;
    let private: PrivateMembers =
        serde_json::from_str(jwk.get()).map_err(|_| DpopError::InvalidKey("jwk is not a JSON object"))?;
    if private.any() {
        return Err(DpopError::PrivateKey);
    }

    // Steps 9-12 on the claims, before the costly signature check.
    let payload = compact.payload().map_err(|_| DpopError::Malformed("payload is not base64url"))?;
    let claims: ProofClaims<'_> =
        serde_json::from_slice(&payload).map_err(|_| DpopError::Malformed("claims are not a JSON object"))?;
    let jti = claims.jti.filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI).ok_or(DpopError::MissingClaim("jti"))?;
    let htm = claims.htm.ok_or(DpopError::MissingClaim("htm"))?;
    if *htm != *request.method {
        return Err(DpopError::MethodMismatch);
    }
    let htu = claims.htu.ok_or(DpopError::MissingClaim("htu"))?;
    let expected = htu::request_url(&config.public_url, request.path).ok_or(DpopError::UrlMismatch)?;
    if htu::normalise(&htu).as_deref() != Some(expected.as_str()) {
        return Err(DpopError::UrlMismatch);
    }
    let iat = claims.iat.as_ref().and_then(numeric_date).ok_or(DpopError::MissingClaim("iat"))?;
    if iat > request.now.saturating_add(config.leeway) {
        return Err(DpopError::IssuedInFuture);
    }
    if iat < request.now.saturating_sub(config.max_age.saturating_add(config.leeway)) {
        return Err(DpopError::Stale);
    }
    // RFC 9449 §4.3 step 11 (§7.1): the proof names the token it goes with, and a proof
    // for a request without a token names none.
    match (claims.ath, request.access_token) {
        (Some(ath), Some(token)) => {
            let hash = digest::digest(&digest::SHA256, token.as_bytes());
            let mut decoded = [0u8; 33];
            if URL_SAFE_NO_PAD.decode_slice(ath.as_bytes(), &mut decoded) != Ok(32) || decoded[..32] != *hash.as_ref() {
                return Err(DpopError::AccessTokenHashMismatch);
            }
        }
        (None, Some(_)) => return Err(DpopError::MissingClaim("ath")),
        (Some(_), None) => return Err(DpopError::AccessTokenHashMismatch),
        (None, None) => {}
    }
    if let Some(nonces) = &config.nonces
        && !claims.nonce.as_deref().is_some_and(|nonce| nonces.is_valid(nonce, request.now))
    {
        return Err(DpopError::UseNonce);
    }

    // Steps 6-8: the key, then the signature.
    let key = Jwk::from_json(jwk.get().as_bytes())
        .map_err(|_| DpopError::InvalidKey("not a public key this server can use"))?;
    if !key.supports(alg) {
        return Err(DpopError::InvalidKey("the key does not fit the algorithm"));
    }
    let mut signature_buf = SignatureBuf::new();
    let signature =
        compact.signature(&mut signature_buf).map_err(|_| DpopError::Malformed("signature is not base64url"))?;
    if !key.verify(alg, compact.signing_input, signature) {
        return Err(DpopError::InvalidSignature);
    }

    let thumbprint = *key.thumbprint();
    let mut replay = digest::Context::new(&digest::SHA256);
    replay.update(&thumbprint);
    replay.update(jti.as_bytes());
    let mut replay_key = [0u8; 32];
    replay_key.copy_from_slice(replay.finish().as_ref());
    let expires_at = iat.saturating_add(config.max_age).saturating_add(config.leeway).saturating_add(1);
    Ok(CheckedProof { thumbprint, replay_key, expires_at })
}

/// RFC 7519 §2 NumericDate: seconds, possibly with a fraction.
fn numeric_date(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| number.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}
