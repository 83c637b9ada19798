//! Entry points for the fuzz targets under `fuzz/`: crate-internal parsers, each
//! forwarded as it is. Compiled only with the internal `_fuzzing` feature; not a public
//! API and not covered by semver.

/// Thin forwards to crate-internal functions, for the fuzz targets only.
#[doc(hidden)]
pub mod __fuzz {
    use std::time::Duration;

    use http::{HeaderMap, response};
    use url::Url;

    use crate::FetchError;
    use crate::bearer::{Rejection, ResponseStyle};
    use crate::client::{ErrorResponse, TokenError};
    use crate::idp::discovery;
    use crate::idp::fetch;

    /// What discovery keeps of a metadata document.
    #[derive(Debug)]
    pub struct Metadata {
        /// The issuer the document names.
        pub issuer: String,
        /// `jwks_uri`, `token_endpoint`, `introspection_endpoint` and `userinfo_endpoint`,
        /// where present.
        pub endpoints: Vec<String>,
    }

    /// A metadata document checked against `issuer`, as discovery reads it.
    pub fn parse_metadata(body: &[u8], issuer: &str) -> Result<Metadata, FetchError> {
        let metadata = discovery::parse_metadata(body, issuer)?;
        let endpoints =
            [metadata.jwks_uri, metadata.token_endpoint, metadata.introspection_endpoint, metadata.userinfo_endpoint];
        Ok(Metadata { issuer: metadata.issuer, endpoints: endpoints.into_iter().flatten().collect() })
    }

    /// The OIDC and RFC 8414 metadata locations of `issuer`, after the URL rule that
    /// every fetch applies (https, or http on loopback).
    pub fn metadata_urls(issuer: &str) -> Result<[Url; 2], FetchError> {
        fetch::parse_url(issuer).map(|url| discovery::metadata_urls(&url))
    }

    /// The URL rule applied to configured and discovered URLs (`jwks_uri`, `token_endpoint`).
    pub fn parse_url(url: &str) -> Result<Url, FetchError> {
        fetch::parse_url(url)
    }

    /// `Cache-Control: max-age` of a JWKS or metadata response.
    pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
        fetch::max_age(headers)
    }

    /// `Retry-After` of a JWKS, metadata or token response.
    pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
        fetch::retry_after(headers)
    }

    /// An RFC 6749 §5.2 error body, as the token endpoint client reads it.
    pub fn parse_error_response(status: http::StatusCode, body: &[u8]) -> Option<ErrorResponse> {
        ErrorResponse::parse(status, body)
    }

    /// The error for a token endpoint status without a usable error body.
    pub fn token_error_from_status(status: http::StatusCode, retry_after: Option<Duration>) -> TokenError {
        TokenError::from_status(status, retry_after)
    }

    /// The style `BearerAuthLayer::realm` and `verbose_errors` configure.
    pub fn response_style(realm: Option<&str>, verbose: bool) -> ResponseStyle {
        let mut style = ResponseStyle { realm: None, verbose, ..ResponseStyle::default() };
        if let Some(realm) = realm {
            style.realm(realm);
        }
        style
    }

    /// The whole rejection response (HTTP, or gRPC trailers-only), without its body.
    pub fn rejection_response(rejection: Rejection, style: &ResponseStyle, grpc: bool) -> response::Parts {
        rejection.into_response::<()>(style, grpc).into_parts().0
    }
}
