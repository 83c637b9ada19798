use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::HeaderName;
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{Extensions, HeaderValue, Method, Request, Response, Uri, Version};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::AccessToken;
use super::retry::{Attempt, Replay, Retry, attach_token};

/// The error of [`ClientCredentials`](super::ClientCredentials), as Tower middleware
/// usually spells it: the inner service's error, or a [`TokenError`](super::TokenError).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BoxedResponse<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`ClientCredentials`](super::ClientCredentials).
    ///
    /// With a cached token, it polls the inner future in place: nothing is boxed. Only
    /// a cold cache (waiting for the first token) and a 401 retry take a boxed future.
    pub struct ClientCredentialsFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        stage: Stage<S, B>,
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<S, B>
    where
        S: Service<Request<B>>,
    {
        // The request is with the inner service; `attempt` is set when it carries a token.
        Sent { #[pin] future: S::Future, attempt: Option<Attempt<Resend<S, B>>> },
        // Waiting for the first token, or retrying after a 401.
        Boxed { future: BoxedResponse<S::Response> },
    }
}

impl<S, B> ClientCredentialsFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn sent(future: S::Future, attempt: Option<Attempt<Resend<S, B>>>) -> Self {
        ClientCredentialsFuture { stage: Stage::Sent { future, attempt } }
    }

    pub(crate) fn boxed(future: BoxedResponse<S::Response>) -> Self {
        ClientCredentialsFuture { stage: Stage::Boxed { future } }
    }
}

impl<S, B, ResBody> Future for ClientCredentialsFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.stage.as_mut().project() {
                StageProj::Sent { future, attempt } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    match attempt.take().and_then(|attempt| attempt.judge(response.status(), response.headers())) {
                        Some(retry) => this.stage.set(Stage::Boxed { future: Box::pin(resend(retry, response)) }),
                        None => return Poll::Ready(Ok(response)),
                    }
                }
                StageProj::Boxed { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

impl<S, B> fmt::Debug for ClientCredentialsFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the request: its headers may hold secrets.
        let stage = match &self.stage {
            Stage::Sent { attempt: Some(_), .. } => "inner, token attached",
            Stage::Sent { attempt: None, .. } => "inner",
            Stage::Boxed { .. } => "boxed",
        };
        f.debug_struct("ClientCredentialsFuture").field("state", &stage).finish()
    }
}

/// What the Tower layer keeps to send a request once more: a clone of the service
/// (made ready when needed) and a copy of the request head. The body is empty, so
/// `B::default()` rebuilds it.
pub(crate) struct Resend<S, B> {
    service: S,
    head: HeadCopy,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Resend<S, B> {
    #[inline]
    pub(crate) fn new(service: S, head: HeadCopy) -> Self {
        Resend { service, head, _body: PhantomData }
    }
}

impl<S, B: Default> Replay for Resend<S, B> {
    type Request = (S, Request<B>);

