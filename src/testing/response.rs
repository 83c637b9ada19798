//! Response bodies and the few response shapes the issuer sends.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use hyper::body::{Frame, SizeHint};
use tokio::time::Interval;

/// A response body: a complete buffer, a streamed run of padding, or a dribble
/// that never ends. No `Debug`: it carries tokens.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Padded {
        prefix: Option<Bytes>,
        /// Bytes still to send, the prefix included.
        remaining: usize,
    },
    Dribble {
        interval: Interval,
        started: bool,
    },
}

/// The padding that [`Body::Padded`] streams, one slice of this at a time.
static PADDING: [u8; 16 * 1024] = [b' '; 16 * 1024];

impl Body {
    pub(crate) fn full(bytes: Bytes) -> Body {
        Body::Full(Some(bytes))
    }

    /// `prefix` followed by spaces up to `size` bytes in all.
    pub(crate) fn padded(prefix: Bytes, size: usize) -> Body {
        Body::Padded { prefix: Some(prefix), remaining: size }
    }

    /// A body that sends one byte now and one more every second, forever.
    pub(crate) fn dribble() -> Body {
        Body::Dribble { interval: tokio::time::interval(Duration::from_secs(1)), started: false }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = match self.get_mut() {
            Body::Full(bytes) => bytes.take(),
            Body::Padded { prefix, remaining } => match prefix.take() {
                Some(prefix) => {
                    *remaining -= prefix.len();
                    Some(prefix)
                }
                None if *remaining == 0 => None,
                None => {
                    let len = (*remaining).min(PADDING.len());
                    *remaining -= len;
                    Some(Bytes::from_static(&PADDING[..len]))
                }
            },
            Body::Dribble { interval, started } => {
                ready!(interval.poll_tick(cx));
                let byte: &'static [u8] = if *started { b" " } else { b"{" };
                *started = true;
                Some(Bytes::from_static(byte))
            }
        };
        Poll::Ready(chunk.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Padded { prefix, remaining } => prefix.is_none() && *remaining == 0,
            Body::Dribble { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Padded { remaining, .. } => SizeHint::with_exact(*remaining as u64),
            Body::Dribble { .. } => SizeHint::default(),
        }
    }
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Full(None));
    *response.status_mut() = status;
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
