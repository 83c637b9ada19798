//! `WWW-Authenticate` and the rejection responses (`bearer/rejection.rs`) from arbitrary
//! realm and scope strings, for every kind of rejection and every validation error.
//!
//! Input: a flags byte (bits 0-2 the rejection kind, bit 3 verbose, bit 4 gRPC, bit 5
//! a realm), a byte picking the validation error or request problem, then the realm,
//! `0xFF`, and the required scope.
//!
//! Checked: nothing panics; the challenge is a valid `HeaderValue` of visible ASCII with
//! no CR or LF; it parses back as `Bearer` and `name="value"` pairs, each name once, with
//! exactly the members this rejection should carry (no value can smuggle in another
//! member); the full response carries that challenge and the right status or gRPC code.

#![no_main]

use http::{StatusCode, header};
use libfuzzer_sys::fuzz_target;
use tower_oauth::__fuzz;
use tower_oauth::Algorithm;
use tower_oauth::bearer::Rejection;
use tower_oauth::validate::ValidationError;
use tower_oauth_fuzz::split;

const PROBLEMS: [&str; 4] = [
    "several Authorization headers",
    "empty bearer token",
    "several credentials in one header",
    "token in both the header and the query",
];

const ERRORS: [ValidationError; 27] = [
    ValidationError::TokenTooLarge,
    ValidationError::Malformed("not three segments"),
    ValidationError::EncryptedToken,
    ValidationError::AlgorithmNone,
    ValidationError::UnsupportedAlgorithm,
    ValidationError::AlgorithmNotAllowed(Algorithm::HS256),
    ValidationError::UnsupportedCriticalHeader,
    ValidationError::UnencodedPayload,
    ValidationError::InvalidType,
    ValidationError::UnknownKey,
    ValidationError::KeyAlgorithmMismatch,
    ValidationError::InvalidSignature,
    ValidationError::UntrustedIssuer,
    ValidationError::InvalidAudience,
    ValidationError::MissingClaim("exp"),
    ValidationError::InvalidClaim("aud"),
    ValidationError::Expired,
    ValidationError::NotYetValid,
    ValidationError::IssuedInFuture,
    ValidationError::ClaimsType,
    ValidationError::UnsupportedEncryption("PBES2 is refused"),
    ValidationError::NoDecryptionKey,
    ValidationError::DecryptionFailed,
    ValidationError::UnsignedEncryptedToken,
    ValidationError::EncryptionRequired,
    ValidationError::KeysUnavailable,
    ValidationError::Malformed("payload is not base64url"),
];

/// `Bearer` followed by `name="value"` pairs separated by `, `; `None` if it is not
/// exactly that.
fn parse_challenge(challenge: &str) -> Option<Vec<(&str, &str)>> {
    let rest = challenge.strip_prefix("Bearer")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut rest = rest.strip_prefix(' ')?;
    let mut params = Vec::new();
    loop {
        let (name, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        params.push((name, value));
        if after.is_empty() {
            return Some(params);
        }
        rest = after.strip_prefix(", ")?;
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, pick, rest @ ..] = data else { return };
    let (realm, scope) = split(rest);
    let realm = String::from_utf8_lossy(realm);
    let scope = String::from_utf8_lossy(scope).into_owned();
    let (verbose, grpc, with_realm) = (flags & 8 != 0, flags & 16 != 0, flags & 32 != 0);
    let rejection = match flags & 7 {
        0 => Rejection::MissingCredentials,
        1 => Rejection::InvalidRequest(PROBLEMS[*pick as usize % PROBLEMS.len()]),
        2 | 3 => Rejection::InvalidToken(ERRORS[*pick as usize % ERRORS.len()].clone()),
        4 | 5 => Rejection::InsufficientScope { required: scope.clone() },
        _ => Rejection::Unavailable,
    };
    let style = __fuzz::response_style(with_realm.then_some(&*realm), verbose);

    let challenge = rejection.challenge(&style);
    assert_eq!(challenge.is_none(), matches!(rejection, Rejection::Unavailable), "{rejection:?}");
    if let Some(challenge) = &challenge {
        let text = challenge.to_str().expect("the challenge is visible ASCII");
        assert!(!text.contains(['\r', '\n']));
        let params = parse_challenge(text).unwrap_or_else(|| panic!("not an RFC 6750 challenge: {text}"));
        for (i, (name, _)) in params.iter().enumerate() {
            assert!(params[..i].iter().all(|(other, _)| other != name), "{name} twice in {text}");
        }
        let get = |wanted: &str| params.iter().find(|(name, _)| *name == wanted).map(|(_, value)| *value);
        let mut expected = 0;
        if with_realm {
            let value = get("realm").expect("a realm");
            assert_eq!(value.chars().count(), realm.chars().count(), "the realm is quoted char for char");
            expected += 1;
        }
        if let Some(code) = rejection.error_code() {
            assert_eq!(get("error"), Some(code));
            expected += 1;
            if verbose {
                assert!(get("error_description").is_some_and(|d| !d.is_empty()));
                expected += 1;
            }
        }
        if let Rejection::InsufficientScope { required } = &rejection {
            let value = get("scope").expect("a scope");
            assert_eq!(value.chars().count(), required.chars().count(), "the scope is quoted char for char");
            expected += 1;
        }
        assert_eq!(params.len(), expected, "unexpected members in {text}");
    }

    let parts = __fuzz::rejection_response(rejection.clone(), &style, grpc);
    for (name, value) in &parts.headers {
        let text = value.to_str().unwrap_or_else(|_| panic!("{name} is not visible ASCII"));
        assert!(!text.contains(['\r', '\n']));
    }
    assert_eq!(parts.headers.get(header::WWW_AUTHENTICATE), challenge.as_ref());
    if grpc {
        assert_eq!(parts.status, StatusCode::OK);
        let code = parts.headers.get("grpc-status").expect("a grpc-status");
        assert_eq!(code.to_str().ok(), Some(rejection.grpc_status().to_string().as_str()));
        assert!(parts.headers.contains_key("grpc-message"));
    } else {
        assert_eq!(parts.status, rejection.status());
    }
});
