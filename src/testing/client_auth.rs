//! Client authentication at the token and introspection endpoints: the client secret
//! in Basic (RFC 6749 §2.3.1) or in the form, a JWT assertion (RFC 7523 §2.2:
//! `private_key_jwt`, and `client_secret_jwt` from OpenID Connect Core 1.0 §9), or the
//! TLS client certificate (RFC 8705 §2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::assertion::{self, Expected, KEY_ALGORITHMS, SECRET_ALGORITHMS, Unverified};
use super::request::{OAuthError, Params};
use super::state::Shared;
#[cfg(feature = "mtls-rustls")]
use super::{subject_dn::SubjectDn, tls::PeerCertificates};
use crate::{Algorithm, Jwk, KeySet, Secret};

/// The `client_assertion_type` of a JWT (RFC 7523 §2.2).
const JWT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead a client assertion's `exp` may be: it is made for one request.
const MAX_ASSERTION_LIFETIME: i64 = 600;

/// The `token_endpoint_auth_methods_supported` (RFC 8414 §2), and the introspection
/// endpoint's.
pub(crate) fn methods(shared: &Shared) -> Vec<&'static str> {
    let mut methods = vec!["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"];
    if shared.serves_tls() {
        methods.extend(["tls_client_auth", "self_signed_tls_client_auth"]);
    }
    methods
}

/// The `token_endpoint_auth_signing_alg_values_supported` (RFC 8414 §2).
pub(crate) fn signing_algorithms() -> Vec<&'static str> {
    KEY_ALGORITHMS.iter().chain(&SECRET_ALGORITHMS).map(|alg| alg.as_str()).collect()
}

/// The client a request authenticated as, or `None` when it carries no client
/// credentials (a `client_id` alone, of a client not registered for mutual TLS, is
/// none). RFC 6749 §2.3: at most one method.
///
/// # Errors
///
/// `invalid_request` for several methods or malformed parameters; `invalid_client`
/// (401) for credentials that do not authenticate; with
/// [`basic_without_form_decoding`](super::TestIssuerBuilder::basic_without_form_decoding),
/// a bare 403 for Basic credentials that do not.
pub(crate) fn authenticate(shared: &Shared, parts: &Parts, params: &Params) -> Result<Option<String>, OAuthError> {
    let mut authorization = parts.headers.get_all(AUTHORIZATION).iter();
    let basic = match (authorization.next(), authorization.next()) {
        (None, _) => None,
        (Some(value), None) => Some(value),
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("more than one Authorization header")),
    };
    let posted_id = params.single("client_id")?;
    let posted_secret = params.single("client_secret")?;
    let assertion = match (params.single("client_assertion_type")?, params.single("client_assertion")?) {
        (None, None) => None,
        (Some(kind), Some(assertion)) => Some((kind, assertion)),
        _ => return Err(OAuthError::invalid_request("client_assertion and client_assertion_type go together")),
    };
    let methods = [basic.is_some(), posted_secret.is_some(), assertion.is_some()];
    if methods.into_iter().filter(|&used| used).count() > 1 {
        return Err(OAuthError::invalid_request("the client used more than one authentication method"));
    }
    if let Some(value) = basic {
        return basic_client(shared, value.as_bytes(), posted_id).map(Some);
    }
    if let Some(secret) = posted_secret {
        let client_id = posted_id.ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
        return check_secret(shared, client_id, secret.as_bytes()).map(Some);
    }
    if let Some((kind, assertion)) = assertion {
        return client_assertion(shared, parts, posted_id, kind, assertion).map(Some);
    }
    #[cfg(feature = "mtls-rustls")]
    if let Some(client_id) = posted_id {
        return tls_client(shared, parts, client_id);
    }
    Ok(None)
}

/// The client of an endpoint that requires client authentication.
pub(crate) fn required(client: Option<String>) -> Result<String, OAuthError> {
    client.ok_or_else(|| OAuthError::invalid_client("client authentication required"))
}

fn basic_client(shared: &Shared, value: &[u8], posted_id: Option<&str>) -> Result<String, OAuthError> {
    if shared.basic_without_form_decoding {
        // Like servers that compare what was sent, skipping RFC 6749 §2.3.1's
        // form-decoding, and refuse with a bare 403 when it does not match.
        let credentials = ClientCredentials::from_basic_raw(value).ok_or_else(OAuthError::bare_forbidden)?;
        if !shared.clients().authenticate(&credentials.client_id, credentials.secret.as_bytes()) {
            return Err(OAuthError::bare_forbidden());
        }
        if posted_id.is_some_and(|id| id != credentials.client_id) {
            return Err(OAuthError::invalid_request("client_id does not match the Authorization header"));
        }
        return Ok(credentials.client_id);
    }
    let credentials = ClientCredentials::from_basic(value)
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    if posted_id.is_some_and(|id| id != credentials.client_id) {
        return Err(OAuthError::invalid_request("client_id does not match the Authorization header"));
    }
    check_secret(shared, &credentials.client_id, credentials.secret.as_bytes())
}