    fn authorize(self, token: &AccessToken) -> Option<(S, Request<B>)> {
        let mut request = self.head.into_request(B::default());
        let (method, uri) = (request.method().clone(), request.uri().clone());
        attach_token(request.headers_mut(), token, &method, &uri).ok()?;
        Some((self.service, request))
    }
}

/// A copy of a request head, kept in case the request is replayed.
///
/// `Parts::clone` would cost, on every request, for a replay that almost never happens:
/// two allocations for the header map, one more for each header value built from a
/// string (the first clone of such a `Bytes` moves it into a shared allocation), the
/// atomic counts of the URI's shared bytes, and the frees and counts again on drop. On
/// a GET that is a quarter of the layer's whole cost. So the text of an absolute URI
/// and every header name and value are copied into one buffer, and the URI and the map
/// are rebuilt only for a replay. The copy is exact: the same bytes, parsed by the same
/// parsers that accepted them.
pub(crate) struct HeadCopy {
    method: Method,
    uri: UriCopy,
    version: Version,
    extensions: Extensions,
    /// The URI's authority and path-and-query when [`UriCopy::Absolute`], then each
    /// header in order as: the name's length (`u32`, native-endian), the name, whether
    /// the value is sensitive (one byte), the value's length, the value.
    text: Vec<u8>,
}

enum UriCopy {
    /// An absolute URI (what an HTTP client sends): its scheme, and the lengths of its
    /// authority and path-and-query at the start of the text.
    Absolute { scheme: Scheme, authority: usize, path_and_query: usize },
    /// Any other form, kept as it is (boxed: rare, and the copy stays small).
    Kept(Box<Uri>),
}

/// Room for a typical head, so that the buffer is allocated once and never grows.
const TYPICAL_HEAD: usize = 256;

impl HeadCopy {
    /// Copies the head of `request` (before the token is set on it).
    #[inline]
    pub(crate) fn of<B>(request: &Request<B>) -> HeadCopy {
        let mut text = Vec::with_capacity(TYPICAL_HEAD);
        let target = request.uri();
        let uri = match (target.scheme(), target.authority(), target.path_and_query()) {
            // With a scheme, `path_and_query()` is `Some` only when it is not empty, so
            // `as_str()` is its exact text.
            (Some(scheme), Some(authority), Some(path_and_query)) => {
                text.extend_from_slice(authority.as_str().as_bytes());
                text.extend_from_slice(path_and_query.as_str().as_bytes());
                UriCopy::Absolute {
                    scheme: scheme.clone(),
                    authority: authority.as_str().len(),
                    path_and_query: path_and_query.as_str().len(),
                }
            }
            _ => UriCopy::Kept(Box::new(target.clone())),
        };
        for (name, value) in request.headers() {
            push_len_prefixed(&mut text, name.as_str().as_bytes());
            text.push(u8::from(value.is_sensitive()));
            push_len_prefixed(&mut text, value.as_bytes());
        }
        HeadCopy {
            method: request.method().clone(),
            uri,
            version: request.version(),
            extensions: request.extensions().clone(),
            text,
        }
    }

