//! URL comparison as RFC 3986 §6.2.2 and §6.2.3 define it, shared by the DPoP `htu`
//! check and the resource identifier (RFC 9728, RFC 8707), and the well-known location
//! of a resource's metadata.

use std::fmt::Write as _;

use url::Url;

use crate::error::BuildError;
use crate::idp::fetch;

/// Whether [`normalise`] keeps the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    /// Dropped, with the fragment: DPoP's `htu` (RFC 9449 §4.2).
    Drop,
    /// Kept, byte for byte: two resources that differ in their query are two resources.
    Keep,
}

/// `url` normalised for comparison, or `None` when it is not an absolute `http(s)` URL
/// a request could have been sent to.
///
/// - Scheme and host in lower case, the scheme's default port dropped, dot segments
///   removed, an empty path made `/` (the `url` crate's parser does these, §6.2.2.1,
///   §6.2.2.3, §6.2.3);
/// - percent-encodings of unreserved characters decoded and the others' hex digits
///   upper-cased (§6.2.2.2);
/// - the fragment dropped, and the query as `query` says.
pub(crate) fn normalise(url: &str, query: Query) -> Option<String> {
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
    if let (Query::Keep, Some(q)) = (query, url.query()) {
        out.push('?');
        normalise_percent(q, &mut out);
    }
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
        // The parser left only ASCII in the path and the query.
        out.push(bytes[i] as char);
        i += 1;
    }
}

fn hex(byte: &u8) -> Option<u8> {
    (*byte as char).to_digit(16).map(|d| d as u8)
}

/// A protected resource's identifier (RFC 9728 §1.2, RFC 8707 §2): an absolute URL,
/// https (or http on loopback, as every fetch allows), with no fragment and no user
/// information. Holds it as configured and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceId {
    configured: Box<str>,
    normalised: Box<str>,
}

impl ResourceId {
    /// Checks `resource`: [`BuildError::Url`] for one that fails the URL rule,
    /// [`BuildError::InvalidUrl`] for one with a fragment or user information.
    pub(crate) fn parse(resource: &str) -> Result<ResourceId, BuildError> {
        let url = fetch::check_url(resource)?;
        if url.fragment().is_some() || resource.contains('#') {
            return Err(BuildError::InvalidUrl);
        }
        let normalised = normalise(resource, Query::Keep).ok_or(BuildError::InvalidUrl)?;
        Ok(ResourceId { configured: resource.into(), normalised: normalised.into() })
    }

    /// As configured.
    pub(crate) fn as_str(&self) -> &str {
        &self.configured
    }

    /// Whether `other` names this resource once both are normalised: scheme and host
    /// case-insensitive, an empty path the same as `/`.
    pub(crate) fn matches(&self, other: &str) -> bool {
        *other == *self.configured || normalise(other, Query::Keep).is_some_and(|o| *o == *self.normalised)
    }

    /// Where the resource's metadata is (RFC 9728 §3.1): the well-known path inserted
    /// between the host and the resource's path, the query kept; for a resource without
    /// a path, `/.well-known/oauth-protected-resource` itself.
    pub(crate) fn metadata_url(&self) -> String {
        let Ok(url) = Url::parse(&self.normalised) else {
            // `parse` produced it from a URL that parsed.
            return String::new();
        };
        let mut out = url[..url::Position::BeforePath].to_owned();
        out.push_str(WELL_KNOWN);
        out.push_str(url.path().trim_end_matches('/'));
        if let Some(query) = url.query() {
            out.push('?');
            out.push_str(query);
        }
        out
    }

    /// The path of [`metadata_url`](Self::metadata_url), without the query.
    pub(crate) fn metadata_path(&self) -> String {
        let path = Url::parse(&self.normalised).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
        format!("{WELL_KNOWN}{path}")
    }
}

/// RFC 9728 §3: the well-known URI suffix of protected resource metadata.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

#[cfg(test)]
mod tests {
    use super::*;

    fn normalise(url: &str) -> Option<String> {
        super::normalise(url, Query::Drop)
    }

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
    fn resources_match_after_normalisation_only() {
        let mcp = ResourceId::parse("https://api.example.com/mcp").unwrap();
        for same in ["https://api.example.com/mcp", "HTTPS://API.EXAMPLE.COM/mcp", "https://api.example.com:443/mcp"] {
            assert!(mcp.matches(same), "{same}");
        }
        for other in [
            "https://api.example.com/mcp/",
            "https://api.example.com/MCP",
            "https://api.example.com/mcp?x=1",
            "http://api.example.com/mcp",
            "https://api.example.com",
            "api.example.com/mcp",
            "",
        ] {
            assert!(!mcp.matches(other), "{other}");
        }
        let root = ResourceId::parse("https://api.example.com").unwrap();
        assert!(root.matches("https://api.example.com/"));
        assert!(root.matches("https://Api.Example.com"));
        let root_slash = ResourceId::parse("https://api.example.com/").unwrap();
        assert!(root_slash.matches("https://api.example.com"));
        let query = ResourceId::parse("https://api.example.com/r?tenant=a").unwrap();
        assert!(query.matches("https://api.example.com/r?tenant=a"));
        assert!(!query.matches("https://api.example.com/r?tenant=b"));
        assert!(!query.matches("https://api.example.com/r"));
    }

    #[test]
    fn resources_are_absolute_secure_urls_without_fragments() {
        assert!(ResourceId::parse("http://127.0.0.1:8080/mcp").is_ok());
        assert!(ResourceId::parse("http://localhost/mcp").is_ok());
        assert!(matches!(ResourceId::parse("http://api.example.com/mcp"), Err(BuildError::Url(_))));
        assert!(matches!(ResourceId::parse("/mcp"), Err(BuildError::Url(_))));
        assert!(matches!(ResourceId::parse("https://api.example.com/mcp#x"), Err(BuildError::InvalidUrl)));
        assert!(matches!(ResourceId::parse("https://api.example.com/mcp#"), Err(BuildError::InvalidUrl)));
        assert!(matches!(ResourceId::parse("https://u:p@api.example.com/"), Err(BuildError::InvalidUrl)));
    }

    #[test]
    fn the_metadata_is_at_the_path_inserted_well_known_url() {
        let url = |r: &str| ResourceId::parse(r).unwrap().metadata_url();
        assert_eq!(url("https://api.example.com"), "https://api.example.com/.well-known/oauth-protected-resource");
        assert_eq!(url("https://api.example.com/"), "https://api.example.com/.well-known/oauth-protected-resource");
        assert_eq!(
            url("https://API.example.com:443/mcp"),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/a/mcp/"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/mcp"
        );
        assert_eq!(url("https://h/r?tenant=a"), "https://h/.well-known/oauth-protected-resource/r?tenant=a");
        assert_eq!(
            ResourceId::parse("https://h/mcp").unwrap().metadata_path(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(ResourceId::parse("https://h").unwrap().metadata_path(), "/.well-known/oauth-protected-resource");
    }
}
