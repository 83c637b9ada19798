//! Finding the bearer token in a request (RFC 6750 §2.1, and §2.3 when enabled).

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

use super::Rejection;
use crate::validate::dpop::DpopError;

/// The scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    /// RFC 9449 §7.1, with the one `DPoP` proof header.
    Dpop,
}

/// The credentials of a request: the token, its scheme, and the DPoP proof.
pub(crate) struct Credentials<'r> {
    pub(crate) token: Found<'r>,
    pub(crate) scheme: Scheme,
    pub(crate) proof: Option<&'r [u8]>,
}

/// Extracts the token and, when DPoP is enabled, the `DPoP` scheme and its proof.
///
/// - The `DPoP` scheme (RFC 9449 §7.1) is recognised only when DPoP is enabled; it needs
///   exactly one `DPoP` header (§4.3 step 1), and is never taken from the query (§7).
/// - With DPoP enabled, a `DPoP` header beside the `Bearer` scheme is refused: a client
///   that holds a proof for a token must not send it as a bearer token (§7.2).
pub(crate) fn credentials<'r>(
    headers: &'r HeaderMap,
    uri: &Uri,
    allow_query: bool,
    dpop: bool,
) -> Result<Credentials<'r>, Rejection> {
    if !dpop {
        return bearer_token(headers, uri, allow_query).map(|token| Credentials {
            token,
            scheme: Scheme::Bearer,
            proof: None,
        });
    }
    let mut proofs = headers.get_all(DPOP).iter();
    let proof = proofs.next().map(HeaderValue::as_bytes);
    let several = proofs.next().is_some();
    let is_dpop = headers.get(header::AUTHORIZATION).is_some_and(|value| {
        let value = value.as_bytes();
        value.len() >= 4 && value[..4].eq_ignore_ascii_case(b"dpop") && value.get(4).is_none_or(|&b| b == b' ')
    });
    if !is_dpop {
        let token = bearer_token(headers, uri, allow_query)?;
        if proof.is_some() {
            return Err(Rejection::InvalidRequest("a DPoP proof with a bearer token"));
        }
        return Ok(Credentials { token, scheme: Scheme::Bearer, proof: None });
    }
    if headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() {
        return Err(Rejection::InvalidRequest("several Authorization headers"));
    }
    if allow_query && query_token(uri)?.is_some() {
        return Err(Rejection::InvalidRequest("token in both the header and the query"));
    }
    let token = single_token(&headers[header::AUTHORIZATION].as_bytes()[4..], "empty DPoP token")?;
    if several {
        return Err(Rejection::InvalidDpopProof(DpopError::SeveralProofs));
    }
    let proof = proof.ok_or(Rejection::InvalidDpopProof(DpopError::Missing))?;
    Ok(Credentials { token: Found::Token(token), scheme: Scheme::Dpop, proof: Some(proof) })
}

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8.1).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Where the token came from.
pub(crate) enum Found<'r> {
    Token(&'r str),
    /// Owned because the query form may need percent-decoding.
    QueryToken(String),
}

impl Found<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Found::Token(t) => t,
            Found::QueryToken(t) => t,
        }
    }
}

/// Extracts the one bearer token of a request.
///
/// - One `Authorization` header at most; several are `invalid_request` (RFC 6750 §2).
/// - The scheme is matched case-insensitively (RFC 9110 §11.1). Another scheme (say
///   `Basic`) is not a bearer credential: the answer is the bare challenge.
/// - The token is a single `b64token` (RFC 6750 §2.1): empty, or followed by more
///   credentials, is `invalid_request`.
/// - `access_token` in the query only when enabled, and never together with the header.
pub(crate) fn bearer_token<'r>(headers: &'r HeaderMap, uri: &Uri, allow_query: bool) -> Result<Found<'r>, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest("several Authorization headers"));
    }
    let query = if allow_query { query_token(uri)? } else { None };
    let Some(value) = header else {
        return query.map(Found::QueryToken).ok_or(Rejection::MissingCredentials);
    };
    if query.is_some() {
        return Err(Rejection::InvalidRequest("token in both the header and the query"));
    }
    // Work on bytes: the token is scanned once for separators (SIMD), and only the
    // token is checked for UTF-8; its base64url is checked by the validator.
    let value = value.as_bytes();
    let (scheme, rest) = match memchr::memchr(b' ', value) {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Rejection::MissingCredentials);
    }
    single_token(rest, "empty bearer token").map(Found::Token)
}

/// The one `token68` after the scheme (RFC 6750 §2.1, RFC 9449 §7.1).
fn single_token<'r>(rest: &'r [u8], empty: &'static str) -> Result<&'r str, Rejection> {
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return Err(Rejection::InvalidRequest(empty));
    }
    if memchr::memchr3(b' ', b',', b'\t', token).is_some() {
        return Err(Rejection::InvalidRequest("several credentials in one header"));
    }
    std::str::from_utf8(token).map_err(|_| Rejection::InvalidRequest("authorization header is not UTF-8"))
}

