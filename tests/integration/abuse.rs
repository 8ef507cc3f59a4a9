//! What a browser or a stranger can do to the exporter: forge a reload
//! from another site, hold connections open (slowloris, or more than
//! `--web.max-connections`), send huge heads and bodies, and read other
//! clients' probe logs. Each is refused or bounded.

use crate::common;

use common::{ExporterProcess, TestExporter, request};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_and_form_reloads_are_refused_and_others_work() {
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    let address = exporter.address;
    let own = format!("http://{address}");
    for headers in [
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")],
        &[("Referer", "http://evil.example/attack.html")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &[("Content-Type", "text/plain"), ("Origin", own.as_str())],
        &[("Content-Type", "multipart/form-data; boundary=x")],
    ] {
        for method in ["POST", "PUT"] {
            let answer = request(address, method, "/-/reload", headers).await;
            assert_eq!(answer.status, 403, "{method} {headers:?}: {}", answer.body);
            assert!(answer.body.starts_with("refused: "), "{}", answer.body);
            assert_eq!(answer.body.lines().count(), 1, "{}", answer.body);
        }
    }
    let referer = format!("{own}/");
    for headers in [
        &[][..],
        &[("Origin", own.as_str())],
        &[("Referer", referer.as_str())],
        &[("Content-Type", "application/json")],
        &[("Sec-Fetch-Site", "same-origin"), ("Origin", own.as_str())],
    ] {
        let answer = request(address, "POST", "/-/reload", headers).await;
        assert_eq!(answer.status, 200, "{headers:?}: {}", answer.body);
        assert_eq!(answer.body, "config reloaded\n");
    }
}

/// Headers a browser would never send that today's check read past: a
/// form type whose parameters hold bytes that are not ASCII, and a second
/// `Content-Type`, `Origin`, `Referer`, `Sec-Fetch-Site` or `Host` behind
/// a harmless first one. Each is sent as raw bytes, as an attacker's
/// client can, and must be refused like a forged form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_and_repeated_headers_of_a_reload_are_refused() {
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    let address = exporter.address;
    let own = format!("http://{address}");
    let host = format!("Host: {address}\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "form type with a non-ASCII parameter",
            b"Content-Type: text/plain;x=\xff\r\n".to_vec(),
        ),
        (
            "urlencoded form with UTF-8 in a parameter",
            "Content-Type: application/x-www-form-urlencoded; charset=\u{e9}\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "non-ASCII type",
            b"Content-Type: \xfftext/plain\r\n".to_vec(),
        ),
        (
            "a list of content types",
            b"Content-Type: application/json, text/plain\r\n".to_vec(),
        ),
        (
            "two content types",
            b"Content-Type: application/json\r\nContent-Type: text/plain\r\n".to_vec(),
        ),
        (
            "two origins",
            format!("Origin: {own}\r\nOrigin: http://evil.example\r\n").into_bytes(),
        ),
        (
            "two referers",
            format!("Referer: {own}/\r\nReferer: http://evil.example/\r\n").into_bytes(),
        ),
        (
            "two Sec-Fetch-Site",
            b"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Site: cross-site\r\n".to_vec(),
        ),
        (
            "non-ASCII Sec-Fetch-Site",
            b"Sec-Fetch-Site: cross-site\xff\r\n".to_vec(),
        ),
        (
            "two hosts",
            format!("Origin: {own}\r\nHost: evil.example\r\n").into_bytes(),
        ),
    ];
    let mut passed = Vec::new();
    for (what, headers) in cases {
        for method in ["POST", "PUT"] {
            let mut raw = format!("{method} /-/reload HTTP/1.1\r\n{host}").into_bytes();
            raw.extend_from_slice(&headers);
            raw.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
            let answer = common::http::raw_request(address, &raw).await;
            if answer.status != 403 {
                passed.push(format!(
                    "{method} with {what}: {} {}",
                    answer.status, answer.body
                ));
                continue;
            }
            assert!(answer.body.starts_with("refused: "), "{}", answer.body);
            assert_eq!(answer.body.lines().count(), 1, "{}", answer.body);
        }
    }
    assert!(passed.is_empty(), "not refused:\n{}", passed.join("\n"));
    // The same headers once each, readable, still pass.
    let raw = format!(
        "POST /-/reload HTTP/1.1\r\n{host}Origin: {own}\r\nReferer: {own}/\r\n\
         Sec-Fetch-Site: same-origin\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = common::http::raw_request(address, raw.as_bytes()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disclosure_flag_hides_config_logs_and_history() {
    let target = common::closed_port();
    for hide in [false, true] {
        let builder = Exporter::builder().hide_config_and_logs(hide);
        let exporter = TestExporter::embedded(builder).await;
        let probed = exporter
            .get(&format!("/probe?target={target}&debug=true"))
            .await;
        assert_eq!(probed.status, 200);
        assert_eq!(
            probed.body.contains("prober: tcp_halfopen"),
            !hide,
            "{}",
            probed.body
        );
        let config = exporter.get("/config").await;
        let log = exporter.get("/logs?id=1").await;
        let landing = exporter.get("/").await.body;
        if hide {
            assert_eq!(config.status, 403, "{}", config.body);
            assert_eq!(
                config.body,
                "/config is turned off by --web.hide-config-and-logs\n"
            );
            assert_eq!(log.status, 403, "{}", log.body);
            assert!(!landing.contains("/logs?id="), "{landing}");
            assert!(!landing.contains(&target.to_string()), "{landing}");
            assert!(!landing.contains("href=\"/config\""), "{landing}");
            assert!(landing.contains("turned off"), "{landing}");
        } else {
            // The control: the same requests show what the flag hides.
            assert_eq!(config.status, 200);
            assert_eq!(log.status, 200, "{}", log.body);
            assert!(landing.contains("/logs?id=1"), "{landing}");
            assert!(landing.contains(&target.to_string()), "{landing}");
        }
    }
}

