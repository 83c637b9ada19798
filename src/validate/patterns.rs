//! Issuer patterns: a template with one tenant segment, or a predicate, that makes
//! every matching issuer trusted.

use std::fmt;
use std::sync::Arc;

use url::Url;

use super::header::TypPolicy;
use super::policy::Overrides;
use crate::Algorithm;
use crate::error::{BuildError, FetchError};
use crate::idp::fetch;

/// The longest tenant segment a template accepts. Real tenant ids (GUIDs, realm names,
/// domain names) are far shorter.
const MAX_TENANT_LEN: usize = 128;

/// The longest issuer a predicate is even asked about.
const MAX_PATTERN_ISSUER_LEN: usize = 1024;

/// Trusts every issuer that matches: a template with one tenant segment, or a predicate.
///
/// Issuers that match are discovered on their first token, each with its own key store,
/// up to [`max_discovered_issuers`](super::ValidatorBuilder::max_discovered_issuers).
///
/// A template is strict: scheme, host, port and every other path segment are fixed,
/// and the tenant is one whole path segment of RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`, at most 128), never `.` or `..`. So
/// `https://login.example.com/{tenant}/v2.0` matches
/// `https://login.example.com/contoso/v2.0` but not `https://login.example.com.evil/x/v2.0`,
/// `https://login.example.com/a/b/v2.0` or `https://login.example.com/a%2Fb/v2.0`.
///
/// ```
/// use tower_oauth::Validator;
/// use tower_oauth::validate::IssuerPattern;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tenants = IssuerPattern::template("https://login.example.com/{tenant}/v2.0")?;
/// assert!(tenants.matches("https://login.example.com/contoso/v2.0"));
/// assert!(!tenants.matches("https://login.example.com/../v2.0"));
///
/// let validator = Validator::builder().issuer_pattern(tenants).audience("api").build()?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct IssuerPattern {
    matcher: Matcher,
    pub(super) overrides: Overrides,
}

#[derive(Clone)]
enum Matcher {
    Template { template: Box<str>, prefix: Box<str>, suffix: Box<str> },
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl IssuerPattern {
    /// A template such as `https://login.example.com/{tenant}/v2.0`: exactly one `{…}`
    /// placeholder, standing for a whole path segment.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidUrl`] when the template has no placeholder or several, the
    /// placeholder is not a whole path segment (in the host, say), or the URL is not in
    /// its canonical form (no userinfo, query, fragment, `%`, `.` segments, default port
    /// or upper-case host); [`BuildError::Url`] with [`FetchError::InsecureUrl`] for plain
    /// http off loopback.
    pub fn template(template: &str) -> Result<IssuerPattern, BuildError> {
        let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
            return Err(BuildError::InvalidUrl);
        };
        let (prefix, suffix) = (&template[..open], template.get(close + 1..).unwrap_or(""));
        let name = template.get(open + 1..close).unwrap_or("");
        let fixed_parts_ok = |s: &str| !s.contains(['{', '}', '?', '#', '%', '@', '\\']);
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || !prefix.ends_with('/')
            || !(suffix.is_empty() || suffix.starts_with('/'))
            || !fixed_parts_ok(prefix)
            || !fixed_parts_ok(suffix)
        {
            return Err(BuildError::InvalidUrl);
        }
        let sample = format!("{prefix}tenant{suffix}");
        let url = Url::parse(&sample).map_err(|_| BuildError::InvalidUrl)?;
        if !is_canonical(&url, &sample) {
            return Err(BuildError::InvalidUrl);
        }
        // The placeholder must lie in the path: the host is never a variable.
        let origin_len = sample.len() - url.path().len();
        if prefix.len() <= origin_len {
            return Err(BuildError::InvalidUrl);
        }
        if !fetch::is_allowed(&url) {
            return Err(FetchError::InsecureUrl.into());
        }
        let matcher = Matcher::Template { template: template.into(), prefix: prefix.into(), suffix: suffix.into() };
        Ok(IssuerPattern { matcher, overrides: Overrides::default() })
    }

    /// Trusts every issuer for which `predicate` returns `true`.
    ///
    /// The predicate sees the unverified `iss` of a token (at most 1 KiB); write it as
    /// strictly as a template (compare whole strings, not prefixes). Whatever it accepts
    /// must still be a canonical https URL (http on loopback) to be discovered.
    pub fn predicate(predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> IssuerPattern {
        IssuerPattern { matcher: Matcher::Predicate(Arc::new(predicate)), overrides: Overrides::default() }
    }

    /// Whether `issuer` matches.
    pub fn matches(&self, issuer: &str) -> bool {
        match &self.matcher {
            Matcher::Template { prefix, suffix, .. } => {
                let Some(tenant) = issuer.strip_prefix(&**prefix).and_then(|rest| rest.strip_suffix(&**suffix)) else {
                    return false;
                };
                is_tenant(tenant)
            }
            Matcher::Predicate(predicate) => issuer.len() <= MAX_PATTERN_ISSUER_LEN && predicate(issuer),
        }
    }

    /// Accepts the matching issuers' tokens for `audience`, in place of the validator's
    /// audiences. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> IssuerPattern {
        self.overrides.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list for the matching issuers, in place of the validator's.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> IssuerPattern {
        self.overrides.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The `typ` policy for the matching issuers, in place of the validator's.
    pub fn typ(mut self, policy: TypPolicy) -> IssuerPattern {
        self.overrides.typ = Some(policy);
        self
    }
}

impl fmt::Debug for IssuerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("IssuerPattern");
        match &self.matcher {
            Matcher::Template { template, .. } => s.field("template", template),
            Matcher::Predicate(_) => s.field("predicate", &".."),
        };
        s.field("audiences", &self.overrides.audiences)
            .field("algorithms", &self.overrides.algorithms)
            .field("typ", &self.overrides.typ)
            .finish()
    }
}

