//! [`ClientCertificateHeaderLayer`]: the certificate a TLS-terminating proxy passes in a
//! header, and the PEM and DER reading it shares with [`ClientCertificate::from_pem`].

use std::fmt;
use std::task::{Context, Poll};

use base64::Engine as _;
use http::{HeaderMap, HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientCertificate, set_certificate};

/// The longest header value read, in bytes (16 KiB); a longer one gives no certificate.
/// A leaf certificate is one or two KiB, three in URL-encoded PEM.
pub const MAX_HEADER_VALUE_SIZE: usize = 16 * 1024;

/// Standard base64 (PEM, RFC 8941 byte sequences), with or without the padding.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// **Dangerous**: trusts a request header to name the client's certificate, as set by a
/// proxy that terminates TLS in front of this service.
///
/// Use it **only** behind a proxy that removes this header from every client request and
/// sets it itself from the TLS connection. Otherwise any client can claim any certificate by
/// sending the header, and a stolen certificate-bound token becomes usable by whoever knows
/// the (public) certificate. There is no default header and no constructor without
/// `dangerous` in its name.
///
/// The header's value may be:
///
/// - an RFC 9440 `Client-Cert` byte sequence, `:BASE64-DER:` (HAProxy:
///   `http-request set-header Client-Cert :%[ssl_c_der,base64]:`);
/// - a URL-encoded PEM: nginx's `$ssl_client_escaped_cert`, AWS ALB's
///   `X-Amzn-Mtls-Clientcert`;
/// - a plain PEM (its line breaks become spaces in a header).
///
/// The first certificate is taken (a chain's leaf) and put into the request as a
/// [`ClientCertificate`]. A value that does not parse, one over
/// [`MAX_HEADER_VALUE_SIZE`], or more than one value of the header, gives no certificate, and
/// then any `ClientCertificate` already in the request is removed. The header itself is
/// always removed from the request, parsed or not. Goes outside
/// [`BearerAuthLayer`](crate::BearerAuthLayer).
///
/// ```
/// use http::HeaderName;
/// use tower_oauth::mtls::ClientCertificateHeaderLayer;
///
/// // nginx: proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
/// // and the service is reachable only through nginx.
/// let layer = ClientCertificateHeaderLayer::dangerous_trust(HeaderName::from_static("x-client-cert"));
/// ```
#[derive(Clone)]
pub struct ClientCertificateHeaderLayer {
    header: HeaderName,
}

impl ClientCertificateHeaderLayer {
    /// A layer that trusts `header` to hold the client's certificate: see the type's
    /// documentation for when that is safe.
    pub fn dangerous_trust(header: HeaderName) -> Self {
        ClientCertificateHeaderLayer { header }
    }

    /// The trusted header.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }
}

impl fmt::Debug for ClientCertificateHeaderLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificateHeaderLayer").field("header", &self.header).finish()
    }
}

impl<S> Layer<S> for ClientCertificateHeaderLayer {
    type Service = ClientCertificateHeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCertificateHeader { inner, header: self.header.clone() }
    }
}

/// The service of [`ClientCertificateHeaderLayer`].
#[derive(Clone)]
pub struct ClientCertificateHeader<S> {
    inner: S,
    header: HeaderName,
}

impl<S> ClientCertificateHeader<S> {
    /// **Dangerous**: wraps `inner`, trusting `header` to hold the client's certificate; see
    /// [`ClientCertificateHeaderLayer`] for when that is safe.
    pub fn dangerous_trust(inner: S, header: HeaderName) -> Self {
        ClientCertificateHeader { inner, header }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ClientCertificateHeader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificateHeader").field("inner", &self.inner).field("header", &self.header).finish()
    }
}

impl<S, B> Service<Request<B>> for ClientCertificateHeader<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let cert = from_headers(request.headers(), &self.header);
        request.headers_mut().remove(&self.header);
        set_certificate(request.extensions_mut(), cert);
        self.inner.call(request)
    }
}

/// The certificate in the one value of `name`; `None` for no value, several, or one that
/// does not parse.
fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Option<ClientCertificate> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    from_header_value(value.as_bytes()).map(ClientCertificate::from_der)
}

