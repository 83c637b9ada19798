//! Finding the bearer token in a request (RFC 6750 §2.1, and §2.3 when enabled).

use http::{HeaderMap, Uri, header};

use super::Rejection;

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
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return Err(Rejection::InvalidRequest("empty bearer token"));
    }
    if memchr::memchr3(b' ', b',', b'\t', token).is_some() {
        return Err(Rejection::InvalidRequest("several credentials in one header"));
    }
    let token =
        std::str::from_utf8(token).map_err(|_| Rejection::InvalidRequest("authorization header is not UTF-8"))?;
    Ok(Found::Token(token))
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

    #[test]
    fn query_token_is_opt_in_and_exclusive() {
        assert_eq!(extract(&[], "/x?access_token=abc", false), Err(Rejection::MissingCredentials));
        assert_eq!(extract(&[], "/x?a=1&access_token=a%2Eb", true).unwrap(), "a.b");
        assert!(matches!(extract(&["Bearer t"], "/x?access_token=abc", true), Err(Rejection::InvalidRequest(_))));
        assert!(matches!(extract(&[], "/x?access_token=a&access_token=b", true), Err(Rejection::InvalidRequest(_))));
    }
}
