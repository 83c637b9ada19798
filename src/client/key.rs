//! What identifies a cached token.

use std::fmt;

/// Which grant a token source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantKind {
    /// RFC 6749 §4.4: the client acts on its own behalf.
    ClientCredentials,
    /// RFC 6749 §6: a refresh token stands for a user's grant.
    RefreshToken,
    /// RFC 6749 §4.1.3: an authorization code, then the refresh token it returns.
    AuthorizationCode,
    /// RFC 7523 §2.1: a JWT assertion (a workload's identity token) for a token.
    JwtBearer,
    /// RFC 8693: a subject token for a token aimed elsewhere.
    TokenExchange,
}

impl GrantKind {
    /// The `grant_type` of the first request.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::RefreshToken => "refresh_token",
            GrantKind::AuthorizationCode => "authorization_code",
            GrantKind::JwtBearer => super::grant::JWT_BEARER,
            GrantKind::TokenExchange => super::grant::TOKEN_EXCHANGE,
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What makes two token sources interchangeable: the same endpoint (or issuer, when
/// the endpoint is discovered), client, grant, scope, resources and audience.
///
/// It holds no secret, so it can be hashed, logged and used as the key of a registry of
/// caches or of a store shared between processes. The scope is normalised (sorted, one
/// space between scope tokens) and so are the resources (sorted), so the order they
/// were configured in does not matter.
///
/// A key does not tell users apart: tokens of the user-delegated grants
/// ([`GrantKind::RefreshToken`], [`GrantKind::AuthorizationCode`]) must not be shared by
/// key alone.
///
/// ```
/// use tower_oauth::client::TokenEndpoint;
///
/// let a = TokenEndpoint::builder("https://idp.example/token", "svc", "secret-a").scope("write read").build()?;
/// let b = TokenEndpoint::builder("https://idp.example/token", "svc", "secret-b").scope("read write").build()?;
/// assert_eq!(a.key(), b.key()); // the secret is not part of the key
/// assert_eq!(a.key().scope(), Some("read write"));
/// # Ok::<(), tower_oauth::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub(crate) endpoint: String,
    pub(crate) client_id: String,
    pub(crate) grant: GrantKind,
    pub(crate) scope: Option<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) audience: Option<String>,
    /// The RFC 7638 thumbprint of the DPoP key the tokens are bound to: tokens bound to
    /// one key are never handed to a holder of another (or of none).
    pub(crate) dpop_jkt: Option<String>,
}

impl CacheKey {
    /// A key for a custom [`TokenSource`](super::TokenSource). `scope` is normalised and
    /// `resources` sorted, as for the built-in source.
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        grant: GrantKind,
        scope: Option<&str>,
        resources: impl IntoIterator<Item = impl Into<String>>,
        audience: Option<&str>,
    ) -> CacheKey {
        let mut resources: Vec<String> = resources.into_iter().map(Into::into).collect();
        resources.sort();
        resources.dedup();
        CacheKey {
            endpoint: endpoint.into(),
            client_id: client_id.into(),
            grant,
            scope: scope.and_then(normalize_scope),
            resources,
            audience: audience.map(str::to_owned),
            dpop_jkt: None,
        }
    }

    /// The same key for tokens bound to the DPoP key with `thumbprint`.
    pub(crate) fn with_dpop(mut self, thumbprint: Option<&str>) -> CacheKey {
        self.dpop_jkt = thumbprint.map(str::to_owned);
        self
    }

    /// The token endpoint URL, or the issuer when the endpoint is discovered.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant.
    pub fn grant(&self) -> GrantKind {
        self.grant
    }

    /// The requested scope, normalised.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The RFC 8707 resources, sorted.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The `audience` parameter.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The thumbprint of the DPoP key the tokens are bound to, if any.
    pub fn dpop_thumbprint(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }
}

/// Scope tokens sorted and deduplicated, one space apart (RFC 6749 §3.3: the order does
/// not matter); `None` when there are none.
pub(crate) fn normalize_scope(scope: &str) -> Option<String> {
    let mut tokens: Vec<&str> = scope.split_ascii_whitespace().collect();
    tokens.sort_unstable();
    tokens.dedup();
    (!tokens.is_empty()).then(|| tokens.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_spacing_do_not_change_the_key() {
        let a = CacheKey::new("https://e", "c", GrantKind::ClientCredentials, Some(" b  a a"), ["y", "x"], None);
        let b = CacheKey::new("https://e", "c", GrantKind::ClientCredentials, Some("a b"), ["x", "y", "x"], None);
        assert_eq!(a, b);
        assert_eq!(a.scope(), Some("a b"));
        assert_eq!(a.resources(), ["x", "y"]);
        let none =
            CacheKey::new("https://e", "c", GrantKind::ClientCredentials, Some("   "), Vec::<String>::new(), None);
        assert_eq!(none.scope(), None);
    }
}
