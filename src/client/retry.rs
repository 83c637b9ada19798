//! The 401 retry, written once for the Tower service and the reqwest middleware.
//!
//! A request leaves with a token: an [`Attempt`] remembers which token (its generation)
//! and, when the request may be replayed, a copy of it. The answer is judged once
//! ([`Attempt::judge`]):
//!
//! - an answer that does not refuse the token stands;
//! - a 401 to a request kept for replay becomes a [`Retry`]: one forced refresh (shared
//!   with every request that saw the same token rejected, none if the token was already
//!   replaced) and the copy once more with the new token. The replay's own answer is
//!   never judged: a second 401 is the answer;
//! - any other refusal (a 401 to a request that cannot be replayed, or a gRPC
//!   UNAUTHENTICATED) stands, and the cache is told, so the requests that follow get a
//!   new token.

use http::header::{AUTHORIZATION, HeaderName, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Body;

use super::dpop::{Htu, origin};
use super::{AccessToken, DpopKey, TokenCache, TokenError};

/// The `DPoP` request header (RFC 9449 §4.1).
const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8).
const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The header of a gRPC status in a trailers-only response.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// gRPC's UNAUTHENTICATED.
const GRPC_UNAUTHENTICATED: &[u8] = b"16";

/// Whether an answer refuses the token: HTTP 401, or a gRPC UNAUTHENTICATED (16) in the
/// headers of a trailers-only response.
pub(crate) fn rejects_token(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        || headers.get(&GRPC_STATUS).is_some_and(|code| code.as_bytes() == GRPC_UNAUTHENTICATED)
}

/// Whether the Tower layer may replay a request with this body: only when it is known
/// to be empty (`is_end_stream()`, or a size hint of exactly 0), so that `B::default()`
/// rebuilds it exactly.
#[inline]
pub(crate) fn is_empty_body<B: Body>(body: &B) -> bool {
    body.is_end_stream() || body.size_hint().exact() == Some(0)
}

/// A copy of a request, kept to send it once more with another token.
pub(crate) trait Replay {
    /// The request to send.
    type Request;

    /// The request again, with `token` attached (and a fresh DPoP proof when it is
    /// bound to a key); `None` when no proof can be made.
    fn authorize(self, token: &AccessToken) -> Option<Self::Request>;
}

/// A DPoP proof (RFC 9449 §7.1) for a request with `method` to `url`, for the token in
/// `authorization` (`DPoP <token>`), with the nonce the server last sent.
pub(crate) fn dpop_proof(
    key: &DpopKey,
    method: &Method,
    url: &(impl Htu + ?Sized),
    authorization: &HeaderValue,
) -> Result<HeaderValue, TokenError> {
    let token = authorization.to_str().ok().and_then(|value| value.get(5..)).unwrap_or_default();
    let proof = key.proof_for(method, url, Some(token)).map_err(TokenError::DpopProof)?;
    let mut value = HeaderValue::try_from(proof).map_err(|_| TokenError::DpopProof(super::KeyError::Signing))?;
    // A proof is for one request, but it names the token's hash: keep it out of HPACK.
    value.set_sensitive(true);
    Ok(value)
}

/// Sets the token and, for a DPoP token, a fresh proof for this request.
pub(crate) fn attach_token(
    headers: &mut HeaderMap,
    token: &AccessToken,
    method: &Method,
    url: &(impl Htu + ?Sized),
) -> Result<(), TokenError> {
    if let Some(key) = token.dpop_key() {
        headers.insert(DPOP, dpop_proof(key, method, url, token.header_value())?);
    }
    set_token(headers, token.header_value().clone());
    Ok(())
}

/// The DPoP key a request's token is bound to, and the origin of the server it goes
/// to: whose nonces to remember.
pub(crate) struct DpopTarget {
    key: DpopKey,
    origin: String,
}

impl DpopTarget {
    pub(crate) fn new(key: &DpopKey, url: &(impl Htu + ?Sized)) -> Option<DpopTarget> {
        Some(DpopTarget { key: key.clone(), origin: origin(url).ok()? })
    }
}

/// Sets the token on a request that has no `Authorization` header (the attach rule
/// never lets a request that has one get here).
#[inline]
pub(crate) fn set_token(headers: &mut HeaderMap, authorization: HeaderValue) {
    headers.insert(AUTHORIZATION, authorization);
}

/// A request that left with the token of `generation`, and its copy for a replay.
pub(crate) struct Attempt<R> {
    cache: TokenCache,
    generation: u64,
    replay: Option<R>,
    dpop: Option<DpopTarget>,
}

impl<R> Attempt<R> {
    /// `replay` is `None` when the request may not be replayed: retries are off, or
    /// its body cannot be sent again.
    #[inline]
    pub(crate) fn new(cache: TokenCache, generation: u64, replay: Option<R>) -> Self {
        Attempt { cache, generation, replay, dpop: None }
    }

    /// The request carries a DPoP proof: nonces the server sends are remembered, and a
    /// `use_dpop_nonce` answer is retried with the new nonce and the same token.
    pub(crate) fn with_dpop(mut self, dpop: Option<DpopTarget>) -> Self {
        self.dpop = dpop;
        self
    }

