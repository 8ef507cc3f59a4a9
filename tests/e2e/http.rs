//! Just enough HTTP/1.1 for the end-to-end test: Prometheus' and
//! Alertmanager's APIs through the tests' common client, the request side
//! of a webhook receiver, and the URL coding both need.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one request may take to connect, send or read.
const IO_LIMIT: Duration = Duration::from_secs(15);
/// The largest request head the webhook receiver reads.
const MAX_HEAD: usize = 64 * 1024;

/// `GET path` with `Connection: close`, by the tests' common client: the
/// status and the (de-chunked) body.
pub fn get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let response = crate::common::http::blocking_request(
        address,
        "GET",
        path,
        &[("Accept", "application/json")],
        "",
        IO_LIMIT,
    )?;
    Ok((response.status, response.body))
}

/// `GET path` of a JSON API answering 200.
pub fn get_json(address: SocketAddr, path: &str) -> Result<Value, String> {
    let (status, body) = get(address, path)?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|error| format!("{error}: {body}"))
}

/// Reads one request with a `Content-Length` body, as Alertmanager's
/// webhook notifier sends them: its path and body.
pub fn read_request(stream: &mut TcpStream) -> Result<(String, String), String> {
    set_timeouts(stream)?;
    let mut raw = Vec::new();
    let mut buffer = [0; 8192];
    let split = loop {
        if let Some(split) = crate::common::http::find(&raw, b"\r\n\r\n") {
            break split;
        }
        if raw.len() > MAX_HEAD {
            return Err("request head too long".to_owned());
        }
        let read = stream
            .read(&mut buffer)
            .map_err(|error| format!("read: {error}"))?;
        if read == 0 {
            return Err("connection closed in the request head".to_owned());
        }
        raw.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .ok_or_else(|| format!("bad request line: {head}"))?
        .to_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("no Content-Length: {head}"))?;
    let mut body = raw[split + 4..].to_vec();
    if body.len() < length {
        let mut rest = vec![0; length - body.len()];
        stream
            .read_exact(&mut rest)
            .map_err(|error| format!("read body: {error}"))?;
        body.extend_from_slice(&rest);
    }
    String::from_utf8(body)
        .map(|body| (path, body))
        .map_err(|error| error.to_string())
}

/// Answers `200 OK` with no body and closes the connection.
pub fn respond_ok(stream: &mut TcpStream) {
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

fn set_timeouts(stream: &TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(IO_LIMIT))
        .and_then(|()| stream.set_write_timeout(Some(IO_LIMIT)))
        .map_err(|error| error.to_string())
}

/// The value of header `name` (lower case) in an HTTP head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// All but the unreserved characters of RFC 3986: what a query value
/// escapes.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn url_encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// The decoded query parameters of `url`, in order.
pub fn query_params(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(name), url_decode(value))
        })
        .collect()
}

/// Undoes `+` (a space in a query) and `%XX`; malformed escapes stay.
fn url_decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[test]
fn url_coding_and_dechunking() {
    assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    assert_eq!(
        query_params("http://127.0.0.1:1/probe?module=tcp_connect&target=127.0.0.1%3A80&x=a+b%2"),
        [
            ("module".to_owned(), "tcp_connect".to_owned()),
            ("target".to_owned(), "127.0.0.1:80".to_owned()),
            ("x".to_owned(), "a b%2".to_owned()),
        ]
    );
    assert!(query_params("http://127.0.0.1:1/metrics").is_empty());
    assert_eq!(
        crate::common::http::dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
        b"abcde"
    );
    assert_eq!(
        header("HTTP/1.1 200 OK\r\nContent-Length: 12", "content-length"),
        Some("12")
    );
}