fn query_token(uri: &Uri) -> Result<Option<String>, Rejection> {
    let Some(query) = uri.query() else { return Ok(None) };
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "access_token" {
            if found.is_some() {
                return Err(Rejection::InvalidRequest("several access_token parameters"));
            }
            if value.is_empty() {
                return Err(Rejection::InvalidRequest("empty bearer token"));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(values: &[&str], uri: &str, allow_query: bool) -> Result<String, Rejection> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        bearer_token(&headers, &uri.parse().unwrap(), allow_query).map(|f| f.as_str().to_owned())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc"] {
            assert_eq!(extract(&[v], "/", false).unwrap(), "abc", "{v}");
        }
    }

    #[test]
    fn malformed_credentials_are_invalid_requests() {
        for v in ["Bearer", "Bearer ", "Bearer a b", "Bearer a, Bearer b", "Bearer a,b"] {
            assert!(matches!(extract(&[v], "/", false), Err(Rejection::InvalidRequest(_))), "{v}");
        }
        assert!(matches!(extract(&["Bearer a", "Bearer b"], "/", false), Err(Rejection::InvalidRequest(_))));
    }

    #[test]
    fn other_schemes_and_no_header_get_the_bare_challenge() {
        assert_eq!(extract(&[], "/", false), Err(Rejection::MissingCredentials));
        assert_eq!(extract(&["Basic dXNlcjpwYXNz"], "/", false), Err(Rejection::MissingCredentials));
        assert_eq!(extract(&["Bearerabc"], "/", false), Err(Rejection::MissingCredentials));
    }

    fn dpop(authorization: &[&str], proofs: &[&str], uri: &str) -> Result<(String, Scheme, Option<String>), Rejection> {
        let mut headers = HeaderMap::new();
        for v in authorization {
            headers.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        for p in proofs {
            headers.append(DPOP, p.parse().unwrap());
        }
        credentials(&headers, &uri.parse().unwrap(), true, true)
            .map(|c| (c.token.as_str().to_owned(), c.scheme, c.proof.map(|p| String::from_utf8(p.to_vec()).unwrap())))
    }

    #[test]
    fn the_dpop_scheme_needs_exactly_one_proof() {
        assert_eq!(dpop(&["DPoP tok"], &["proof"], "/").unwrap(), ("tok".into(), Scheme::Dpop, Some("proof".into())));
        assert_eq!(dpop(&["dpop  tok"], &["proof"], "/").unwrap().1, Scheme::Dpop);
        assert_eq!(dpop(&["DPoP tok"], &[], "/"), Err(Rejection::InvalidDpopProof(DpopError::Missing)));
        assert_eq!(dpop(&["DPoP tok"], &["a", "b"], "/"), Err(Rejection::InvalidDpopProof(DpopError::SeveralProofs)));
        for malformed in ["DPoP", "DPoP ", "DPoP a b", "DPoP a,b"] {
            assert!(matches!(dpop(&[malformed], &["p"], "/"), Err(Rejection::InvalidRequest(_))), "{malformed}");
        }
        assert!(matches!(dpop(&["DPoP a", "DPoP b"], &["p"], "/"), Err(Rejection::InvalidRequest(_))));
        assert!(matches!(dpop(&["DPoP a"], &["p"], "/?access_token=b"), Err(Rejection::InvalidRequest(_))));
    }

    #[test]
    fn a_proof_beside_a_bearer_token_is_refused() {
        assert!(matches!(dpop(&["Bearer tok"], &["proof"], "/"), Err(Rejection::InvalidRequest(_))));
        assert_eq!(dpop(&["Bearer tok"], &[], "/").unwrap(), ("tok".into(), Scheme::Bearer, None));
        assert_eq!(dpop(&[], &[], "/"), Err(Rejection::MissingCredentials));
        // Without DPoP enabled the scheme is unknown: the bare challenge.
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "DPoP tok".parse().unwrap());
        assert_eq!(
            credentials(&headers, &"/".parse().unwrap(), false, false).err(),
            Some(Rejection::MissingCredentials)
        );
    }

    #[test]
    fn query_token_is_opt_in_and_exclusive() {
        assert_eq!(extract(&[], "/x?access_token=abc", false), Err(Rejection::MissingCredentials));
        assert_eq!(extract(&[], "/x?a=1&access_token=a%2Eb", true).unwrap(), "a.b");
        assert!(matches!(extract(&["Bearer t"], "/x?access_token=abc", true), Err(Rejection::InvalidRequest(_))));
        assert!(matches!(extract(&[], "/x?access_token=a&access_token=b", true), Err(Rejection::InvalidRequest(_))));
    }
}