    /// Judges the answer: `Some` for the one retry, `None` when the answer stands (and
    /// then, if it refused the token, the cache has been told).
    #[inline]
    pub(crate) fn judge(self, status: StatusCode, headers: &HeaderMap) -> Option<Retry<R>> {
        // RFC 9449 §8.2, §9: a resource server may send a new nonce with any answer.
        let fresh_nonce = match (&self.dpop, headers.get(&DPOP_NONCE).and_then(|n| n.to_str().ok())) {
            (Some(dpop), Some(nonce)) => {
                dpop.key.remember_nonce(&dpop.origin, nonce);
                true
            }
            _ => false,
        };
        if !rejects_token(status, headers) {
            return None;
        }
        let use_nonce = fresh_nonce
            && headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .any(|v| memchr::memmem::find(v.as_bytes(), b"use_dpop_nonce").is_some());
        match self.replay {
            // RFC 9449 §9: the token is fine; the proof needs the server's nonce.
            Some(replay) if status == StatusCode::UNAUTHORIZED && use_nonce => {
                Some(Retry { cache: self.cache, generation: self.generation, replay, nonce: true })
            }
            Some(replay) if status == StatusCode::UNAUTHORIZED => {
                Some(Retry { cache: self.cache, generation: self.generation, replay, nonce: false })
            }
            _ => {
                self.cache.hint_rejected(self.generation);
                None
            }
        }
    }

    /// Whether a copy is kept for a replay.
    #[cfg(test)]
    pub(crate) fn is_replayable(&self) -> bool {
        self.replay.is_some()
    }
}

/// The one retry after a 401: the rejected token's generation and the copy to replay.
pub(crate) struct Retry<R> {
    cache: TokenCache,
    generation: u64,
    replay: R,
    /// Retried for a DPoP nonce: the same token, a new proof.
    nonce: bool,
}

