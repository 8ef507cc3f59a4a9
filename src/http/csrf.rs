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
//!   "simple" cross-origin `fetch` that skips the CORS preflight, can send,
//!   whatever its parameters;
//! - what cannot be checked, and so could hide one of the above: a
//!   `Content-Type` that is not one `type/subtype`, or any header the
//!   check reads (`Content-Type`, `Origin`, `Referer`, `Sec-Fetch-Site`,
//!   `Host`) given twice or holding bytes other than printable ASCII.
//!   A browser never sends those; a script can, to slip a form type or a
//!   foreign origin past a check that read only the first value.
//!
//! `curl -X POST`, Prometheus tooling and other non-browser clients send
//! none of these and pass, as does a same-origin request. `GET` and
//! `HEAD` change nothing and are never checked.

#![forbid(unsafe_code)]

use hyper::header::HeaderMap;
use hyper::{Method, Request};

/// The headers the check reads, as they are named in its refusals. Each
/// must come once at most and hold printable ASCII only: a check that
/// read the first of two, or skipped a value it could not decode, would
/// let through what a browser never sends but an attacker's client can.
const READ: [&str; 5] = [
    "Content-Type",
    "Origin",
    "Referer",
    "Sec-Fetch-Site",
    "Host",
];

/// The form types: the only ones a form, or a "simple" cross-origin
/// `fetch` that skips the CORS preflight, can send.
const FORM_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Why `request` must be refused, or `None` when it may proceed.
pub(super) fn refusal<B>(request: &Request<B>) -> Option<String> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let headers = request.headers();
    let mut values = [None; READ.len()];
    for (value, name) in values.iter_mut().zip(READ) {
        match single(headers, name) {
            Ok(found) => *value = found,
            Err(refusal) => return Some(refusal),
        }
    }
    let [content_type, origin, referer, site, host] = values;
    if let Some(content_type) = content_type
        && let Some(refusal) = form_refusal(content_type)
    {
        return Some(refusal);
    }
    if let Some(site) = site
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Some(format!(
            "refused: a {site} request from a browser may not change state (Sec-Fetch-Site)"
        ));
    }
    let (name, source) = match (origin, referer) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return None,
    };
    let host = host.unwrap_or_default();
    match authority(source) {
        Some(from) if !host.is_empty() && same_authority(&from, host) => None,
        _ => Some(format!(
            "refused: {name} {source:?} is another site than this exporter ({host:?}), \
             and a cross-site request may not change state"
        )),
    }
}

/// The one value of header `name`, if it has one; a refusal when it
/// comes more than once or holds other bytes than printable ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let more = values.count();
    if more > 0 {
        return Err(format!(
            "refused: the request has {} {name} headers, and one that changes state may have \
             one at most",
            more + 1
        ));
    }
    value.to_str().map(Some).map_err(|_| {
        format!(
            "refused: the {name} header holds bytes other than printable ASCII, which a \
             request that changes state may not have"
        )
    })
}

/// Why a body of `content_type` is refused: a form type (whatever its
/// parameters), or a value that is not one `type/subtype` and so cannot
/// be told from a form type.
fn form_refusal(content_type: &str) -> Option<String> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let readable = media
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype));
    if !readable {
        return Some(format!(
            "refused: Content-Type {content_type:?} is not one media type (type/subtype), so it \
             cannot be told from a form's; send no body (curl -X POST) or one of another type"
        ));
    }
    let kind = FORM_TYPES
        .into_iter()
        .find(|kind| media.eq_ignore_ascii_case(kind))?;
    Some(format!(
        "refused: a request body of type {kind} is what a browser form sends, and this \
         endpoint changes state; send no body (curl -X POST) or another content type"
    ))
}

/// Whether `text` is an HTTP token (RFC 9110, section 5.6.2).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
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

    /// Requests built header by header, as given, so that a name may come
    /// twice and a value may hold any byte.
    fn post_raw(headers: &[(&str, &[u8])]) -> Option<String> {
        let mut request = Request::builder().method(Method::POST).uri("/-/reload");
        for (name, value) in headers {
            request = request.header(
                *name,
                hyper::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        refusal(&request.body(()).unwrap())
    }

    #[test]
    fn unreadable_and_repeated_headers_are_refused() {
        let own: &[u8] = b"http://127.0.0.1:9215";
        let host = ("host", &b"127.0.0.1:9215"[..]);
        for headers in [
            &[host, ("content-type", b"text/plain;x=\xff")][..],
            &[
                host,
                ("content-type", "text/plain; charset=\u{e9}".as_bytes()),
            ],
            &[host, ("content-type", b"application/json\xff")],
            &[host, ("content-type", b"application/json, text/plain")],
            &[host, ("content-type", b"json")],
            &[host, ("content-type", b"")],
            &[
                host,
                ("content-type", b"application/json"),
                ("content-type", b"text/plain"),
            ],
            &[host, ("origin", own), ("origin", b"http://evil.example")],
            &[host, ("origin", b"http://127.0.0.1:9215\xff")],
            &[host, ("referer", own), ("referer", b"http://evil.example/")],
            &[
                host,
                ("sec-fetch-site", b"same-origin"),
                ("sec-fetch-site", b"cross-site"),
            ],
            &[host, ("sec-fetch-site", b"cross-site\xff")],
            &[host, ("host", b"evil.example"), ("origin", own)],
            &[host, ("host", b"127.0.0.1:9215")],
        ] {
            let refusal = post_raw(headers).unwrap_or_else(|| panic!("{headers:?} passed"));
            assert!(refusal.starts_with("refused: "), "{refusal}");
            assert!(!refusal.contains('\n'), "{refusal}");
        }
        assert!(
            post_raw(&[host, ("origin", own), ("origin", own)])
                .unwrap()
                .contains("2 Origin headers")
        );
        // Each once, readable: passes, parameters and all.
        assert_eq!(
            post_raw(&[
                host,
                ("origin", own),
                ("content-type", b"application/json; charset=\"utf-8\""),
                ("sec-fetch-site", b"same-origin"),
            ]),
            None
        );
        // Headers the check does not read may come twice.
        assert_eq!(
            post_raw(&[host, ("accept", b"a/b"), ("accept", b"c/d")]),
            None
        );
    }
}