fn check_secret(shared: &Shared, client_id: &str, secret: &[u8]) -> Result<String, OAuthError> {
    if !shared.clients().authenticate(client_id, secret) {
        return Err(OAuthError::invalid_client("unknown client or wrong secret"));
    }
    Ok(client_id.to_owned())
}

/// RFC 7523 §2.2 and §3. An HMAC-signed assertion is `client_secret_jwt`, verified with
/// the client secret; any other is `private_key_jwt`, verified with the client's keys.
fn client_assertion(
    shared: &Shared,
    parts: &Parts,
    posted_id: Option<&str>,
    kind: &str,
    assertion: &str,
) -> Result<String, OAuthError> {
    if kind != JWT_ASSERTION_TYPE {
        return Err(OAuthError::invalid_client("unsupported client_assertion_type"));
    }
    let unverified =
        Unverified::read(assertion).ok_or_else(|| OAuthError::invalid_client("client_assertion is not a JWT"))?;
    // RFC 7523 §3: `sub` is the client id (and so must `iss` be, which `verify` checks).
    let client_id = unverified.sub.ok_or_else(|| OAuthError::invalid_client("the assertion has no sub"))?;
    // RFC 7521 §4.2: a `client_id` in the form names the same client.
    if posted_id.is_some_and(|id| id != client_id) {
        return Err(OAuthError::invalid_client("client_id does not match the client_assertion"));
    }
    let (keys, algorithms): (KeySet, &[Algorithm]) = match unverified.alg {
        Some(alg) if alg.is_symmetric() => {
            let secret = shared.clients().secret(&client_id).map(Secret::from);
            let secret = secret.ok_or_else(|| OAuthError::invalid_client("unknown client or no client secret"))?;
            let key = Jwk::hmac(alg, &secret, unverified.kid.as_deref())
                .map_err(|_| OAuthError::invalid_client("the client secret is too short for the assertion's alg"))?;
            (KeySet::from_keys([key]), &SECRET_ALGORITHMS)
        }
        _ => {
            let keys = shared.clients().keys(&client_id).cloned();
            let keys = keys.ok_or_else(|| OAuthError::invalid_client("unknown client or no registered keys"))?;
            (keys, &KEY_ALGORITHMS)
        }
    };
    // RFC 7523 §3: the authorization server, which its token endpoint identifies too;
    // at the introspection endpoint, that endpoint as well.
    let audiences = [shared.issuer.clone(), shared.token_endpoint(), format!("{}{}", shared.origin, parts.uri.path())];
    let expected = Expected {
        issuer: &client_id,
        subject: Some(&client_id),
        audiences: &audiences,
        max_lifetime: Some(MAX_ASSERTION_LIFETIME),
        require_jti: true,
        replay_domain: "client_assertion",
    };
    assertion::verify(assertion, &keys, algorithms, &expected, &shared.assertion_replay)
        .map_err(OAuthError::invalid_client)?;
    Ok(client_id)
}

/// RFC 8705 §2: a client registered for mutual TLS sends its `client_id`, and the
/// certificate of its connection authenticates it. `None` for a client not registered
/// so.
#[cfg(feature = "mtls-rustls")]
fn tls_client(shared: &Shared, parts: &Parts, client_id: &str) -> Result<Option<String>, OAuthError> {
    let Some(registration) = shared.clients().tls(client_id) else {
        return Ok(None);
    };
    let peer = parts
        .extensions
        .get::<PeerCertificates>()
        .ok_or_else(|| OAuthError::invalid_client("a client certificate is required"))?;
    // RFC 8705 §2.2: the registered certificate itself, with no chain to check.
    if registration.self_signed.is_some_and(|thumbprint| thumbprint == *peer.leaf.thumbprint()) {
        return Ok(Some(client_id.to_owned()));
    }
    let Some(subject) = registration.subject else {
        return Err(OAuthError::invalid_client("the client certificate is not the registered one"));
    };
    // RFC 8705 §2.1: a certificate of the trusted CA, with the registered subject.
    if !shared.tls.as_ref().is_some_and(|tls| tls.issued_by_client_ca(peer)) {
        return Err(OAuthError::invalid_client("the client certificate is not issued by the client CA"));
    }
    if SubjectDn::of_certificate(peer.leaf.der()).as_ref() != Some(&subject) {
        return Err(OAuthError::invalid_client("the client certificate's subject does not match"));
    }
    Ok(Some(client_id.to_owned()))
}

