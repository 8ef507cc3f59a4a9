//! `/metrics` clients that send a request and never read the answer.
//!
//! Each such client must cost the exporter a bounded buffer, whatever the
//! number of scheduled targets, and be dropped once its writes have made no
//! progress for `--web.write-timeout`. The test runs alone in its own binary
//! so that the resident size it reads from `/proc/self/status` is this
//! exporter's and nothing else's.

mod common;

use common::scheduled::scheduled_targets;
use common::{TestExporter, sample};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Enough targets that a snapshot of their label sets per scrape (what the
/// exporter used to keep for each response) is megabytes per client.
const TARGETS: usize = 20_000;
/// Clients that never read.
const CLIENTS: usize = 30;
/// Short, so the test is quick; the default is 30 s.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// What one stalled client may cost: the exporter's bound is about 150 KB
/// (hyper's 64 KiB write buffer, one 64 KiB frame and the read and head
/// buffers, see `src/http/connection.rs`), and allocator slack comes on
/// top. A copy of the 20 000 label sets alone was 1.7 MB.
const PER_CLIENT_BOUND: u64 = 384 * 1024;

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The exporter's established connections: sockets in `/proc/net/tcp`
/// whose local port is `port` (the listening socket is not established).
/// Counting the process's descriptors instead was flaky: any unrelated
/// descriptor that closed during the test shifted the count.
fn established_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "01"
        })
        .count()
}

/// Scheduled targets on distinct 127.1.x.y addresses, all on one closed
/// port, probed once an hour: the test only needs their series.
fn config() -> String {
    let closed = common::closed_port().port();
    let list: Vec<String> = (0..TARGETS)
        .map(|n| format!("\"127.1.{}.{}:{closed}\"", n / 250, n % 250 + 1))
        .collect();
    format!(
        "targets:\n  - module: tcp_halfopen\n    interval: 1h\n    targets: [{}]\n",
        list.join(", ")
    )
}

/// A client with a small receive buffer, so that little of the answer
/// sits in kernel buffers and the exporter stalls early, which has sent
/// `GET /metrics` and reads nothing.
async fn stalled_client(address: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_nonblocking(true).unwrap();
    let _ = socket.connect(&address.into()); // EINPROGRESS; awaited below
    let stream = TcpStream::from_std(socket.into()).unwrap();
    stream.writable().await.unwrap();
    let mut stream = stream;
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

/// Reads until the server closes, giving up after `cap` bytes: a server
/// that keeps the connection would hand over the whole multi-megabyte
/// scrape, then wait for the next request.
async fn read_until_closed(mut stream: TcpStream, cap: usize) -> Result<usize, String> {
    let mut total = 0;
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) => return Ok(total),
            Ok(Ok(read)) => total += read,
            // A reset also means the exporter closed the connection.
            Ok(Err(_)) => return Ok(total),
            Err(_) => return Err(format!("still open after 20 s and {total} bytes")),
        }
        if total > cap {
            return Err(format!("read {total} bytes and the server kept sending"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_metrics_readers_cost_a_bounded_buffer_and_are_dropped() {
    let settings = Exporter::builder().write_timeout(WRITE_TIMEOUT);
    let exporter = TestExporter::with_config(&config(), settings).await;
    // One full scrape first, so the baseline includes what any scrape
    // leaves behind in the allocator.
    let full = exporter.get("/metrics").await;
    assert_eq!(full.status, 200);
    assert_eq!(
        sample(&full.body, "synack_exporter_scheduled_targets"),
        Some(TARGETS as f64)
    );
    assert_eq!(scheduled_targets(&full.body).len(), TARGETS);
    let scrape_bytes = full.body.len();
    assert!(scrape_bytes > 30_000_000, "{scrape_bytes} bytes");
    drop(full);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_rss = resident_bytes();
    let port = exporter.address.port();

    let connecting = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(stalled_client(exporter.address).await);
    }
    let connected_after = connecting.elapsed();
    // The exporter accepts asynchronously, so take the most connections
    // seen. Sample the resident size until the exporter has closed them
    // all, or give up well after the timeout.
    let mut peak_rss = baseline_rss;
    let mut most_connected = 0;
    let closed_after = loop {
        peak_rss = peak_rss.max(resident_bytes());
        let connected = established_on(port);
        most_connected = most_connected.max(connected);
        if most_connected >= CLIENTS && connected == 0 {
            break Some(connecting.elapsed());
        }
        if connecting.elapsed() > connected_after + WRITE_TIMEOUT + Duration::from_secs(8) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let growth = peak_rss.saturating_sub(baseline_rss);
    let after_close = resident_bytes().saturating_sub(baseline_rss);
    let report = format!(
        "{CLIENTS} stalled clients, {TARGETS} targets, {scrape_bytes} bytes per scrape: \
         peak RSS growth {:.1} MiB ({:.0} KiB per client), {:.1} MiB above baseline after \
         they were closed; all connected after {connected_after:?}, exporter closed \
         them after {closed_after:?}",
        growth as f64 / 1048576.0,
        growth as f64 / 1024.0 / CLIENTS as f64,
        after_close as f64 / 1048576.0,
    );
    eprintln!("{report}");
    assert!(
        most_connected >= CLIENTS,
        "every client connected (at most {most_connected} at once): {report}"
    );
    assert!(
        growth <= CLIENTS as u64 * PER_CLIENT_BOUND,
        "a stalled reader must cost at most {PER_CLIENT_BOUND} bytes: {report}"
    );
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "the exporter must close connections whose writes stall for {WRITE_TIMEOUT:?}: {report}"
        )
    });
    assert!(closed_after >= WRITE_TIMEOUT, "{report}");

    // From the clients' side: what was already in flight, then EOF, never
    // the rest of the scrape.
    let mut reads = tokio::task::JoinSet::new();
    for client in clients {
        reads.spawn(read_until_closed(client, scrape_bytes / 2));
    }
    while let Some(read) = reads.join_next().await {
        let read = read.unwrap();
        assert!(read.is_ok(), "{read:?}: {report}");
    }
    // The exporter still serves.
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
}
