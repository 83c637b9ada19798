//! The compact JWS layer (RFC 7515 §7.1): segments, header rules and the signature,
//! below any claims policy.

use std::sync::Arc;

use base64::Engine as _;

use super::ValidationError;
use super::header::Header;
use crate::jwk::{B64, Jwk};
use crate::{Algorithm, KeySet};

/// The number of `.` in a token, with a SIMD scan: tokens are kilobytes long and this
/// runs on every request.
pub(crate) fn dots(token: &[u8]) -> usize {
    memchr::memchr_iter(b'.', token).count()
}

/// Room for a decoded header of the usual size, owned by the caller so nothing large
/// moves; bigger headers (say, with an `x5c` chain) go to the heap.
pub(crate) struct HeaderBuf {
    stack: [u8; 512],
    heap: Vec<u8>,
}

impl HeaderBuf {
    pub(crate) fn new() -> HeaderBuf {
        HeaderBuf { stack: [0; 512], heap: Vec::new() }
    }
}

/// A compact JWS split into its segments, with the header decoded.
pub(crate) struct Compact<'t> {
    pub(crate) signing_input: &'t [u8],
    pub(crate) header_b64: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
}

impl<'t> Compact<'t> {
    /// Exactly three segments of strict base64url (five would be a JWE, RFC 7516 §7.1).
    pub(crate) fn split(token: &'t str) -> Result<Compact<'t>, ValidationError> {
        // The dots with a SIMD scan: `str::splitn` looks for them a byte at a time.
        let mut at = memchr::memchr_iter(b'.', token.as_bytes());
        let (Some(first), Some(second), None) = (at.next(), at.next(), at.next()) else {
            return Err(match dots(token.as_bytes()) {
                4 => ValidationError::EncryptedToken,
                0 if token.starts_with('{') => ValidationError::Malformed("not a compact JWT (JSON serialization?)"),
                // Many issuers hand out opaque tokens unless asked for JWTs (RFC 9068).
                0 => ValidationError::Malformed("not a JWT (an opaque token?)"),
                _ => ValidationError::Malformed("not three segments"),
            });
        };
        let (header_b64, payload_b64, signature_b64) =
            (&token[..first], &token[first + 1..second], &token[second + 1..]);
        let signing_input = &token.as_bytes()[..second];
        Ok(Compact { signing_input, header_b64, payload_b64, signature_b64 })
    }

    /// Decodes the header into `buf`.
    pub(crate) fn header<'b>(&self, buf: &'b mut HeaderBuf) -> Result<&'b [u8], ValidationError> {
        const BAD: ValidationError = ValidationError::Malformed("header is not base64url");
        // 680 characters decode to at most 510 bytes, within base64's estimate.
        if self.header_b64.len() <= 680 {
            let len = B64.decode_slice(self.header_b64, &mut buf.stack).map_err(|_| BAD)?;
            Ok(&buf.stack[..len])
        } else {
            buf.heap = B64.decode(self.header_b64).map_err(|_| BAD)?;
            Ok(&buf.heap)
        }
    }

    pub(crate) fn payload(&self) -> Result<Vec<u8>, ValidationError> {
        B64.decode(self.payload_b64).map_err(|_| ValidationError::Malformed("payload is not base64url"))
    }

    /// Decodes the signature into `buf`, without allocating: an RSA-8192 signature, the
    /// largest we verify, is 1024 bytes (1366 base64url characters).
    pub(crate) fn signature<'b>(&self, buf: &'b mut SignatureBuf) -> Result<&'b [u8], ValidationError> {
        if self.signature_b64.len() > MAX_SIGNATURE_B64 {
            return Err(ValidationError::Malformed("signature is too long"));
        }
        let len = B64
            .decode_slice(self.signature_b64, &mut buf.0)
            .map_err(|_| ValidationError::Malformed("signature is not base64url"))?;
        Ok(&buf.0[..len])
    }
}

const MAX_SIGNATURE_B64: usize = 1366;

/// Room for the largest signature; base64's size estimate rounds up to whole quanta.
pub(crate) struct SignatureBuf([u8; MAX_SIGNATURE_B64.div_ceil(4) * 3]);

impl SignatureBuf {
    pub(crate) fn new() -> SignatureBuf {
        SignatureBuf([0; MAX_SIGNATURE_B64.div_ceil(4) * 3])
    }
}

/// The header rules that do not depend on the claims: a real, allowed algorithm, and
/// no extension we would have to process.
pub(crate) fn checked_algorithm(
    header: &Header<'_>,
    allowed: impl Fn(Algorithm) -> bool,
) -> Result<Algorithm, ValidationError> {
    let alg = header.algorithm()?;
    if !allowed(alg) {
        return Err(ValidationError::AlgorithmNotAllowed(alg));
    }
    header.check_extensions()?;
    Ok(alg)
}

/// Finds the key for (`kid`, `alg`) and verifies. With a `kid`, only keys with that
/// `kid` are tried; without one, each key that fits `alg` (sets are small and bounded).
pub(crate) fn verify_signature(
    keys: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<Arc<Jwk>, ValidationError> {
    let mut candidates = keys.candidates(kid, alg).peekable();
    if candidates.peek().is_none() {
        return Err(match kid {
            Some(kid) if keys.contains_kid(kid) => ValidationError::KeyAlgorithmMismatch,
            // No such kid, or no kid and no key of the right family: a new key may be
            // on its way, so the caller may refresh once.
            _ => ValidationError::UnknownKey,
        });
    }
    candidates.find(|key| key.verify(alg, signing_input, signature)).cloned().ok_or(ValidationError::InvalidSignature)
}

/// A JWS whose signature verified; its payload is not interpreted.
#[derive(Debug)]
pub struct VerifiedJws {
    alg: Algorithm,
    key: Arc<Jwk>,
    header: Vec<u8>,
    payload: Vec<u8>,
}

impl VerifiedJws {
    /// The algorithm the signature was made with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key that verified it.
    pub fn key(&self) -> &Arc<Jwk> {
        &self.key
    }

    /// The protected header, as JSON.
    pub fn header_json(&self) -> &[u8] {
        &self.header
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Verifies a compact JWS with `keys`, applying every header rule of the
/// [`Validator`](crate::Validator) but none of its claims policy: for signed payloads
/// that are not access tokens, and for conformance tests.
///
/// ```
/// use tower_oauth::{Algorithm, KeySet};
/// use tower_oauth::validate::verify_jws;
///
/// // RFC 7520 §4.4 (HS256); HMAC keys need the `trusted` entry point.
/// let keys = KeySet::from_jwks_trusted(br#"{"keys":[{"kty":"oct",
///   "kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037","use":"sig","alg":"HS256",
///   "k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}]}"#)?;
/// let jws = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";
/// let verified = verify_jws(jws, &keys, &[Algorithm::HS256])?;
/// assert!(verified.payload().starts_with("It’s a dangerous business".as_bytes()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_jws(token: &str, keys: &KeySet, algorithms: &[Algorithm]) -> Result<VerifiedJws, ValidationError> {
    let compact = Compact::split(token)?;
    let mut header_buf = HeaderBuf::new();
    let header_json = compact.header(&mut header_buf)?;
    let header = Header::parse(header_json)?;
    let alg = checked_algorithm(&header, |alg| algorithms.contains(&alg))?;
    let payload = compact.payload()?;
    let mut buf = SignatureBuf::new();
    let signature = compact.signature(&mut buf)?;
    let key = verify_signature(keys, header.kid.as_deref(), alg, compact.signing_input, signature)?;
    drop(header);
    Ok(VerifiedJws { alg, key, header: header_json.to_vec(), payload })
}
