//! Bounded HTTP exchanges: GETs for metadata and key sets, and credentialed form POSTs
//! for token and introspection endpoints. A timeout over the whole exchange, a body-size
//! cap, and https-only except on loopback, redirects included.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use url::Url;

use crate::error::{BuildError, FetchError};

/// Limits applied to every fetch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

/// The default time limit of one exchange with the authorization server (discovery and
/// key sets included): every builder's `timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default cap on a metadata document or a JWK Set.
pub(crate) const DEFAULT_DOCUMENT_MAX_BODY_SIZE: usize = 1024 * 1024;
/// The default cap on the body of an endpoint's answer: a token response, an
/// introspection or a userinfo answer.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024;
/// The default token size limit: 16 KiB. No access token is this long; the validator
/// refuses a longer one, and introspection never sends one (the request body stays
/// bounded).
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 16 * 1024;
const MAX_REDIRECTS: usize = 5;

/// A successful fetch.
struct Fetched {
    body: Bytes,
    /// `Cache-Control: max-age`, when the server sent one.
    max_age: Option<Duration>,
    /// The version of the document, to ask next time whether it changed.
    version: Version,
}

/// A document's version as its server named it (RFC 9110 §8.8): `ETag` and
/// `Last-Modified`, sent back as `If-None-Match` and `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Version {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Version {
    fn of(headers: &http::HeaderMap) -> Version {
        Version {
            etag: headers.get(http::header::ETAG).cloned(),
            last_modified: headers.get(http::header::LAST_MODIFIED).cloned(),
        }
    }

    /// Whether the server named a version at all.
    fn is_known(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

/// A conditional fetch: the document, or word that the version asked about is current.
enum Conditional {
    Modified(Fetched),
    /// `304 Not Modified`, with the `max-age` the server sent along.
    NotModified {
        max_age: Option<Duration>,
    },
}

/// Whether `url` may be fetched: https anywhere, http only to a loopback host.
pub(crate) fn is_allowed(url: &Url) -> bool {
    is_allowed_origin(url.scheme(), url.host_str())
}

/// The same rule on a scheme and host as they appear in a URI (an IPv6 host may keep
/// its brackets): shared by every fetch and by the outbound token predicate.
pub(crate) fn is_allowed_origin(scheme: &str, host: Option<&str>) -> bool {
    let Some(host) = host.filter(|h| !h.is_empty()) else { return false };
    if scheme.eq_ignore_ascii_case("https") {
        return true;
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a builder was given: an endpoint's URL, or the issuer whose metadata names it.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Url(String),
    Issuer(String),
}

/// A [`Target`] that passed the URL rule.
pub(crate) enum Checked {
    Url(Url),
    /// As configured: discovery checks that the metadata names exactly this issuer.
    Issuer(String),
}

impl Target {
    /// The URL or issuer as configured, for `Debug`.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Target::Url(url) | Target::Issuer(url) => url,
        }
    }

    /// Applies the URL rule (https, or http on loopback) to the URL or the issuer.
    pub(crate) fn check(self) -> Result<Checked, BuildError> {
        match self {
            Target::Url(url) => Ok(Checked::Url(check_url(&url)?)),
            Target::Issuer(issuer) if issuer.trim().is_empty() => Err(BuildError::MissingIssuer),
            Target::Issuer(issuer) => {
                check_url(&issuer)?;
                Ok(Checked::Issuer(issuer))
            }
        }
    }
}

/// The client given, or a default one for credentialed requests, which follows no
/// redirect: a redirected request would carry the credentials and the token elsewhere.
pub(crate) fn client_or_default(client: Option<reqwest::Client>) -> Result<reqwest::Client, BuildError> {
    match client {
        Some(client) => Ok(client),
        None => reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(BuildError::HttpClient),
    }
}

/// A URL a builder was given, under the URL rule: [`BuildError::Url`] when it fails.
pub(crate) fn check_url(url: &str) -> Result<Url, BuildError> {
    Ok(parse_url(url)?)
}

pub(crate) fn parse_url(s: &str) -> Result<Url, FetchError> {
    let url = Url::parse(s).map_err(|_| FetchError::InvalidUrl)?;
    if is_allowed(&url) { Ok(url) } else { Err(FetchError::InsecureUrl) }
}

/// The default client: at most five redirects, never from https down to http (not even
/// to loopback: an https host must not steer us to a local service), and never to plain
/// http off loopback. Time limits are set per fetch, not here, so a configured timeout
/// above the default is honoured.
pub(crate) fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    default_client_builder().build()
}