/// An exec module whose command line holds a secret, as a password
/// passed as an argument would be.
const SECRET_CONFIG: &str = "modules:
  secret:
    prober: exec
    timeout: 5s
    exec:
      command: [/bin/true, --password=hunter2-in-argv]
";

/// The same, broken: a reload of it fails on a value holding a secret.
const BROKEN_SECRET_CONFIG: &str = "modules:
  secret:
    prober: exec
    timeout: hunter2-in-timeout
    exec:
      command: [/bin/true, --password=hunter2-in-argv]
";

#[test]
fn the_disclosure_flag_keeps_command_lines_and_reload_errors_out_of_answers() {
    for hide in [false, true] {
        let dir = common::TempDir::new("hide-config");
        let config = dir.write("synack.yml", SECRET_CONFIG);
        let mut args = vec!["--config.file", config.to_str().unwrap()];
        if hide {
            args.push("--web.hide-config-and-logs");
        }
        let exporter = ExporterProcess::start(&args);
        let get = |path: &str| {
            common::http::blocking_get(exporter.address, path, Duration::from_secs(10)).unwrap()
        };
        let debug = get("/probe?module=secret&target=127.0.0.1:1&debug=true");
        assert_eq!(debug.status, 200, "{}", debug.body);
        // The steps stay, without the command's text.
        assert!(debug.body.contains("started process "), "{}", debug.body);
        assert!(debug.body.contains("probe succeeded"), "{}", debug.body);
        assert_eq!(
            debug.body.contains("hunter2-in-argv"),
            !hide,
            "hide={hide}: {}",
            debug.body
        );

        std::fs::write(&config, BROKEN_SECRET_CONFIG).unwrap();
        let reload = common::http::blocking_request(
            exporter.address,
            "POST",
            "/-/reload",
            &[],
            "",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(reload.status, 500, "{}", reload.body);
        assert_eq!(
            reload.body.contains("hunter2-in-timeout"),
            !hide,
            "hide={hide}: {}",
            reload.body
        );
        if hide {
            assert_eq!(
                reload.body,
                "config reload failed, the old config stays in force; \
                 the exporter's log says why\n"
            );
        }
        // The log has the whole error either way.
        let logged = exporter.logs_until("config reload failed");
        assert!(
            logged.last().unwrap().contains("hunter2-in-timeout"),
            "{logged:#?}"
        );
    }
}

/// Sends one keep-alive `GET /-/healthy` on `stream` and waits up to
/// `limit` for the start of an answer.
async fn healthy_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let _ = stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buffer = [0u8; 256];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buffer)).await,
        Ok(Ok(read)) if read > 0 && buffer.starts_with(b"HTTP/1.1 200")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_held_and_the_rest_wait_for_a_slot() {
    const MAX: usize = 4;
    const EXTRA: usize = 2;
    let exporter = TestExporter::embedded(Exporter::builder().max_connections(MAX)).await;
    let mut served = Vec::new();
    for _ in 0..MAX {
        let mut stream = TcpStream::connect(exporter.address).await.unwrap();
        assert!(healthy_within(&mut stream, Duration::from_secs(5)).await);
        served.push(stream);
    }
    // The kernel completes these handshakes, but the exporter does not
    // accept them while the first MAX stay open.
    let mut waiting = Vec::new();
    for _ in 0..EXTRA {
        waiting.push(TcpStream::connect(exporter.address).await.unwrap());
    }
    for stream in &mut waiting {
        assert!(
            !healthy_within(stream, Duration::from_millis(700)).await,
            "a connection past --web.max-connections was served"
        );
    }
    // Closing some lets as many waiting ones in.
    served.truncate(MAX - EXTRA);
    for stream in &mut waiting {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
        assert!(
            matches!(read, Ok(Ok(n)) if n > 0 && buffer.starts_with(b"HTTP/1.1 200")),
            "a waiting connection was served once a slot was free: {read:?}"
        );
    }
}

