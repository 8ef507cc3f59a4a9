//! Probe ports from a Rust program without the HTTP server.
//!
//! ```text
//! cargo run --example check -- 127.0.0.1:22 [::1]:5432 localhost:6379
//! ```
//!
//! Prints a line per target, in order: open with the handshake time, down
//! with the reason, or why the argument is not a target (then it goes on
//! with the next). With no arguments it opens a listener on 127.0.0.1,
//! probes it and a closed port, and shows that the listener never accepted
//! a connection.
//!
//! Each `check` runs in the calling task and starts no thread: right for a
//! few checks. For many, or the same ones again and again, see
//! `examples/checker.rs`, whose `Checker` shares one probe thread.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;
use synack_exporter::{Module, check};

/// Probes each of `targets` in turn with `module`, writing a line for each
/// to `out`; a text that is not a target gets its line too.
pub async fn run(targets: &[String], module: &Module, out: &mut impl Write) -> std::io::Result<()> {
    for target in targets {
        match check(target, module).await {
            Err(error) => writeln!(out, "{target}: not a target: {error}")?,
            Ok(outcome) => match (&outcome.failure, outcome.handshake_time()) {
                (None, Some(handshake)) => writeln!(
                    out,
                    "{target}: open (SYN-ACK after {:.3} ms)",
                    handshake.as_secs_f64() * 1000.0
                )?,
                (None, None) => writeln!(out, "{target}: open")?,
                // `refused: connect to 127.0.0.1:1: ...`
                (Some(failure), _) => writeln!(out, "{target}: {failure}")?,
            },
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let module = Module::tcp_halfopen().with_timeout(Duration::from_secs(2));
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
    run(&targets, &module, &mut std::io::stdout()).await?;
    if let Some(listener) = demo_listener {
        std::thread::sleep(Duration::from_millis(300));
        let accepted = listener.accept().is_ok();
        println!("the demo listener accepted a connection: {accepted}");
    }
    Ok(())
}