/// The DER of the certificate in one header value: an RFC 9440 byte sequence, or a PEM,
/// URL-encoded or not.
fn from_header_value(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > MAX_HEADER_VALUE_SIZE {
        return None;
    }
    let value = value.trim_ascii();
    match value.strip_prefix(b":") {
        Some(rest) => byte_sequence(rest),
        None => first_pem_certificate(&percent_decode(value)?),
    }
}

/// An RFC 8941 byte sequence after its opening colon: base64 up to the closing colon, then
/// nothing, or parameters (which RFC 9440 does not define, and which are ignored).
fn byte_sequence(rest: &[u8]) -> Option<Vec<u8>> {
    let end = rest.iter().position(|&b| b == b':')?;
    let (base64, after) = (&rest[..end], &rest[end + 1..]);
    if !(after.is_empty() || after.starts_with(b";")) {
        return None;
    }
    B64.decode(base64).ok().filter(|der| is_der_sequence(der))
}

/// `%XX` escapes decoded; `+` stays a `+` (it is base64, not a form's space). `None` for a
/// `%` not followed by two hex digits.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter().copied();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let (high, low) = (hex(bytes.next()?)?, hex(bytes.next()?)?);
            out.push(high << 4 | low);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM text. Whitespace inside the block is
/// ignored (in a header, the line breaks are spaces or gone).
pub(super) fn first_pem_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    let start = find(pem, PEM_BEGIN)? + PEM_BEGIN.len();
    let body = &pem[start..];
    let body = &body[..find(body, PEM_END)?];
    let base64: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    B64.decode(base64).ok().filter(|der| is_der_sequence(der))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Whether `der` is exactly one DER `SEQUENCE` (a certificate's outer shape): its tag, a
/// minimal definite length, and that many bytes, no more.
fn is_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else { return false };
    let (length, content) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count || rest[0] == 0 {
            return false;
        }
        let (length, content) = rest.split_at(count);
        let length = length.iter().fold(0_usize, |acc, &b| acc << 8 | usize::from(b));
        if length < 0x80 {
            return false;
        }
        (length, content)
    };
    length == content.len()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use tower::ServiceExt as _;

    use super::*;

    /// A certificate made for the test, its DER and its PEM.
    fn certificate() -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.example".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.der().to_vec(), cert.pem())
    }

    /// Percent-encodes every byte but unreserved ones, as nginx's `$ssl_client_escaped_cert`.
    fn escape(text: &str, keep: &[u8]) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn parse(value: &str) -> Option<Vec<u8>> {
        from_header_value(value.as_bytes())
    }

    #[test]
    fn an_rfc_9440_byte_sequence_is_read() {
        let (der, _) = certificate();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(parse(&format!(":{encoded}:")), Some(der.clone()));
        // Surrounding whitespace, missing padding and parameters are tolerated.
        assert_eq!(parse(&format!("  :{}:;x=1 ", encoded.trim_end_matches('='))), Some(der));
    }

    #[test]
    fn a_url_encoded_pem_is_read_as_nginx_and_aws_alb_send_it() {
        let (der, pem) = certificate();
        assert!(pem.contains('\n'));
        // nginx's $ssl_client_escaped_cert: `+`, `/` and `=` escaped too.
        assert_eq!(parse(&escape(&pem, b"")), Some(der.clone()));
        // AWS ALB: `+`, `=` and `/` left as they are.
        assert_eq!(parse(&escape(&pem, b"+=/")), Some(der));
    }

    #[test]
    fn a_plain_pem_is_read_with_its_line_breaks_as_spaces() {
        let (der, pem) = certificate();
        let (other, other_pem) = certificate();
        assert_eq!(parse(&pem.replace('\n', " ")), Some(der.clone()));
        assert_eq!(parse(&pem.replace('\n', "")), Some(der.clone()));
        // A chain: the first certificate, the leaf.
        assert_eq!(parse(&format!("{pem}{other_pem}").replace('\n', " ")), Some(der));
        assert_eq!(parse(&other_pem.replace('\n', "\t")), Some(other));
    }

    #[test]
    fn garbage_is_no_certificate() {
        let (der, pem) = certificate();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
        for value in [
            "",
            ":",
            "::",
            "hello",
            ":not base64!:",
            &format!(":{encoded}"),
            &format!(":{encoded}:trailing"),
            // Base64 of something that is not one DER sequence.
            ":aGVsbG8=:",
            &format!(":{}:", base64::engine::general_purpose::STANDARD.encode([&der[..], b"x"].concat())),
            &format!(":{}:", base64::engine::general_purpose::STANDARD.encode(&der[..der.len() - 1])),
            "-----BEGIN CERTIFICATE----- aGVsbG8= -----END CERTIFICATE-----",
            // No end line, a broken escape, a private key instead of a certificate.
            &pem.replace('\n', " ").replace(std::str::from_utf8(PEM_END).unwrap(), ""),
            &escape(&pem, b"").replacen("%0A", "%0", 1),
            "-----BEGIN PRIVATE KEY----- MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg -----END PRIVATE KEY-----",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn an_oversized_value_is_no_certificate() {
        let (der, pem) = certificate();
        let padded = format!("{pem}{}", " ".repeat(MAX_HEADER_VALUE_SIZE - pem.len())).replace('\n', " ");
        assert_eq!(parse(&padded), Some(der));
        assert_eq!(parse(&format!("{padded} ")), None);
    }

    #[test]
    fn only_one_sequence_is_der() {
        assert!(is_der_sequence(&[0x30, 0x00]));
        assert!(is_der_sequence(&[0x30, 0x01, 0x05]));
        assert!(!is_der_sequence(&[0x31, 0x00]));
        assert!(!is_der_sequence(&[0x30]));
        // Long forms: minimal only.
        let long: Vec<u8> = [&[0x30, 0x81, 0x80][..], &[0; 0x80]].concat();
        assert!(is_der_sequence(&long));
        assert!(!is_der_sequence(&[&[0x30, 0x81, 0x05][..], &[0; 5]].concat()));
        assert!(!is_der_sequence(&[&[0x30, 0x82, 0x00, 0x80][..], &[0; 0x80]].concat()));
        assert!(!is_der_sequence(&[0x30, 0x80, 0x00, 0x00]));
    }

    fn service()
    -> ClientCertificateHeader<impl Service<Request<()>, Response = String, Error = std::convert::Infallible>> {
        ClientCertificateHeaderLayer::dangerous_trust(HeaderName::from_static("client-cert")).layer(tower::service_fn(
            |request: Request<()>| async move {
                assert!(!request.headers().contains_key("client-cert"), "the header reached the service");
                let certificate =
                    request.extensions().get::<ClientCertificate>().map(ClientCertificate::thumbprint_b64);
                Ok::<_, std::convert::Infallible>(certificate.unwrap_or_else(|| "none".to_owned()))
            },
        ))
    }

    fn request(values: &[&str], spoofed: bool) -> Request<()> {
        let mut request = Request::new(());
        for value in values {
            request.headers_mut().append("client-cert", HeaderValue::from_str(value).unwrap());
        }
        if spoofed {
            request.extensions_mut().insert(ClientCertificate::from_der(&b"spoofed"[..]));
        }
        request
    }

    #[tokio::test]
    async fn the_header_becomes_the_certificate_and_is_removed() {
        let (der, pem) = certificate();
        let expected = ClientCertificate::from_der(der).thumbprint_b64();
        let value = escape(&pem, b"");
        assert_eq!(service().oneshot(request(&[&value], false)).await.unwrap(), expected);
        assert_eq!(service().oneshot(request(&[&value], true)).await.unwrap(), expected);
    }

    #[tokio::test]
    async fn two_values_are_no_certificate_and_are_removed() {
        let (_, pem) = certificate();
        let value = escape(&pem, b"");
        assert_eq!(service().oneshot(request(&[&value, &value], false)).await.unwrap(), "none");
    }

    #[tokio::test]
    async fn an_unparsable_or_missing_header_removes_a_spoofed_extension() {
        assert_eq!(service().oneshot(request(&["garbage"], true)).await.unwrap(), "none");
        assert_eq!(service().oneshot(request(&[], true)).await.unwrap(), "none");
    }
}
