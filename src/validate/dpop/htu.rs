//! The `htu` comparison (RFC 9449 §4.3 step 9): the request's URL without query and
//! fragment, both sides normalised as RFC 3986 §6.2.2 and §6.2.3 say.

use crate::uri::{self, Query};

/// `url` normalised for comparison (RFC 3986 §6), without query and fragment (RFC 9449
/// §4.2), or `None` when it is not an absolute `http(s)` URL a request could have been
/// sent to.
pub(crate) fn normalise(url: &str) -> Option<String> {
    uri::normalise(url, Query::Drop)
}

/// The URL a request was sent to, as the clients see this server: `base` (a public
/// URL, normalised, without a trailing `/`) followed by the request's path.
pub(crate) fn request_url(base: &str, path: &str) -> Option<String> {
    let path = if path.is_empty() { "/" } else { path };
    normalise(&format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_url_is_the_public_base_and_the_path() {
        assert_eq!(request_url("https://api.example.com", "/me").as_deref(), Some("https://api.example.com/me"));
        assert_eq!(request_url("https://gw.example.com/api", "/me").as_deref(), Some("https://gw.example.com/api/me"));
        assert_eq!(request_url("http://127.0.0.1:3000", "").as_deref(), Some("http://127.0.0.1:3000/"));
    }
}
