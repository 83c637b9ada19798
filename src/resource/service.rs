//! The Tower service that serves a [`ProtectedResourceMetadata`] document.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower_service::Service;

use super::ProtectedResourceMetadata;

/// Serves a [`ProtectedResourceMetadata`] document, without authentication, at its
/// [`paths`](ProtectedResourceMetadata::paths); other paths get 404.
///
/// - `GET` and `HEAD`: 200, `application/json`, `Cache-Control: public, max-age=…`;
/// - `OPTIONS`: 204, for a browser's CORS preflight (MCP clients send an
///   `MCP-Protocol-Version` header);
/// - other methods: 405 with `Allow`.
///
/// The document is public (RFC 9728 §3), so any origin may read it
/// (`Access-Control-Allow-Origin: *`). Mount it beside the bearer layer, not behind it.
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadataService {
    metadata: ProtectedResourceMetadata,
    cache_control: HeaderValue,
}

const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");

impl ProtectedResourceMetadataService {
    /// Serves `metadata`.
    pub fn new(metadata: ProtectedResourceMetadata) -> Self {
        let cache_control = HeaderValue::from_str(&format!("public, max-age={}", metadata.max_age().as_secs()))
            .unwrap_or(HeaderValue::from_static("no-cache"));
        ProtectedResourceMetadataService { metadata, cache_control }
    }

    /// The document served.
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.metadata
    }

    fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        if !self.metadata.serves(path) {
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        match *method {
            Method::GET | Method::HEAD => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.metadata.json().len()));
                if *method == Method::GET {
                    *response.body_mut() = Full::new(self.metadata.json().clone());
                }
            }
            Method::OPTIONS => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW);
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
                *response.status_mut() = StatusCode::NO_CONTENT;
            }
            _ => {
                headers.insert(header::ALLOW, ALLOW);
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            }
        }
        response
    }
}

impl<B> Service<Request<B>> for ProtectedResourceMetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().path())))
    }
}
