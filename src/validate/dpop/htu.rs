//! The `htu` comparison (RFC 9449 §4.3 step 9): the request's URL without query and
//! fragment, both sides normalised as RFC 3986 §6.2.2 and §6.2.3 say.

use std::fmt::Write as _;

use url::Url;

/// `url` normalised for comparison, or `None` when it is not an absolute `http(s)` URL
/// a request could have been sent to.
///
/// - Scheme and host in lower case, the scheme's default port dropped, dot segments
///   removed, an empty path made `/` (the `url` crate's parser does these, §6.2.2.1,
///   §6.2.2.3, §6.2.3);
/// - percent-encodings of unreserved characters decoded and the others' hex digits
///   upper-cased (§6.2.2.2);
/// - query and fragment dropped (RFC 9449 §4.2).
pub(crate) fn normalise(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return None;
    }
    // A request target has no user information (RFC 9110 §4.2.4).
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?;
    let mut out = String::with_capacity(url.as_str().len());
    out.push_str(url.scheme());
    out.push_str("://");
    out.push_str(host);
    if let Some(port) = url.port() {
        let _ = write!(out, ":{port}");
    }
    normalise_percent(url.path(), &mut out);
    Some(out)
}

/// RFC 3986 §6.2.2.2: `%41` is `A`, `%7e` is `~`, and `%2f` is `%2F`.
fn normalise_percent(path: &str, out: &mut String) {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex))
        {
            let byte = hi << 4 | lo;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        // The parser left only ASCII in the path.
        out.push(bytes[i] as char);
        i += 1;
    }
}

fn hex(byte: &u8) -> Option<u8> {
    (*byte as char).to_digit(16).map(|d| d as u8)
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
    fn equivalent_urls_normalise_alike() {
        let same = [
            "https://api.example.com/a/b",
            "HTTPS://API.Example.COM/a/b",
            "https://api.example.com:443/a/b",
            "https://api.example.com/a/./c/../b",
            "https://api.example.com/%61/b",
            "https://api.example.com/a/b?x=1#frag",
        ];
        for url in same {
            assert_eq!(normalise(url).as_deref(), Some("https://api.example.com/a/b"), "{url}");
        }
        assert_eq!(normalise("http://127.0.0.1:80").as_deref(), Some("http://127.0.0.1/"));
        assert_eq!(normalise("http://127.0.0.1:3000/x").as_deref(), Some("http://127.0.0.1:3000/x"));
        assert_eq!(normalise("https://h/a%2fb%7E").as_deref(), Some("https://h/a%2Fb~"));
    }

    #[test]
    fn different_urls_stay_different() {
        let base = normalise("https://api.example.com/a/b").unwrap();
        for other in [
            "http://api.example.com/a/b",
            "https://api.example.com:8443/a/b",
            "https://api.example.com/a/b/",
            "https://api.example.com/A/b",
            "https://api.example.com/a%2Fb",
            "https://evil.example.com/a/b",
        ] {
            assert_ne!(normalise(other).as_deref(), Some(base.as_str()), "{other}");
        }
    }

    #[test]
    fn what_no_request_targets_is_refused() {
        for url in ["ftp://h/x", "/relative", "https://user:pw@h/x", "data:text/plain,x", "not a url", ""] {
            assert_eq!(normalise(url), None, "{url}");
        }
    }

    #[test]
    fn the_request_url_is_the_public_base_and_the_path() {
        assert_eq!(request_url("https://api.example.com", "/me").as_deref(), Some("https://api.example.com/me"));
        assert_eq!(request_url("https://gw.example.com/api", "/me").as_deref(), Some("https://gw.example.com/api/me"));
        assert_eq!(request_url("http://127.0.0.1:3000", "").as_deref(), Some("http://127.0.0.1:3000/"));
    }
}
