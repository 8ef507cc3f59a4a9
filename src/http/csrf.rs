//! Refuses state-changing requests that a browser could be tricked into
//! sending: cross-site request forgery against `POST /-/reload`.
//!
//! A page on any site can make a visitor's browser POST a form to the
//! exporter, which the visitor's network can reach and the attacker's
//! cannot. Such a request has one of these marks, and is answered 403:
//!
//! - an `Origin` header (or, without one, a `Referer`) naming another
//!   host and port than the request's `Host` (`Origin: null` included);
//! - `Sec-Fetch-Site: cross-site` or `same-site`;
//! - a body typed as a form, `application/x-www-form-urlencoded`,
//!   `multipart/form-data` or `text/plain`: the only types a form, or a
//!   "simple" cross-origin `fetch` that skips the CORS preflight, can send.
//!
//! `curl -X POST`, Prometheus tooling and other non-browser clients send
//! none of these and pass, as does a same-origin request. `GET` and
//! `HEAD` change nothing and are never checked.

#![forbid(unsafe_code)]

use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, ORIGIN, REFERER};
use hyper::{Method, Request};

/// Why `request` must be refused, or `None` when it may proceed.
pub(super) fn refusal<B>(request: &Request<B>) -> Option<String> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let headers = request.headers();
    if let Some(kind) = form_content_type(headers) {
        return Some(format!(
            "refused: a request body of type {kind} is what a browser form sends, and this \
             endpoint changes state; send no body (curl -X POST) or another content type"
        ));
    }
    let header = |name| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
    };
    if let Some(site) = header("sec-fetch-site")
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Some(format!(
            "refused: a {site} request from a browser may not change state (Sec-Fetch-Site)"
        ));
    }
    let (name, source) = match (header(ORIGIN.as_str()), header(REFERER.as_str())) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return None,
    };
    let host = header(HOST.as_str()).unwrap_or_default();
    match authority(source) {
        Some(from) if !host.is_empty() && same_authority(&from, host) => None,
        _ => Some(format!(
            "refused: {name} {source:?} is another site than this exporter ({host:?}), \
             and a cross-site request may not change state"
        )),
    }
}

/// The form content type of the body, if it has one.
fn form_content_type(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(CONTENT_TYPE)?;
    let Ok(value) = value.to_str() else {
        return None;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ]
    .into_iter()
    .find(|kind| media.eq_ignore_ascii_case(kind))
}

/// The `host[:port]` of an origin or URL, with the scheme's default port
/// made explicit: `http://a` is `a:80`. `None` for `null` and for what is
/// not an http(s) URL.
fn authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials in a Referer are not part of the site.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some(with_port(authority, default_port))
}

/// `host` with `default_port` when it names none; lowercase.
fn with_port(host: &str, default_port: &str) -> String {
    let has_port = match host.rfind(']') {
        Some(close) => host[close..].contains(':'),
        None => host.contains(':'),
    };
    let host = host.to_ascii_lowercase();
    if has_port {
        host
    } else {
        format!("{host}:{default_port}")
    }
}

/// Whether the origin's `host:port` is the `Host` header's. A `Host`
/// without a port is taken with the origin's port: the exporter cannot
/// tell which default the client assumed.
fn same_authority(origin: &str, host: &str) -> bool {
    let port = origin.rsplit_once(':').map_or("", |(_, port)| port);
    origin == with_port(host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Option<String> {
        let mut request = Request::builder().method(Method::POST).uri("/-/reload");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        refusal(&request.body(()).unwrap())
    }

    const HOST_HEADER: (&str, &str) = ("host", "127.0.0.1:9215");

    #[test]
    fn non_browser_and_same_origin_posts_pass() {
        assert_eq!(post(&[HOST_HEADER]), None, "curl -X POST");
        assert_eq!(post(&[]), None, "no Host either");
        assert_eq!(
            post(&[HOST_HEADER, ("origin", "http://127.0.0.1:9215")]),
            None
        );
        assert_eq!(
            post(&[
                ("host", "Exporter.example"),
                ("origin", "http://exporter.example")
            ]),
            None
        );
        assert_eq!(
            post(&[
                ("host", "[::1]:9215"),
                ("referer", "http://[::1]:9215/?x=1")
            ]),
            None
        );
        assert_eq!(
            post(&[HOST_HEADER, ("content-type", "application/json")]),
            None
        );
        assert_eq!(
            post(&[HOST_HEADER, ("sec-fetch-site", "same-origin")]),
            None
        );
        let get = Request::builder()
            .uri("/")
            .header("origin", "http://evil.example")
            .body(())
            .unwrap();
        assert_eq!(refusal(&get), None, "GET changes nothing");
    }

    #[test]
    fn cross_site_and_form_posts_are_refused() {
        for headers in [
            &[HOST_HEADER, ("origin", "http://evil.example")][..],
            &[HOST_HEADER, ("origin", "null")],
            &[HOST_HEADER, ("origin", "http://127.0.0.1:9216")],
            &[HOST_HEADER, ("referer", "http://evil.example/page")],
            &[
                HOST_HEADER,
                ("referer", "http://127.0.0.1:9215@evil.example/"),
            ],
            &[("origin", "http://127.0.0.1:9215")],
            &[HOST_HEADER, ("sec-fetch-site", "cross-site")],
            &[
                HOST_HEADER,
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &[
                HOST_HEADER,
                ("content-type", "Multipart/Form-Data; boundary=x"),
            ],
            &[HOST_HEADER, ("content-type", "text/plain;charset=UTF-8")],
        ] {
            let refusal = post(headers).unwrap_or_else(|| panic!("{headers:?} passed"));
            assert!(refusal.starts_with("refused: "), "{refusal}");
            assert!(!refusal.contains('\n'), "{refusal}");
        }
    }
}