/// The default client's settings, for a client that adds its own (a TLS identity).
pub(crate) fn default_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.url().scheme() == "http" && attempt.previous().iter().any(|previous| previous.scheme() == "https");
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if downgrade || !is_allowed(attempt.url()) {
            // SSRF guard: a redirect must not lead to plain http off loopback, nor
            // from https down to http.
            attempt.error("redirect to an insecure url")
        } else {
            attempt.follow()
        }
    }))
}

/// GETs of JSON documents that remember what they read: the value parsed from the last
/// document of a URL, with that document's version. The next GET of the same URL asks
/// whether it changed (`If-None-Match`, `If-Modified-Since`), and a `304` gives the value
/// again. Discovery and the key store fetch this way.
#[derive(Debug)]
pub(crate) struct Remembered<T> {
    last: Option<(Url, Version, T)>,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Remembered { last: None }
    }
}

/// A document read by [`Remembered::get`]: its value, its `max-age`, and whether the
/// server said it had not changed.
pub(crate) struct Read<T> {
    pub(crate) value: T,
    pub(crate) max_age: Option<Duration>,
    pub(crate) not_modified: bool,
}

impl<T: Clone> Remembered<T> {
    /// The version and value kept for `url`, if any.
    fn kept(&self, url: &Url) -> Option<(&Version, &T)> {
        self.last.as_ref().filter(|(from, _, _)| from == url).map(|(_, version, value)| (version, value))
    }

    /// GETs `url` within `limits`, conditionally when a value read from it is kept, and
    /// parses a new document with `parse`. A value is kept only when its document named a
    /// version; a failure keeps what was kept.
    pub(crate) async fn get(
        &mut self,
        client: &reqwest::Client,
        url: &Url,
        limits: Limits,
        parse: impl FnOnce(&[u8]) -> Result<T, FetchError>,
    ) -> Result<Read<T>, FetchError> {
        let version = self.kept(url).map(|(version, _)| version.clone()).unwrap_or_default();
        match get_if_modified(client, url, limits, &version).await? {
            Conditional::NotModified { max_age } => {
                // Only asked with a version, so only about a value kept for this URL.
                let (_, value) = self.kept(url).ok_or(FetchError::Status(http::StatusCode::NOT_MODIFIED))?;
                Ok(Read { value: value.clone(), max_age, not_modified: true })
            }
            Conditional::Modified(fetched) => {
                let value = parse(&fetched.body)?;
                self.last = fetched.version.is_known().then(|| (url.clone(), fetched.version, value.clone()));
                Ok(Read { value, max_age: fetched.max_age, not_modified: false })
            }
        }
    }
}

/// GETs `url` as JSON within `limits`, unless the server says that `version` (when
/// known) is still current. A `304` to a request that named no version is
/// [`FetchError::Status`].
async fn get_if_modified(
    client: &reqwest::Client,
    url: &Url,
    limits: Limits,
    version: &Version,
) -> Result<Conditional, FetchError> {
    let fetch = get_unbounded_in_time(client, url, limits.max_body, limits.timeout, version);
    match tokio::time::timeout(limits.timeout, fetch).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn get_unbounded_in_time(
    client: &reqwest::Client,
    url: &Url,
    max_body: usize,
    timeout: Duration,
    version: &Version,
) -> Result<Conditional, FetchError> {
    let mut request = client.get(url.clone()).timeout(timeout).header(http::header::ACCEPT, "application/json");
    if let Some(etag) = &version.etag {
        request = request.header(http::header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(last_modified) = &version.last_modified {
        request = request.header(http::header::IF_MODIFIED_SINCE, last_modified.clone());
    }
    let mut response = request.send().await.map_err(request_error)?;
    // An injected client may follow redirects on its own terms; check where we landed.
    if !is_allowed(response.url()) {
        return Err(FetchError::InsecureUrl);
    }
    let status = response.status();
    if status == http::StatusCode::TOO_MANY_REQUESTS || status == http::StatusCode::SERVICE_UNAVAILABLE {
        return Err(FetchError::RateLimited { retry_after: retry_after(response.headers()) });
    }
    let max_age = max_age(response.headers());
    if status == http::StatusCode::NOT_MODIFIED && version.is_known() {
        return Ok(Conditional::NotModified { max_age });
    }
    if !status.is_success() {
        return Err(FetchError::Status(status));
    }
    let version = Version::of(response.headers());
    let body = read_capped(&mut response, max_body).await?;
    Ok(Conditional::Modified(Fetched { body, max_age, version }))
}

/// The answer to a credentialed request: its status, its `Retry-After`, its
/// `Content-Type`, and its body (or why the body could not be read, which matters only
/// for some statuses).
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) content_type: Option<HeaderValue>,
    /// A `DPoP-Nonce` header (RFC 9449 §8): the nonce the server wants in proofs.
    pub(crate) dpop_nonce: Option<HeaderValue>,
    pub(crate) body: Result<Bytes, FetchError>,
}

/// POSTs `form` as `application/x-www-form-urlencoded` with `Accept: application/json`
/// and, when given, an `Authorization` header, within `limits` (the timeout covers the
/// whole exchange, body included).
///
/// Meant for credentialed requests: the client should not follow redirects (a
/// redirected POST would carry the credentials elsewhere), and a response from an
/// insecure URL is refused all the same.
pub(crate) async fn post_form(
    client: &reqwest::Client,
    url: &Url,
    authorization: Option<&HeaderValue>,
    form: Vec<u8>,
    limits: Limits,
) -> Result<Reply, FetchError> {
    post_form_with_proof(client, url, authorization, None, form, limits).await
}

/// [`post_form`] with a DPoP proof (RFC 9449 §5) in a `DPoP` header.
pub(crate) async fn post_form_with_proof(
    client: &reqwest::Client,
    url: &Url,
    authorization: Option<&HeaderValue>,
    proof: Option<&str>,
    form: Vec<u8>,
    limits: Limits,
) -> Result<Reply, FetchError> {
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))
        .body(form);
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    exchange(request, authorization, limits).await
}