impl<R: Replay> Retry<R> {
    /// The copy with a token other than the rejected one, from one forced refresh shared
    /// with every request that saw the same token rejected; `None` when there is no new
    /// token (the 401 stands).
    pub(crate) async fn authorize(self) -> Option<R::Request> {
        let token = if self.nonce {
            self.cache.token().await
        } else {
            self.cache.force_refresh_generation(self.generation).await
        };
        match token {
            Ok(token) => self.replay.authorize(&token),
            Err(error) => {
                tracing::debug!(%error, "the API answered 401; no new token to retry with");
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    use super::*;
    use crate::client::{CacheKey, FetchFuture, GrantKind, TokenResponse, TokenSource};

    /// Hands out `token-1`, `token-2`, … at once.
    pub(crate) struct Numbered {
        key: CacheKey,
        issued: u32,
    }

    impl Numbered {
        pub(crate) fn new() -> Numbered {
            let key = CacheKey::new("memory:", "tests", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
            Numbered { key, issued: 0 }
        }
    }

    impl TokenSource for Numbered {
        fn key(&self) -> &CacheKey {
            &self.key
        }

        fn fetch(&mut self) -> FetchFuture<'_> {
            self.issued += 1;
            let token = format!("token-{}", self.issued);
            Box::pin(async move { TokenResponse::bearer(token, Some(Duration::from_secs(3600))) })
        }
    }

    /// Hands out DPoP tokens `dpop-1`, `dpop-2`, … bound to its key.
    pub(crate) struct NumberedDpop {
        numbered: Numbered,
        pub(crate) key: DpopKey,
    }

    impl NumberedDpop {
        pub(crate) fn new() -> NumberedDpop {
            NumberedDpop { numbered: Numbered::new(), key: DpopKey::generate().unwrap() }
        }
    }

    impl TokenSource for NumberedDpop {
        fn key(&self) -> &CacheKey {
            &self.numbered.key
        }

        fn fetch(&mut self) -> FetchFuture<'_> {
            self.numbered.issued += 1;
            let body =
                format!(r#"{{"access_token":"dpop-{}","token_type":"DPoP","expires_in":3600}}"#, self.numbered.issued);
            Box::pin(async move { TokenResponse::parse(body.as_bytes()) })
        }

        fn dpop_key(&self) -> Option<&DpopKey> {
            Some(&self.key)
        }
    }

    /// A cache that holds `dpop-1`, and its key.
    pub(crate) async fn warm_dpop_cache() -> (TokenCache, DpopKey) {
        let source = NumberedDpop::new();
        let key = source.key.clone();
        let cache = TokenCache::new(source).unwrap();
        let token = cache.token().await.unwrap();
        assert_eq!((token.expose(), token.header_value().to_str().unwrap()), ("dpop-1", "DPoP dpop-1"));
        (cache, key)
    }

    /// The claims of a proof, unverified (the interop tests verify proofs).
    pub(crate) fn proof_claims(proof: &str) -> serde_json::Value {
        use base64::Engine as _;
        let payload = proof.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    /// A cache that holds `token-1`.
    pub(crate) async fn warm_cache() -> TokenCache {
        let cache = TokenCache::new(Numbered::new()).unwrap();
        assert_eq!(cache.token().await.unwrap().expose(), "token-1");
        cache
    }

    /// Waits for the background refresh to bring the token of `generation`.
    pub(crate) async fn until_generation(cache: &TokenCache, generation: u64) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while cache.cached().is_none_or(|token| token.generation() < generation) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no token of generation {generation}"));
    }

    /// A replayable copy that is just headers.
    struct Headers(HeaderMap);

    impl Replay for Headers {
        type Request = HeaderMap;

        fn authorize(mut self, token: &AccessToken) -> Option<HeaderMap> {
            set_token(&mut self.0, token.header_value().clone());
            Some(self.0)
        }
    }

    fn grpc(code: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers
    }

    fn copy() -> Option<Headers> {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        Some(Headers(headers))
    }

    #[test]
    fn a_401_or_a_grpc_unauthenticated_rejects_the_token() {
        assert!(rejects_token(StatusCode::UNAUTHORIZED, &HeaderMap::new()));
        assert!(rejects_token(StatusCode::OK, &grpc("16")), "a trailers-only gRPC UNAUTHENTICATED");
        for (status, headers) in [
            (StatusCode::OK, HeaderMap::new()),
            (StatusCode::FORBIDDEN, HeaderMap::new()),
            (StatusCode::OK, grpc("0")),
            (StatusCode::OK, grpc("7")),
            (StatusCode::OK, grpc("160")),
        ] {
            assert!(!rejects_token(status, &headers), "{status} {headers:?}");
        }
    }

    #[test]
    fn only_a_body_known_to_be_empty_can_be_rebuilt_for_a_replay() {
        assert!(is_empty_body(&Empty::<Bytes>::new()));
        assert!(is_empty_body(&Full::new(Bytes::new())));
        assert!(is_empty_body(&String::new()));
        assert!(!is_empty_body(&Full::new(Bytes::from_static(b"{}"))));
        assert!(!is_empty_body(&String::from("x")));
    }

    #[tokio::test]
    async fn an_answer_that_accepts_the_token_stands_and_asks_for_nothing() {
        let cache = warm_cache().await;
        for (status, headers) in [(StatusCode::OK, HeaderMap::new()), (StatusCode::FORBIDDEN, grpc("7"))] {
            assert!(Attempt::new(cache.clone(), 1, copy()).judge(status, &headers).is_none());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.fetch_attempts(), 1);
    }

    #[tokio::test]
    async fn a_401_to_a_replayable_request_gives_one_retry_carrying_a_new_token() {
        let cache = warm_cache().await;
        let attempt = Attempt::new(cache.clone(), 1, copy());
        assert!(attempt.is_replayable());
        let retry = attempt.judge(StatusCode::UNAUTHORIZED, &HeaderMap::new()).expect("a retry");
        let replayed = retry.authorize().await.expect("a new token");
        assert_eq!(replayed["authorization"], "Bearer token-2");
        assert!(replayed["authorization"].is_sensitive());
        assert_eq!(replayed["accept"], "application/json", "the rest of the copy is kept");
        assert_eq!(cache.fetch_attempts(), 2);
    }

    #[tokio::test]
    async fn requests_that_saw_the_same_token_rejected_share_one_refresh() {
        let cache = warm_cache().await;
        let first = Attempt::new(cache.clone(), 1, copy()).judge(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        let second = Attempt::new(cache.clone(), 1, copy()).judge(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        let (first, second) = tokio::join!(first.unwrap().authorize(), second.unwrap().authorize());
        assert_eq!(first.unwrap()["authorization"], "Bearer token-2");
        assert_eq!(second.unwrap()["authorization"], "Bearer token-2");
        assert_eq!(cache.fetch_attempts(), 2);
    }

    #[tokio::test]
    async fn a_401_to_a_request_that_cannot_be_replayed_stands_and_the_cache_refreshes() {
        let cache = warm_cache().await;
        let attempt = Attempt::<Headers>::new(cache.clone(), 1, None);
        assert!(!attempt.is_replayable());
        assert!(attempt.judge(StatusCode::UNAUTHORIZED, &HeaderMap::new()).is_none());
        until_generation(&cache, 2).await;
    }

    #[tokio::test]
    async fn a_grpc_unauthenticated_is_never_replayed_but_the_cache_refreshes() {
        let cache = warm_cache().await;
        assert!(Attempt::new(cache.clone(), 1, copy()).judge(StatusCode::OK, &grpc("16")).is_none());
        until_generation(&cache, 2).await;
    }

    #[tokio::test]
    async fn without_a_new_token_the_401_stands() {
        let cache = warm_cache().await;
        let retry = Attempt::new(cache.clone(), 1, copy()).judge(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        assert!(retry.unwrap().authorize().await.is_some());
        // The fresh token is refused too, within the cooldown: no second forced refresh.
        let retry = Attempt::new(cache.clone(), 2, copy()).judge(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        assert!(retry.unwrap().authorize().await.is_none());
        assert_eq!(cache.fetch_attempts(), 2);
    }
}
