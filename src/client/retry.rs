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

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Body;

use super::TokenCache;

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

    /// The request again, with `authorization` as its `Authorization` header.
    fn authorize(self, authorization: HeaderValue) -> Self::Request;
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
}

impl<R> Attempt<R> {
    /// `replay` is `None` when the request may not be replayed: retries are off, or
    /// its body cannot be sent again.
    #[inline]
    pub(crate) fn new(cache: TokenCache, generation: u64, replay: Option<R>) -> Self {
        Attempt { cache, generation, replay }
    }

    /// Judges the answer: `Some` for the one retry, `None` when the answer stands (and
    /// then, if it refused the token, the cache has been told).
    #[inline]
    pub(crate) fn judge(self, status: StatusCode, headers: &HeaderMap) -> Option<Retry<R>> {
        if !rejects_token(status, headers) {
            return None;
        }
        match self.replay {
            Some(replay) if status == StatusCode::UNAUTHORIZED => {
                Some(Retry { cache: self.cache, generation: self.generation, replay })
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
}

impl<R: Replay> Retry<R> {
    /// The copy with a token other than the rejected one, from one forced refresh shared
    /// with every request that saw the same token rejected; `None` when there is no new
    /// token (the 401 stands).
    pub(crate) async fn authorize(self) -> Option<R::Request> {
        match self.cache.force_refresh_generation(self.generation).await {
            Ok(token) => Some(self.replay.authorize(token.header_value().clone())),
            Err(error) => {
                tracing::debug!(%error, "the API answered 401; no new token to retry with");
                None
            }
        }
    }
}
