//! The inbound path: arbitrary `Authorization` headers and tokens through `BearerAuth`
//! and the `Validator`, with fixed RSA, EC, Ed25519 and HMAC keys.
//!
//! Input: a mode byte (low two bits, flags above; see `tower_oauth_fuzz::bearer`),
//! then the mode's bytes. Checked on every input: nothing panics, the service answers
//! at once (fixed keys never wait), a rejection is a well-formed RFC 6750 (or gRPC)
//! answer that never reaches the inner service, and an accepted token names the
//! trusted issuer and audience and has not expired.

#![no_main]

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer as _;
use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::{BearerAuthLayer, Claims};
use tower_oauth_fuzz::{SEP, bearer, ready, sign_bytes, signing, split, validate, validate_strict};
use tower_service::Service;

/// The protected service: answers 200 and says it was called.
#[derive(Clone)]
struct Inner;

impl Service<Request<()>> for Inner {
    type Response = Response<()>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<()>, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let claims = request.extensions().get::<Claims>().expect("the inner service is called with claims");
        // The service checks the time now, not at NOW: at least as late, so `exp` holds.
        tower_oauth_fuzz::assert_accepted(claims, tower_oauth_fuzz::NOW);
        let mut response = Response::new(());
        response.headers_mut().insert("x-inner", HeaderValue::from_static("called"));
        std::future::ready(Ok(response))
    }
}

/// Sends one request through `BearerAuth`; returns the status and whether the inner
/// service answered.
fn call(flags: u8, authorization: Option<&[u8]>, query: Option<&[u8]>) -> Option<Vec<(StatusCode, bool)>> {
    let mut uri = String::from("/orders");
    if let Some(query) = query {
        uri.push('?');
        uri.push_str(std::str::from_utf8(query).ok()?);
    }
    let uri: http::Uri = uri.parse().ok()?;
    let value = match authorization {
        Some(bytes) => Some(HeaderValue::from_bytes(bytes).ok()?),
        None => None,
    };
    let grpc = flags & bearer::GRPC != 0;
    let mut layer = BearerAuthLayer::new(signing().validator.clone()).realm("api");
    if flags & bearer::VERBOSE != 0 {
        layer = layer.verbose_errors(true);
    }
    if flags & bearer::ALLOW_QUERY != 0 {
        layer = layer.allow_query_token();
    }
    let times = if flags & bearer::CACHE != 0 {
        layer = layer.cache(VerifiedTokenCache::with_capacity(64 * 1024));
        2
    } else {
        1
    };
    let mut service = layer.layer(Inner);
    let mut outcomes = Vec::with_capacity(times);
    for _ in 0..times {
        let mut request = Request::builder().uri(uri.clone());
        if let Some(value) = &value {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        if grpc {
            request = request.header(header::CONTENT_TYPE, "application/grpc+proto");
        }
        let request = request.body(()).expect("a valid request");
        let response = ready(service.call(request)).expect("infallible");
        outcomes.push(check_response(&response, grpc));
    }
    Some(outcomes)
}

/// The answer is one of the RFC 6750 ones (or gRPC's), and only a 200 comes from the
/// inner service.
fn check_response<B>(response: &Response<B>, grpc: bool) -> (StatusCode, bool) {
    let status = response.status();
    let inner = response.headers().get("x-inner").is_some();
    for (name, value) in response.headers() {
        let text = value.to_str().unwrap_or_else(|_| panic!("{name} is not visible ASCII"));
        assert!(!text.contains(['\r', '\n', '\0']), "{name} carries a control character");
    }
    if inner {
        assert_eq!(status, StatusCode::OK);
        return (status, true);
    }
    let challenge = response.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().expect("ascii"));
    if grpc {
        assert_eq!(status, StatusCode::OK, "gRPC rejections are trailers-only 200s");
        let code = response.headers().get("grpc-status").expect("a gRPC rejection has a grpc-status");
        assert!(["16", "7", "3", "14"].contains(&code.to_str().expect("ascii")), "grpc-status {code:?}");
        return (status, false);
    }
    match status.as_u16() {
        400 | 401 | 403 => {
            let challenge = challenge.expect("a 400/401/403 carries WWW-Authenticate");
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        503 => assert!(challenge.is_none(), "a 503 has no challenge"),
        other => panic!("unexpected status {other}"),
    }
    (status, false)
}

fn check_same(outcomes: Option<Vec<(StatusCode, bool)>>) {
    // With a cache, the second (cached) answer must be the first one's.
    if let Some(outcomes) = outcomes
        && let [first, second] = outcomes.as_slice()
    {
        assert_eq!(first, second, "a cached answer differs from the validated one");
    }
}

fn token_through_everything(flags: u8, token: &str) {
    let direct = validate(token);
    let _ = validate_strict(token);
    let outcomes = call(flags, Some(format!("Bearer {token}").as_bytes()), None);
    // Accepted at NOW (2024) with `exp` far ahead, or rejected for a reason that does
    // not depend on the clock: the service must agree.
    if let (Some(outcomes), Ok(claims)) = (&outcomes, &direct)
        && claims.not_before().is_none_or(|nbf| nbf <= tower_oauth_fuzz::NOW as i64)
        && claims.expires_at().is_some_and(|exp| exp > tower_oauth_fuzz::EXPIRES_AT as i64 - 1)
    {
        assert!(outcomes[0].1, "a token valid now and at NOW was refused by the service");
    }
    check_same(outcomes);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let flags = first & !0b11;
    match first & 0b11 {
        bearer::HEADER => {
            if flags & bearer::ALLOW_QUERY != 0 {
                let (value, query) = split(rest);
                let value = (!value.is_empty()).then_some(value);
                check_same(call(flags, value, Some(query)));
            } else {
                check_same(call(flags, Some(rest), None));
            }
        }
        bearer::TOKEN => {
            if let Ok(token) = std::str::from_utf8(rest) {
                token_through_everything(flags, token);
            }
        }
        bearer::SPLICE => {
            let [pick, segment, replacement @ ..] = rest else { return };
            let signing = signing();
            let base = &signing.tokens[*pick as usize % signing.tokens.len()];
            let mut parts: Vec<String> = base.split('.').map(str::to_owned).collect();
            let replacement = if segment & 4 != 0 {
                tower_oauth_fuzz::b64(replacement)
            } else {
                String::from_utf8_lossy(replacement).into_owned()
            };
            parts[(*segment & 3) as usize % 3] = replacement;
            token_through_everything(flags, &parts.join("."));
        }
        _ => {
            let [pick, input @ ..] = rest else { return };
            let signing = signing();
            let key = &signing.keys[*pick as usize % signing.keys.len()];
            let (header, payload) = split(input);
            debug_assert!(!header.contains(&SEP));
            token_through_everything(flags, &sign_bytes(key, header, payload));
        }
    }
});
