//! Requests that hyper rejects before they reach a handler: a malformed
//! request line (400), and a request head over 65,536 bytes or with more
//! than 100 header fields (431; a long URI counts towards the head, so it
//! meets this limit before hyper's 414 for URIs over 65,534 bytes). Each
//! answer keeps its status and carries one line saying what is wrong.

use crate::common;

use common::TestExporter;
use std::net::SocketAddr;
use std::time::Duration;
use synack_exporter::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` as it is and reads until the exporter closes; returns the
/// status, the head and the body.
async fn raw_exchange(address: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let work = async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // The exporter may answer and close before it has read everything.
        let _ = stream.write_all(raw).await;
        let mut answer = Vec::new();
        // A reset after the answer still leaves the answer read.
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("the exporter answered within 10 s");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_rejects_get_their_status_and_a_one_line_reason() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let address = exporter.address;
    let long_uri = format!("/probe?target={}", "a".repeat(70_000));
    let many_headers: String = (0..101).map(|n| format!("X-Field-{n}: {n}\r\n")).collect();
    let large_header = format!("X-Large: {}\r\n", "b".repeat(100_000));
    let cases: [(&str, String, u16, &str); 5] = [
        (
            "a malformed request line",
            "GET /metrics HTTP/1.1 extra\r\nHost: x\r\n\r\n".to_owned(),
            400,
            "bad request",
        ),
        (
            "a space in the method",
            "G T /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            400,
            "bad request",
        ),
        (
            "a URI of 70,000 bytes",
            format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            431,
            "65536 bytes",
        ),
        (
            "101 header fields",
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{many_headers}\r\n"),
            431,
            "100 header fields",
        ),
        (
            "a header of 100,000 bytes",
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{large_header}\r\n"),
            431,
            "65536 bytes",
        ),
    ];
    let mut failures = Vec::new();
    for (what, raw, status, needle) in &cases {
        let (got, head, body) = raw_exchange(address, raw.as_bytes()).await;
        let one_line = body.ends_with('\n') && body.trim_end().lines().count() == 1;
        let length_matches = header(&head, "content-length") == Some(&body.len().to_string());
        if got != *status || !one_line || !body.contains(needle) || !length_matches {
            failures.push(format!(
                "{what}: want {status} with one line naming {needle:?}; got {got}, head {head:?}, body {body:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Our own answers are left alone: a 400 from a handler, and a HEAD
    // request's empty body.
    let ours = exporter.get("/probe").await;
    assert_eq!(ours.status, 400);
    assert!(ours.body.contains("target"), "{}", ours.body);
    let head = common::request(address, "HEAD", "/probe", &[]).await;
    assert_eq!((head.status, head.body.as_str()), (400, ""));
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
}

/// On a kept-alive connection, a bad second request still gets its reason,
/// after the first request's whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_after_a_good_one_on_one_connection_gets_its_reason() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let raw = "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nG T / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (status, _, rest) = raw_exchange(exporter.address, raw.as_bytes()).await;
    assert_eq!(status, 200);
    let (first_body, second) = rest
        .split_once("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("two answers: {rest:?}"));
    assert_eq!(first_body, "OK\n");
    assert!(second.starts_with("400 "), "{second:?}");
    let body = second.split_once("\r\n\r\n").map(|(_, body)| body);
    assert!(
        body.is_some_and(|body| body.starts_with("bad request") && body.ends_with('\n')),
        "{second:?}"
    );
}

/// The stated limit is the real one: a head of exactly 65,536 bytes is
/// served, one byte more is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limit_is_exactly_the_one_stated() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let head_of = |size: usize| {
        let start = "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
        let end = "\r\n\r\n";
        format!("{start}{}{end}", "p".repeat(size - start.len() - end.len()))
    };
    let (status, _, body) = raw_exchange(exporter.address, head_of(65_536).as_bytes()).await;
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    let (status, _, body) = raw_exchange(exporter.address, head_of(65_537).as_bytes()).await;
    assert_eq!(status, 431, "{body}");
}