/// How many descriptors process `pid` has open.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Polls `check` every 100 ms for up to `limit`.
async fn eventually(limit: Duration, check: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_within_the_header_timeout() {
    const CLIENTS: usize = 300;
    /// `HEADER_READ_TIMEOUT` in src/http/connection.rs, and slack for 300 closes.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    let exporter = ExporterProcess::start(&[]);
    let pid = exporter.pid();
    let address = exporter.address;
    // One request first, so the baseline holds what serving leaves open.
    let _ = request(address, "GET", "/-/healthy", &[]).await;
    let baseline = fd_count(pid);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("start the head");
            // One more header byte a second, never the end of the head;
            // the exporter's close ends the loop (bounded by the limit).
            let mut buffer = [0u8; 512];
            let until = Instant::now() + HEADER_TIMEOUT * 2;
            while Instant::now() < until {
                if stream.write_all(b"X").await.is_err() {
                    break;
                }
                let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    break;
                }
            }
            Instant::now()
        });
    }
    let mut last_closed = started;
    while let Some(closed) = clients.join_next().await {
        last_closed = last_closed.max(closed.unwrap());
    }
    let took = last_closed - started;
    assert!(
        took < HEADER_TIMEOUT + Duration::from_secs(4),
        "slowloris connections held for {took:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || fd_count(pid) <= baseline).await,
        "descriptors: {} after, {baseline} before",
        fd_count(pid)
    );
    assert_eq!(request(address, "GET", "/-/healthy", &[]).await.status, 200);
}

/// Sends `head`, then up to `body_bytes` of body in 1 MiB writes until the
/// exporter stops reading; returns the answer's first line, if any.
async fn send_huge(address: SocketAddr, head: &[u8], body_bytes: usize) -> String {
    let work = async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let _ = stream.write_all(head).await;
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0;
        while sent < body_bytes {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("done within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_and_heads_are_refused_without_buffering() {
    const BODY: usize = 100 << 20;
    const HEAD: usize = 1 << 20;
    let exporter = ExporterProcess::start(&[]);
    let pid = exporter.pid();
    let address = exporter.address;
    let _ = request(address, "GET", "/-/healthy", &[]).await;
    let baseline = common::resident_bytes(pid);

    let body_head = format!(
        "POST /-/reload HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let answer = send_huge(address, body_head.as_bytes(), BODY).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    // A body the handler accepts is never read either.
    let body_head = body_head.replace(
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    );
    let answer = send_huge(address, body_head.as_bytes(), BODY).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let mut head = b"GET /probe?target=".to_vec();
    head.extend(std::iter::repeat_n(b'a', HEAD));
    head.extend(b" HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    head.extend(std::iter::repeat_n(b'b', HEAD));
    let answer = send_huge(address, &head, 0).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    let growth = common::resident_bytes(pid).saturating_sub(baseline);
    assert!(
        growth < 16 << 20,
        "RSS grew by {growth} bytes after two 100 MB bodies and a 2 MB head"
    );
    assert_eq!(request(address, "GET", "/-/healthy", &[]).await.status, 200);
}