/// One whole path segment of RFC 3986 §2.3 unreserved characters, never a dot segment
/// (RFC 3986 §5.2.4 would resolve it away).
fn is_tenant(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_TENANT_LEN
        && segment != "."
        && segment != ".."
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The URL reads back exactly as written (but for the `/` an empty path gets, as in
/// `https://accounts.example`): nothing for a parser to normalise, and no userinfo,
/// query or fragment.
pub(super) fn is_canonical(url: &Url, text: &str) -> bool {
    let same = url.as_str() == text || (url.path() == "/" && url.as_str().strip_suffix('/') == Some(text));
    same && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.host_str().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_whole_segment_of_unreserved_characters() {
        let p = IssuerPattern::template("https://login.example.com/{tenant}/v2.0").unwrap();
        for ok in [
            "https://login.example.com/contoso/v2.0",
            "https://login.example.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "https://login.example.com/a.b_c~d/v2.0",
        ] {
            assert!(p.matches(ok), "{ok}");
        }
        for bad in [
            "https://login.example.com.evil/contoso/v2.0",
            "https://login.example.com.evil.com/login.example.com/contoso/v2.0",
            "https://evil.example/https://login.example.com/contoso/v2.0",
            "http://login.example.com/contoso/v2.0",
            "https://login.example.com//v2.0",
            "https://login.example.com/a/b/v2.0",
            "https://login.example.com/a%2Fb/v2.0",
            "https://login.example.com/a%2fb/v2.0",
            "https://login.example.com/../v2.0",
            "https://login.example.com/./v2.0",
            "https://login.example.com/a?b/v2.0",
            "https://login.example.com/a#b/v2.0",
            "https://login.example.com/a@b/v2.0",
            "https://login.example.com/a:b/v2.0",
            "https://login.example.com/contoso/v2.0/",
            "https://login.example.com/contoso/v2.0x",
            "https://login.example.com/contoso/v2",
            "https://login.example.com/contoso",
            "https://LOGIN.example.com/contoso/v2.0",
            "https://login.example.com:443/contoso/v2.0",
            "https://login.example.com/con toso/v2.0",
            "https://login.example.com/contosö/v2.0",
            " https://login.example.com/contoso/v2.0",
        ] {
            assert!(!p.matches(bad), "{bad}");
        }
        assert!(!p.matches(&format!("https://login.example.com/{}/v2.0", "a".repeat(129))));
        assert!(p.matches(&format!("https://login.example.com/{}/v2.0", "a".repeat(128))));
    }

    #[test]
    fn a_template_at_the_end_of_the_path_matches_the_last_segment_only() {
        let p = IssuerPattern::template("http://127.0.0.1:8080/realms/{realm}").unwrap();
        assert!(p.matches("http://127.0.0.1:8080/realms/main"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/main/"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/"));
        assert!(!p.matches("http://127.0.0.1:8080/realms/main/x"));
    }

    #[test]
    fn templates_must_keep_scheme_and_host_fixed_and_be_canonical() {
        for bad in [
            "https://{tenant}.example.com/",
            "https://login.example.com{tenant}/v2.0",
            "https://login.example.com/x{tenant}/v2.0",
            "https://login.example.com/{tenant}x/v2.0",
            "https://login.example.com/{tenant}/{other}",
            "https://login.example.com/{}/v2.0",
            "https://login.example.com/{ten ant}/v2.0",
            "https://login.example.com/v2.0",
            "https://login.example.com/{tenant}/v2.0?x=1",
            "https://login.example.com/{tenant}/v2.0#f",
            "https://user@login.example.com/{tenant}",
            "https://LOGIN.example.com/{tenant}",
            "https://login.example.com:443/{tenant}",
            "https://login.example.com/./{tenant}",
            "https://login.example.com/%2e/{tenant}",
            "{tenant}/v2.0",
            "not a url/{tenant}",
        ] {
            assert!(matches!(IssuerPattern::template(bad), Err(BuildError::InvalidUrl)), "{bad}");
        }
        assert!(matches!(
            IssuerPattern::template("http://login.example.com/{tenant}"),
            Err(BuildError::Url(FetchError::InsecureUrl))
        ));
        assert!(IssuerPattern::template("http://localhost:9000/{tenant}").is_ok());
    }

    #[test]
    fn a_predicate_sees_no_issuer_over_a_kilobyte() {
        let p = IssuerPattern::predicate(|_| true);
        assert!(p.matches("https://any.example"));
        assert!(!p.matches(&"a".repeat(1025)));
    }
}
