//! Probe ports from a Rust program without the HTTP server.
//!
//! ```text
//! cargo run --example check -- 127.0.0.1:22 [::1]:5432 localhost:6379
//! ```
//!
//! With no arguments it opens a listener on 127.0.0.1, probes it and a
//! closed port, and shows that the listener never accepted a connection.

use std::net::TcpListener;
use std::time::Duration;
use synack_exporter::{Module, ProberKind, check};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let module = Module::new(ProberKind::TcpHalfopen).with_timeout(Duration::from_secs(2));
    let mut targets: Vec<String> = std::env::args().skip(1).collect();
    let demo_listener = if targets.is_empty() {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        targets.push(listener.local_addr()?.to_string());
        targets.push("127.0.0.1:1".to_owned());
        Some(listener)
    } else {
        None
    };
    for target in &targets {
        let outcome = check(target, &module).await?;
        match (&outcome.failure, outcome.handshake_time) {
            (None, Some(handshake)) => println!("{target}: open (SYN-ACK after {handshake:?})"),
            (None, None) => println!("{target}: open"),
            (Some(failure), _) => println!("{target}: {} ({})", failure.reason, failure.detail),
        }
    }
    if let Some(listener) = demo_listener {
        std::thread::sleep(Duration::from_millis(300));
        let accepted = listener.accept().is_ok();
        println!("the demo listener accepted a connection: {accepted}");
    }
    Ok(())
}
