//! What the token and introspection endpoints share: reading a form-encoded POST and
//! the error answer of RFC 6749 §5.2.

use std::borrow::Cow;

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::json;

use super::grants::GrantError;
use super::response::{Body, empty, json};

/// The largest request body the endpoint accepts.
const BODY_LIMIT: usize = 64 * 1024;

/// How much of an oversized body is read and discarded before answering 413: the
/// client gets the answer instead of a connection reset by unread data.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The head and form parameters of a POST; the body must be form-encoded (RFC 6749
/// §3.2, Appendix B; RFC 7662 §2.1).
pub(crate) async fn read_form(request: Request<Incoming>) -> Result<(Parts, Params), OAuthError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body).await?;
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::invalid_request("content type must be application/x-www-form-urlencoded"));
    }
    Ok((parts, Params::parse(&body)))
}

async fn read_body(mut body: Incoming) -> Result<Vec<u8>, OAuthError> {
    let mut buffer = Vec::new();
    let mut seen = 0_usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= BODY_LIMIT {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > BODY_LIMIT {
        return Err(OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is larger than 64 KiB",
        ));
    }
    Ok(buffer)
}

/// The form parameters of a token request.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(body: &[u8]) -> Params {
        Params(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// A parameter that may appear at most once; an empty value counts as absent
    /// (both RFC 6749 §3.2).
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(OAuthError::invalid_request(format!("parameter {name} is repeated"))),
        }
    }

    /// Every non-empty value of a parameter that may repeat, like RFC 8707 `resource`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, value)| key == name && !value.is_empty()).map(|(_, value)| value.as_str()).collect()
    }

    /// The RFC 8707 `resource` parameters, each an absolute URI without a fragment
    /// (§2), else `invalid_target`.
    pub(crate) fn resources(&self) -> Result<Vec<&str>, OAuthError> {
        let resources = self.all("resource");
        if resources.iter().any(|resource| url::Url::parse(resource).map_or(true, |url| url.fragment().is_some())) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "resource must be an absolute URI without a fragment",
            ));
        }
        Ok(resources)
    }

    /// The `scope` parameter, checked against the grammar of RFC 6749 §3.3:
    /// scope-tokens of `%x21 / %x23-5B / %x5D-7E` separated by single spaces.
    pub(crate) fn scope(&self) -> Result<Option<&str>, OAuthError> {
        let scope = self.single("scope")?;
        let well_formed = |scope: &str| {
            scope
                .split(' ')
                .all(|token| !token.is_empty() && token.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)))
        };
        match scope {
            Some(scope) if !well_formed(scope) => {
                Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", "scope is malformed"))
            }
            _ => Ok(scope),
        }
    }
}

/// An error response of RFC 6749 §5.2, or a bare status for servers that send one.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    /// The `error` code; `None` for a response without a body.
    code: Option<&'static str>,
    description: Cow<'static, str>,
}

impl OAuthError {
    pub(crate) fn new(status: StatusCode, code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError { status, code: Some(code), description: description.into() }
    }

    /// A `403` with no body and no challenge, as some servers refuse Basic credentials.
    pub(crate) fn bare_forbidden() -> Self {
        OAuthError { status: StatusCode::FORBIDDEN, code: None, description: Cow::Borrowed("") }
    }

    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// RFC 6749 §5.2: client authentication failed.
    pub(crate) fn invalid_client(description: &'static str) -> Self {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// RFC 6749 §5.2: the grant (a code, a refresh token, an assertion, a subject token)
    /// is not good.
    pub(crate) fn invalid_grant(description: &'static str) -> Self {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let Some(code) = self.code else {
            return empty(self.status);
        };
        let mut response = json(self.status, &json!({"error": code, "error_description": self.description}));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 carries the authentication scheme to use.
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"test-issuer\""));
        }
        response
    }
}

impl From<GrantError> for OAuthError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::InvalidGrant(description) => OAuthError::invalid_grant(description),
            GrantError::InvalidScope(description) => {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
            }
        }
    }
}