/// GETs `url` with an `Authorization` header (a bearer token, for userinfo), within
/// `limits`, under the same rules as [`post_form`].
pub(crate) async fn get_authorized(
    client: &reqwest::Client,
    url: &Url,
    authorization: &HeaderValue,
    limits: Limits,
) -> Result<Reply, FetchError> {
    exchange(client.get(url.clone()), Some(authorization), limits).await
}

async fn exchange(
    request: reqwest::RequestBuilder,
    authorization: Option<&HeaderValue>,
    limits: Limits,
) -> Result<Reply, FetchError> {
    let exchange = async {
        let mut request = request.timeout(limits.timeout).header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut response = request.send().await.map_err(request_error)?;
        // An injected client may follow redirects on its own terms; check where we landed.
        if !is_allowed(response.url()) {
            return Err(FetchError::InsecureUrl);
        }
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let dpop_nonce = response.headers().get("dpop-nonce").cloned();
        let body = read_capped(&mut response, limits.max_body).await;
        Ok(Reply { status, retry_after, content_type, dpop_nonce, body })
    };
    match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

fn request_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() { FetchError::Timeout } else { FetchError::Request(error.into()) }
}

async fn read_capped(response: &mut reqwest::Response, max_body: usize) -> Result<Bytes, FetchError> {
    if response.content_length().is_some_and(|len| len > max_body as u64) {
        return Err(FetchError::BodyTooLarge { limit: max_body });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > max_body {
            return Err(FetchError::BodyTooLarge { limit: max_body });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `application/x-www-form-urlencoded` pairs (RFC 6749 Appendix B), values as bytes (a
/// secret need not be UTF-8). The body may hold secrets; it lives only as long as the
/// request.
#[derive(Default)]
pub(crate) struct Form(Vec<u8>);

impl Form {
    pub(crate) fn pair(&mut self, name: &str, value: &[u8]) {
        if !self.0.is_empty() {
            self.0.push(b'&');
        }
        self.0.extend(url::form_urlencoded::byte_serialize(name.as_bytes()).flat_map(str::bytes));
        self.0.push(b'=');
        self.0.extend(url::form_urlencoded::byte_serialize(value).flat_map(str::bytes));
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The delay after `failures` failures in a row: `initial` doubling up to `max`, with
/// ±20 % jitter so a fleet does not retry in step, and never sooner than the server's
/// `Retry-After` (itself capped at `retry_after_cap`).
pub(crate) fn backoff(
    failures: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    retry_after_cap: Duration,
) -> Duration {
    let doubled = initial.saturating_mul(1 << failures.saturating_sub(1).min(20));
    let jittered = doubled.min(max).mul_f64(0.8 + fastrand::f64() * 0.4);
    retry_after.map_or(jittered, |ra| jittered.max(ra.min(retry_after_cap)))
}

/// `Cache-Control: max-age=N` (RFC 9111 §5.2.2.1); `no-store`/`no-cache` read as 0.
pub(crate) fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            if name.eq_ignore_ascii_case("max-age") {
                if let Ok(secs) = arg.trim_matches('"').parse::<u64>() {
                    found = Some(Duration::from_secs(secs));
                }
            } else if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
        }
    }
    found
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_allowed() {
        for ok in [
            "https://idp.example",
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://localhost/",
            "http://127.9.9.9/",
        ] {
            assert!(parse_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "http://localhost.evil/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_and_retry_after_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, "public, Max-Age=120".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
        h.insert(http::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(http::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
