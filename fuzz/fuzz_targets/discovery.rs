//! Discovery (`discovery.rs`, `fetch.rs`): the metadata document and its issuer check,
//! the well-known URLs built from an issuer, the URL rule for discovered endpoints, and
//! the `Cache-Control` / `Retry-After` headers of JWKS and metadata responses.
//!
//! Input: a mode byte, then:
//! - 0: a byte picking the configured issuer, then the metadata document;
//! - 1: the issuer, `0xFF`, the metadata document;
//! - 2: an issuer URL;
//! - 3: a `Cache-Control` value, `0xFF`, a `Retry-After` value.
//!
//! Checked: nothing panics; accepted metadata names exactly the configured issuer; a
//! discovered URL that passes the rule is https, or http on loopback; the well-known
//! URLs keep the issuer's origin and carry no query or fragment.

#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use tower_oauth::__fuzz;
use tower_oauth_fuzz::split;
use url::Url;

/// Issuers shaped like the two systems we serve: a Keycloak realm and the bank's API.
const ISSUERS: [&str; 4] = [
    "https://auth.banka.banfico.net/auth/realms/provider",
    "https://api.scalexpert.societegenerale.com/baas/prod/auth-server/api/v1",
    "http://127.0.0.1:8080/realms/test",
    "https://idp.example/",
];

fn check_allowed(url: &Url) {
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    assert!(!host.is_empty(), "{url} has no host");
    assert!(url.scheme() == "https" || (url.scheme() == "http" && loopback), "{url} passed the https rule");
}

fn metadata(body: &[u8], issuer: &str) {
    let Ok(metadata) = __fuzz::parse_metadata(body, issuer) else { return };
    assert_eq!(metadata.issuer, issuer, "metadata for another issuer was accepted");
    for endpoint in &metadata.endpoints {
        if let Ok(url) = __fuzz::parse_url(endpoint) {
            check_allowed(&url);
        }
    }
}

fn well_known(issuer: &str) {
    let Ok([oidc, oauth]) = __fuzz::metadata_urls(issuer) else { return };
    let parsed = Url::parse(issuer).expect("metadata_urls only takes URLs");
    for url in [&oidc, &oauth] {
        check_allowed(url);
        assert_eq!(url.origin(), parsed.origin(), "{url} left the issuer's origin");
        assert_eq!(url.query(), None);
        assert_eq!(url.fragment(), None);
    }
    assert!(oidc.path().ends_with("/.well-known/openid-configuration"), "{oidc}");
    assert!(oauth.path().starts_with("/.well-known/oauth-authorization-server"), "{oauth}");
}

fn cache_headers(cache_control: &[u8], retry_after: &[u8]) {
    let mut headers = HeaderMap::new();
    for (name, value) in [(header::CACHE_CONTROL, cache_control), (header::RETRY_AFTER, retry_after)] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let _ = __fuzz::max_age(&headers);
    let _ = __fuzz::retry_after(&headers);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let Some((&pick, body)) = rest.split_first() else { return };
            metadata(body, ISSUERS[pick as usize % ISSUERS.len()]);
        }
        1 => {
            let (issuer, body) = split(rest);
            if let Ok(issuer) = std::str::from_utf8(issuer) {
                metadata(body, issuer);
                well_known(issuer);
            }
        }
        2 => {
            if let Ok(issuer) = std::str::from_utf8(rest) {
                well_known(issuer);
            }
        }
        _ => {
            let (cache_control, retry_after) = split(rest);
            cache_headers(cache_control, retry_after);
        }
    }
});
