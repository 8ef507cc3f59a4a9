//! What every handler answers with: the response and body types, and the
//! helpers that build a response. The router ([`super`]) decides which
//! handler answers; handlers import these from here.

#![forbid(unsafe_code)]

use crate::metrics::exposition::Format;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;

/// The body of every response: whole, or streamed for `/metrics`.
pub(super) type HttpBody = UnsyncBoxBody<Bytes, Infallible>;

/// The response type of every handler.
pub(super) type HttpResponse = Response<HttpBody>;

/// A response with `body` of `content_type`.
pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    respond_with(status, content_type, Full::new(body.into()).boxed_unsync())
}

/// A response with a body of any kind.
pub(super) fn respond_with(
    status: StatusCode,
    content_type: &'static str,
    body: HttpBody,
) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A plain-text response.
pub(super) fn text(status: StatusCode, body: &str) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

/// A refusal of the web gate, or of a request over a limit: `body` with
/// `status`, and `Connection: close`, which makes hyper close the
/// connection once it is sent.
pub(super) fn refusal(status: StatusCode, body: &str) -> HttpResponse {
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The exposition format the request's `Accept` header asks for.
pub(super) fn response_format(request: &Request<Incoming>) -> Format {
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok());
    Format::negotiate(accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_close_the_connection() {
        let refused = refusal(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get(CONNECTION).unwrap(), "close");
    }
}
