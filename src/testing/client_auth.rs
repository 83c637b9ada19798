//! `client_secret_basic` credentials (RFC 6749 §2.3.1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A client id and secret as the client presented them.
#[derive(PartialEq, Eq)]
pub(crate) struct ClientCredentials {
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client_id).field("secret", &"***").finish()
    }
}

impl ClientCredentials {
    /// Parses an `Authorization: Basic` value. `None` when the scheme is not Basic or
    /// the credentials are malformed.
    ///
    /// RFC 6749 §2.3.1: the id and secret are form-urlencoded (Appendix B) before
    /// they are joined with `:` and base64-encoded (RFC 7617 §2), so the split is at
    /// the first `:` and each half is then decoded. A secret that contains `:` or
    /// `%` only round-trips when the client encodes it, which is the point of the
    /// rule.
    pub(crate) fn from_basic(value: &[u8]) -> Option<ClientCredentials> {
        let value = std::str::from_utf8(value).ok()?;
        let (scheme, encoded) = value.split_once(' ')?;
        // RFC 9110 §11.1: the scheme name is case-insensitive.
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(encoded.trim_start_matches(' ')).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some(ClientCredentials { client_id: form_decode(id)?, secret: form_decode(secret)? })
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one value: `+` is a
/// space, `%XX` a byte; a malformed escape or invalid UTF-8 is an error rather than
/// being passed through, so a client that skipped the encoding is caught.
fn form_decode(encoded: &str) -> Option<String> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.bytes();
    while let Some(byte) = bytes.next() {
        decoded.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = hex_digit(bytes.next()?)?;
                let low = hex_digit(bytes.next()?)?;
                (high << 4) | low
            }
            other => other,
        });
    }
    String::from_utf8(decoded).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(user_pass)).into_bytes()
    }

    fn parsed(value: &[u8]) -> Option<(String, String)> {
        ClientCredentials::from_basic(value).map(|c| (c.client_id, c.secret))
    }

    #[test]
    fn id_and_secret_are_split_at_the_first_colon_then_form_decoded() {
        assert_eq!(
            parsed(&basic("my%3Aclient:p%40ss%3Aw%2Brd%25%2F+%26%3D")),
            Some(("my:client".into(), "p@ss:w+rd%/ &=".into()))
        );
    }

    #[test]
    fn an_unencoded_colon_in_the_secret_stays_in_the_secret() {
        assert_eq!(parsed(&basic("client:a:b")), Some(("client".into(), "a:b".into())));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let value = format!("bAsIc {}", STANDARD.encode("c:s"));
        assert_eq!(parsed(value.as_bytes()), Some(("c".into(), "s".into())));
    }

    #[test]
    fn malformed_credentials_are_rejected() {
        for value in [
            b"Bearer abc".to_vec(),
            b"Basic".to_vec(),
            b"Basic !!!".to_vec(),
            basic("no-colon"),
            basic("client:bad%zzescape"),
            basic("client:truncated%4"),
            basic("client:%FF"),
        ] {
            assert_eq!(parsed(&value), None, "{}", String::from_utf8_lossy(&value));
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let credentials = ClientCredentials::from_basic(&basic("c:hunter2"));
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
