//! Authorization server metadata: OpenID Connect Discovery 1.0 §4 and RFC 8414.

use serde::Deserialize;
use url::Url;

use crate::error::FetchError;
use crate::idp::fetch::{self, Limits, Remembered};

/// The members of an issuer's metadata document this crate uses.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub(crate) struct ProviderMetadata {
    /// The issuer identifier; always equal to the configured issuer once returned.
    pub(crate) issuer: String,
    /// Where the issuer publishes its JWK Set.
    pub(crate) jwks_uri: Option<String>,
    /// The token endpoint (RFC 6749 §3.2).
    pub(crate) token_endpoint: Option<String>,
    /// The introspection endpoint (RFC 7662).
    pub(crate) introspection_endpoint: Option<String>,
    /// The OIDC userinfo endpoint.
    pub(crate) userinfo_endpoint: Option<String>,
    /// The endpoints for clients that present a TLS certificate (RFC 8705 §5).
    #[serde(default)]
    pub(crate) mtls_endpoint_aliases: Option<MtlsAliases>,
}

/// `mtls_endpoint_aliases` (RFC 8705 §5): the members this crate uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MtlsAliases {
    pub(crate) token_endpoint: Option<String>,
    pub(crate) introspection_endpoint: Option<String>,
}

/// The two well-known locations for `issuer`, OIDC's first.
///
/// OIDC appends to the issuer (after removing a trailing `/`); RFC 8414 §3.1 inserts
/// the well-known segment between the host and the issuer's path.
pub(crate) fn metadata_urls(issuer: &Url) -> [Url; 2] {
    let path = issuer.path().trim_end_matches('/');
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut oauth = issuer.clone();
    oauth.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    for url in [&mut oidc, &mut oauth] {
        url.set_query(None);
        url.set_fragment(None);
    }
    [oidc, oauth]
}

/// Fetches `issuer`'s metadata, trying OIDC discovery and then RFC 8414, and checks
/// that the document names the same issuer (RFC 8414 §3.3, OIDC Discovery §4.3): a
/// mismatch is how mix-up attacks begin.
///
/// `known` is the document read last time, if its server named a version: the fetch of
/// the same location asks whether it changed, and a `304` returns it again. A document
/// read now replaces it.
pub(crate) async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    limits: Limits,
    known: &mut Remembered<ProviderMetadata>,
) -> Result<ProviderMetadata, FetchError> {
    let issuer_url = fetch::parse_url(issuer)?;
    let mut last_error = FetchError::MissingJwksUri;
    for url in metadata_urls(&issuer_url) {
        match fetch_one(client, &url, issuer, limits, known).await {
            Ok(metadata) => return Ok(metadata),
            Err(error) => {
                tracing::debug!(%url, %error, "metadata fetch failed");
                last_error = error;
            }
        }
    }
    Err(last_error)
}

async fn fetch_one(
    client: &reqwest::Client,
    url: &Url,
    issuer: &str,
    limits: Limits,
    known: &mut Remembered<ProviderMetadata>,
) -> Result<ProviderMetadata, FetchError> {
    let read = known.get(client, url, limits, |body| parse_metadata(body, issuer)).await;
    crate::telemetry::metadata_fetch(match &read {
        Ok(read) if read.not_modified => "not_modified",
        Ok(_) => "ok",
        Err(_) => "error",
    });
    read.map(|read| read.value)
}

/// Reads a metadata document and checks that it names `issuer`.
pub(crate) fn parse_metadata(body: &[u8], issuer: &str) -> Result<ProviderMetadata, FetchError> {
    let metadata: ProviderMetadata = serde_json::from_slice(body)
        .map_err(|_| FetchError::InvalidDocument("metadata is not a JSON object with an issuer"))?;
    if metadata.issuer != issuer {
        return Err(FetchError::IssuerMismatch);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_oidc_and_rfc8414() {
        let urls = |s: &str| metadata_urls(&Url::parse(s).unwrap()).map(|u| u.to_string());
        assert_eq!(
            urls("https://idp.example"),
            [
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            urls("https://idp.example/auth/realms/x/"),
            [
                "https://idp.example/auth/realms/x/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/auth/realms/x"
            ]
        );
    }
}
