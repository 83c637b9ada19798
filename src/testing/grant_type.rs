//! The grant types the token endpoint serves, for its metadata and its counters.

/// A grant type of the test issuer's token endpoint, for
/// [`TestIssuer::grant_requests`](super::TestIssuer::grant_requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1.3).
    AuthorizationCode,
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1).
    JwtBearer,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693 §2.1).
    TokenExchange,
}

impl GrantType {
    /// Every grant type, in the order of the metadata's `grant_types_supported`.
    pub(crate) const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::JwtBearer,
        GrantType::TokenExchange,
    ];

    pub(crate) const COUNT: usize = GrantType::ALL.len();

    /// The `grant_type` value that names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// The grant type a `grant_type` value names, if the issuer serves it.
    pub(crate) fn from_param(value: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|grant| grant.as_str() == value)
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            GrantType::AuthorizationCode => 0,
            GrantType::ClientCredentials => 1,
            GrantType::RefreshToken => 2,
            GrantType::JwtBearer => 3,
            GrantType::TokenExchange => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_type_is_found_by_its_name_and_has_its_own_counter() {
        for (index, grant) in GrantType::ALL.into_iter().enumerate() {
            assert_eq!(GrantType::from_param(grant.as_str()), Some(grant));
            assert_eq!(grant.index(), index);
        }
        assert_eq!(GrantType::from_param("password"), None);
    }
}
