//! The token endpoint's answers: the RFC 6749 §5.1 success body (`TokenResponse::parse`),
//! the §5.2 error body (`client/error.rs`), and the status / `Retry-After` mapping.
//!
//! Input: a mode byte, then:
//! - 0: a success body;
//! - 1: two bytes of status (mapped into 400..=599), then an error body;
//! - 2: two bytes of status (100..=999), then a `Retry-After` value.
//!
//! Checked: nothing panics; an accepted access token is non-empty visible ASCII (it goes
//! into a header); `expires_in` is at most a year; `Debug` does not depend on either
//! token; the server's text in an error is free of control characters and bounded, and so
//! is every `Display`.

#![no_main]

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_oauth::__fuzz;
use tower_oauth::client::{TokenError, TokenResponse};

/// `MAX_LIFETIME` in `client/response.rs`: 366 days.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

fn assert_clean(text: &str, max_chars: usize) {
    assert!(!text.chars().any(char::is_control), "control character in {text:?}");
    assert!(text.chars().count() <= max_chars, "{} chars", text.chars().count());
}

fn success(body: &[u8]) {
    match TokenResponse::parse(body) {
        Ok(response) => {
            let token = response.access_token();
            assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
            assert!(HeaderValue::try_from(format!("Bearer {token}")).is_ok());
            assert!(response.expires_in().is_none_or(|d| d <= MAX_LIFETIME));
            // `Debug` must not depend on the tokens: the same body with other tokens
            // prints the same.
            let mut value: Value = serde_json::from_slice(body).expect("the body parsed once already");
            value["access_token"] = Value::from("replaced-access-token");
            if response.refresh_token().is_some() {
                value["refresh_token"] = Value::from("replaced-refresh-token");
            }
            let other = TokenResponse::parse(value.to_string().as_bytes()).expect("the same body but its tokens");
            assert_eq!(format!("{other:?}"), format!("{response:?}"), "Debug depends on a token");
        }
        Err(error) => {
            if let TokenError::UnsupportedTokenType(kind) = &error {
                assert_clean(kind, 33);
            }
            // `Display` quotes the type with `{:?}`, which may escape each kept char.
            assert_clean(&error.to_string(), 400);
        }
    }
}

fn error_body(status: StatusCode, body: &[u8]) {
    let Some(error) = __fuzz::parse_error_response(status, body) else { return };
    assert_eq!(error.status(), status);
    let code = error.code().as_str();
    assert!(!code.is_empty());
    assert_clean(code, 65);
    for text in [error.description(), error.uri()].into_iter().flatten() {
        assert!(!text.is_empty());
        assert_clean(text, 257);
    }
    assert_clean(&TokenError::OAuth(error).to_string(), 40 + 65 + 3 + 257);
}

fn status_only(status: StatusCode, retry_after: &[u8]) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(retry_after) {
        headers.insert(header::RETRY_AFTER, value);
    }
    let delay = __fuzz::retry_after(&headers);
    let error = __fuzz::token_error_from_status(status, delay);
    assert_eq!(error.status(), Some(status));
    assert!(error.retry_after().is_none() || matches!(status.as_u16(), 429 | 500..=599));
    assert_clean(&error.to_string(), 200);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => success(rest),
        1 => {
            let [high, low, body @ ..] = rest else { return };
            let code = 400 + u16::from_be_bytes([*high, *low]) % 200;
            error_body(StatusCode::from_u16(code).expect("400..=599"), body);
        }
        _ => {
            let [high, low, value @ ..] = rest else { return };
            let code = 100 + u16::from_be_bytes([*high, *low]) % 900;
            status_only(StatusCode::from_u16(code).expect("100..=999"), value);
        }
    }
});
