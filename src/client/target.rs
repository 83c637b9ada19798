//! Where a token may go: the request's destination, and the rule that decides.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};

/// The destination of an outbound request, as the attach predicate sees it: the same
/// view for the Tower layer (`http::Request`) and the reqwest middleware.
///
/// ```
/// use tower_oauth::client::{ClientCredentialsLayer, RequestTarget};
/// # fn layer(cache: tower_oauth::client::TokenCache) -> ClientCredentialsLayer {
/// // Only to our API, and only over https.
/// ClientCredentialsLayer::new(cache)
///     .attach_if(|target: &RequestTarget<'_>| target.scheme() == Some("https") && target.host() == Some("api.example.com"))
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct RequestTarget<'a> {
    method: &'a Method,
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
    path: &'a str,
    headers: &'a HeaderMap,
}

impl<'a> RequestTarget<'a> {
    pub(crate) fn from_http<B>(request: &'a http::Request<B>) -> Self {
        let uri = request.uri();
        RequestTarget {
            method: request.method(),
            scheme: uri.scheme_str(),
            host: uri.host(),
            port: uri.port_u16(),
            path: uri.path(),
            headers: request.headers(),
        }
    }

    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn from_reqwest(request: &'a reqwest::Request) -> Self {
        let url = request.url();
        RequestTarget {
            method: request.method(),
            scheme: Some(url.scheme()),
            host: url.host_str(),
            port: url.port(),
            path: url.path(),
            headers: request.headers(),
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.method
    }

    /// The scheme (`https`, `http`), or `None` for a request with only a path (a tonic
    /// client without an origin, for instance).
    pub fn scheme(&self) -> Option<&str> {
        self.scheme
    }

    /// The host, as written in the URI (an IPv6 address in brackets), or `None`.
    pub fn host(&self) -> Option<&str> {
        self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The default rule: https anywhere, plain http only to loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`), nothing without a scheme and host.
    ///
    /// This is `fetch`'s rule for the crate's own requests, read from the request as it
    /// is rather than from a re-parsed URL (which would cost more than the rest of the
    /// layer), so unusual spellings that a URL parser would normalise to a loopback
    /// address (`127.1`, `0x7f.0.0.1`) count as not loopback: the rule only errs towards
    /// not attaching.
    pub fn is_secure(&self) -> bool {
        self.scheme.is_some_and(|scheme| crate::idp::fetch::is_allowed_origin(scheme, self.host))
    }
}

impl fmt::Debug for RequestTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTarget")
            .field("method", self.method)
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

type Custom = dyn Fn(&RequestTarget<'_>) -> bool + Send + Sync;

/// Which requests get a token.
#[derive(Clone, Default)]
pub(crate) enum Predicate {
    /// [`RequestTarget::is_secure`].
    #[default]
    Secure,
    Custom(Arc<Custom>),
}

impl Predicate {
    pub(crate) fn custom(f: impl Fn(&RequestTarget<'_>) -> bool + Send + Sync + 'static) -> Self {
        Predicate::Custom(Arc::new(f))
    }

    /// Whether to attach a token: never over an existing `Authorization` header, and
    /// otherwise as the predicate says.
    #[inline]
    pub(crate) fn allows(&self, target: &RequestTarget<'_>) -> bool {
        if target.headers.contains_key(http::header::AUTHORIZATION) {
            return false;
        }
        match self {
            Predicate::Secure => target.is_secure(),
            Predicate::Custom(f) => f(target),
        }
    }
}

impl fmt::Debug for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Secure => f.write_str("https or loopback"),
            Predicate::Custom(_) => f.write_str("custom"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secure(uri: &str) -> bool {
        let request = http::Request::get(uri).body(()).unwrap();
        RequestTarget::from_http(&request).is_secure()
    }

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://api.example/x",
            "HTTPS://api.example",
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://localhost/",
        ] {
            assert!(secure(ok), "{ok}");
        }
        for bad in
            ["http://api.example/", "http://10.0.0.1/", "/relative", "http://localhost.evil/", "ftp://127.0.0.1/"]
        {
            assert!(!secure(bad), "{bad}");
        }
    }

    #[test]
    fn it_agrees_with_the_fetch_rule_where_both_parse() {
        for uri in [
            "https://idp.example",
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://localhost/",
            "http://LOCALHOST/",
            "http://127.9.9.9/",
            "http://idp.example",
            "http://10.0.0.1/",
            "http://[::2]/",
            "http://localhost.evil/",
        ] {
            let url = url::Url::parse(uri).unwrap();
            assert_eq!(secure(uri), crate::idp::fetch::is_allowed(&url), "{uri}");
        }
    }

    #[test]
    fn an_existing_authorization_header_is_never_overwritten() {
        let request = http::Request::get("https://api.example/").header("authorization", "Basic x").body(()).unwrap();
        assert!(!Predicate::Secure.allows(&RequestTarget::from_http(&request)));
        assert!(!Predicate::custom(|_| true).allows(&RequestTarget::from_http(&request)));
    }
}
