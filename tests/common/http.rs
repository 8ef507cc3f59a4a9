//! The one HTTP/1.1 client of the tests: a request on a new connection
//! with `Connection: close`, read to its end and parsed into status,
//! headers and (de-chunked) body. [`request`] is async, for tests on a
//! tokio runtime; [`blocking_request`] is for plain threads, which go on
//! measuring when the exporter stalls its runtime's workers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long [`request`] may take in all.
const ASYNC_LIMIT: Duration = Duration::from_secs(30);

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Fails the test unless the `Content-Type` starts with `prefix`.
    pub fn assert_content_type(&self, prefix: &str) {
        let content_type = self.header("content-type");
        assert!(
            content_type.is_some_and(|value| value.starts_with(prefix)),
            "Content-Type {content_type:?}, not {prefix}"
        );
    }
}

/// The value of an `Authorization: Basic` header for `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The bytes of a request; `target` is sent as written, so tests can send
/// raw bytes.
fn request_bytes(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    head.push_str(body);
    head.into_bytes()
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response; `target` is sent as written, so tests can send raw bytes.
/// Fails the test when the exporter does not answer within 30 s or the
/// answer is not well-formed HTTP.
pub async fn request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    raw_request(
        address,
        &request_bytes(address, method, target, headers, ""),
    )
    .await
}

/// Sends `bytes` as they are (a request that may hold any byte, such as a
/// header value that is not UTF-8) on a new connection and reads the whole
/// response, as [`request`] does.
pub async fn raw_request(address: SocketAddr, bytes: &[u8]) -> Response {
    let connect = async {
        tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to exporter")
    };
    exchange(connect, bytes).await
}

/// [`request`] from the loopback address `source` (any of 127.0.0.0/8
/// reaches an exporter on 127.0.0.1), as a second client host would.
pub async fn request_from(
    source: std::net::IpAddr,
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let connect = async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .unwrap_or_else(|error| panic!("bind {source}: {error}"));
        socket.connect(address).await.expect("connect to exporter")
    };
    exchange(
        connect,
        &request_bytes(address, method, target, headers, ""),
    )
    .await
}

/// Sends `bytes` on the stream `connect` opens and reads the whole
/// response, within [`ASYNC_LIMIT`] in all.
async fn exchange(
    connect: impl std::future::Future<Output = tokio::net::TcpStream>,
    bytes: &[u8],
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut stream = connect.await;
        stream.write_all(bytes).await.expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        parse_response(&raw).unwrap_or_else(|error| panic!("{error}"))
    };
    tokio::time::timeout(ASYNC_LIMIT, work)
        .await
        .unwrap_or_else(|_| panic!("exporter answered within {ASYNC_LIMIT:?}"))
}

/// One request on a blocking socket; connecting, sending and each read
/// wait at most `limit`. An error says which step failed.
pub fn blocking_request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
    limit: Duration,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&address, limit)
        .map_err(|error| format!("connect {address}: {error}"))?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(&request_bytes(address, method, target, headers, body))
        .map_err(|error| format!("send: {error}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|error| format!("read: {error}"))?;
    parse_response(&raw)
}

/// `GET target` on a blocking socket.
pub fn blocking_get(
    address: SocketAddr,
    target: &str,
    limit: Duration,
) -> Result<Response, String> {
    blocking_request(address, "GET", target, &[], "", limit)
}

/// Parses a whole response: status line, headers, and a body that is
/// de-chunked when `Transfer-Encoding: chunked`.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = find(raw, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "HTTP response has no header block: {:?}",
            String::from_utf8_lossy(raw)
        )
    })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    // Chunk sizes count bytes, and a chunk may end inside a UTF-8
    // character: decode the text only once the chunks are joined.
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Where `needle` first starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Joins the chunks of a chunked body. A malformed or cut-short body is an
/// error: a lenient decoder would hide a broken response.
pub fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or_else(|| {
            format!(
                "chunked body ends without its last chunk: {} bytes after {} decoded",
                body.len(),
                out.len()
            )
        })?;
        let size_line = String::from_utf8_lossy(&body[..line_end]);
        // A chunk extension (`;name=value`) follows the size.
        let size_text = size_line.split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text.trim(), 16)
            .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
        let rest = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(format!(
                "a chunk of {size} bytes is cut short or not followed by CRLF"
            ));
        }
        out.extend_from_slice(&rest[..size]);
        body = &rest[size + 2..];
    }
}