    /// The request again, with `body`.
    pub(crate) fn into_request<B>(self, body: B) -> Request<B> {
        let mut rest = self.text.as_slice();
        let uri = match self.uri {
            UriCopy::Absolute { scheme, authority, path_and_query } => {
                let authority_text;
                let path_and_query_text;
                (authority_text, rest) = rest.split_at(authority);
                (path_and_query_text, rest) = rest.split_at(path_and_query);
                let mut parts = uri::Parts::default();
                parts.scheme = Some(scheme);
                parts.authority = Some(Authority::try_from(authority_text).expect("a copied authority is valid"));
                parts.path_and_query =
                    Some(PathAndQuery::try_from(path_and_query_text).expect("a copied path and query is valid"));
                Uri::from_parts(parts).expect("a copied absolute URI is valid")
            }
            UriCopy::Kept(uri) => *uri,
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.extensions_mut() = self.extensions;
        let headers = request.headers_mut();
        while !rest.is_empty() {
            let name;
            let value;
            (name, rest) = split_len_prefixed(rest);
            let (&sensitive, tail) = rest.split_first().expect("a copied header has a sensitivity byte");
            (value, rest) = split_len_prefixed(tail);
            let name = HeaderName::from_bytes(name).expect("a copied header name is valid");
            let mut value = HeaderValue::from_bytes(value).expect("a copied header value is valid");
            value.set_sensitive(sensitive == 1);
            headers.append(name, value);
        }
        request
    }
}

#[inline]
fn push_len_prefixed(text: &mut Vec<u8>, bytes: &[u8]) {
    // A header name is at most 64 KiB; a value of 4 GiB cannot have been received or built.
    let len = u32::try_from(bytes.len()).expect("a header is shorter than 4 GiB");
    text.extend_from_slice(&len.to_ne_bytes());
    text.extend_from_slice(bytes);
}

fn split_len_prefixed(bytes: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = bytes.split_first_chunk::<4>().expect("a copied header has a length");
    rest.split_at(u32::from_ne_bytes(*len) as usize)
}

/// The one retry after a 401: the request again with a new token, or the 401 when
/// there is none.
pub(crate) async fn resend<S, B, ResBody>(
    retry: Retry<Resend<S, B>>,
    rejected: Response<ResBody>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    let Some((mut service, request)) = retry.authorize().await else {
        return Ok(rejected);
    };
    drop(rejected);
    std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
    service.call(request).await.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_copy_rebuilds_the_same_request_head() {
        #[derive(Clone, Debug, PartialEq)]
        struct Marker(u8);

        let mut secret = HeaderValue::from_static("session=s3cret");
        secret.set_sensitive(true);
        let mut request = Request::put("https://api.example/v1/orders?limit=10")
            .version(Version::HTTP_2)
            .header("accept", "application/json")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("cookie", secret)
            .header("x-empty", "")
            .header("x-obs-text", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
            .body(())
            .unwrap();
        request.extensions_mut().insert(Marker(7));

        let copy = HeadCopy::of(&request);
        let replayed = copy.into_request(());
        assert_eq!(replayed.method(), request.method());
        assert_eq!(replayed.uri(), request.uri());
        assert_eq!(replayed.version(), request.version());
        assert_eq!(replayed.extensions().get::<Marker>(), Some(&Marker(7)));
        let pairs = |request: &Request<()>| {
            request
                .headers()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone(), value.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&replayed), pairs(&request), "same headers, same order, same sensitivity");
        assert!(replayed.headers()["cookie"].is_sensitive());
    }

    #[test]
    fn a_head_copy_keeps_every_form_of_uri_exactly() {
        for text in [
            "https://api.example/v1/orders?limit=10",
            "https://api.example",
            "http://127.0.0.1:8080/",
            "http://[::1]:8080/x?",
            "https://user@api.example/a%20b?q=1&r=#fragment",
            "HTTPS://API.example/Case",
            "grpc+tls://api.example/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Check",
            "/?only=query",
            "*",
            "api.example:443",
        ] {
            let uri: Uri = text.parse().unwrap();
            let request = Request::get(uri.clone()).body(()).unwrap();
            let replayed = HeadCopy::of(&request).into_request(());
            let copy = replayed.uri();
            assert_eq!(copy, &uri, "{text}");
            assert_eq!(copy.to_string(), uri.to_string(), "{text}");
            assert_eq!(copy.scheme(), uri.scheme(), "{text}");
            assert_eq!(copy.authority(), uri.authority(), "{text}");
            assert_eq!(copy.path_and_query(), uri.path_and_query(), "{text}");
            assert_eq!(copy.query(), uri.query(), "{text}");
            assert!(replayed.headers().is_empty());
        }
    }

    #[test]
    fn a_head_copy_larger_than_its_first_buffer_is_whole() {
        let mut request = Request::get("https://api.example/").body(()).unwrap();
        for i in 0..40 {
            request.headers_mut().append("x-many", HeaderValue::from(i));
        }
        request.headers_mut().insert("x-long", HeaderValue::from_str(&"v".repeat(100_000)).unwrap());
        let replayed = HeadCopy::of(&request).into_request(());
        assert_eq!(replayed.headers(), request.headers());
        assert_eq!(replayed.headers().get_all("x-many").iter().count(), 40);
    }

    #[test]
    fn debug_never_shows_the_request() {
        let cache_free = ClientCredentialsFuture::<Echo, ()>::sent(std::future::ready(Ok(Response::new(()))), None);
        assert_eq!(format!("{cache_free:?}"), r#"ClientCredentialsFuture { state: "inner" }"#);
    }

    #[derive(Clone)]
    struct Echo;

    impl Service<Request<()>> for Echo {
        type Response = Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<()>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(())))
        }
    }
}