/// A client id and secret as the client presented them.
#[derive(PartialEq, Eq)]
pub(crate) struct ClientCredentials {
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client_id).field("secret", &"***").finish()
    }
}

impl ClientCredentials {
    /// Parses an `Authorization: Basic` value. `None` when the scheme is not Basic or
    /// the credentials are malformed.
    ///
    /// RFC 6749 §2.3.1: the id and secret are form-urlencoded (Appendix B) before
    /// they are joined with `:` and base64-encoded (RFC 7617 §2), so the split is at
    /// the first `:` and each half is then decoded. A secret that contains `:` or
    /// `%` only round-trips when the client encodes it, which is the point of the
    /// rule.
    pub(crate) fn from_basic(value: &[u8]) -> Option<ClientCredentials> {
        let decoded = decode_basic(value)?;
        let (id, secret) = decoded.split_once(':')?;
        Some(ClientCredentials { client_id: form_decode(id)?, secret: form_decode(secret)? })
    }

    /// Parses an `Authorization: Basic` value without RFC 6749 §2.3.1's form-decoding:
    /// the id and secret are the bytes before and after the first `:`, as sent.
    pub(crate) fn from_basic_raw(value: &[u8]) -> Option<ClientCredentials> {
        let decoded = decode_basic(value)?;
        let (id, secret) = decoded.split_once(':')?;
        Some(ClientCredentials { client_id: id.to_owned(), secret: secret.to_owned() })
    }
}

/// The user-pass of a Basic `Authorization` value (RFC 7617 §2), which must be UTF-8.
fn decode_basic(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    // RFC 9110 §11.1: the scheme name is case-insensitive.
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim_start_matches(' ')).ok()?;
    String::from_utf8(decoded).ok()
}

/// Strict `application/x-www-form-urlencoded` decoding of one value: `+` is a
/// space, `%XX` a byte; a malformed escape or invalid UTF-8 is an error rather than
/// being passed through, so a client that skipped the encoding is caught.
fn form_decode(encoded: &str) -> Option<String> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.bytes();
    while let Some(byte) = bytes.next() {
        decoded.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = hex_digit(bytes.next()?)?;
                let low = hex_digit(bytes.next()?)?;
                (high << 4) | low
            }
            other => other,
        });
    }
    String::from_utf8(decoded).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(user_pass)).into_bytes()
    }

    fn parsed(value: &[u8]) -> Option<(String, String)> {
        ClientCredentials::from_basic(value).map(|c| (c.client_id, c.secret))
    }

    #[test]
    fn id_and_secret_are_split_at_the_first_colon_then_form_decoded() {
        assert_eq!(
            parsed(&basic("my%3Aclient:p%40ss%3Aw%2Brd%25%2F+%26%3D")),
            Some(("my:client".into(), "p@ss:w+rd%/ &=".into()))
        );
    }

    #[test]
    fn an_unencoded_colon_in_the_secret_stays_in_the_secret() {
        assert_eq!(parsed(&basic("client:a:b")), Some(("client".into(), "a:b".into())));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let value = format!("bAsIc {}", STANDARD.encode("c:s"));
        assert_eq!(parsed(value.as_bytes()), Some(("c".into(), "s".into())));
    }

    #[test]
    fn malformed_credentials_are_rejected() {
        for value in [
            b"Bearer abc".to_vec(),
            b"Basic".to_vec(),
            b"Basic !!!".to_vec(),
            basic("no-colon"),
            basic("client:bad%zzescape"),
            basic("client:truncated%4"),
            basic("client:%FF"),
        ] {
            assert_eq!(parsed(&value), None, "{}", String::from_utf8_lossy(&value));
        }
    }

    #[test]
    fn raw_credentials_are_taken_as_sent() {
        let raw = |value: &[u8]| ClientCredentials::from_basic_raw(value).map(|c| (c.client_id, c.secret));
        assert_eq!(raw(&basic("my%3Aclient:p%40ss+w")), Some(("my%3Aclient".into(), "p%40ss+w".into())));
        assert_eq!(raw(&basic("client:a:b")), Some(("client".into(), "a:b".into())));
        assert_eq!(raw(&basic("no-colon")), None);
        assert_eq!(raw(b"Basic !!!"), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let credentials = ClientCredentials::from_basic(&basic("c:hunter2"));
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
