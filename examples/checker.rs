//! Check ports many times from many tasks on one `Checker`: its probe
//! thread, exec thread and DNS thread start once and serve every check.
//!
//! ```text
//! cargo run --example checker
//! ```
//!
//! Opens a listener on 127.0.0.1, then checks it and a closed port 100
//! times each, every check in a task of its own and all at once, at most
//! 50 probes in flight; prints a line per target (how many checks found it
//! open, and the first failure), and shows that the listener never
//! accepted a connection. For a few checks, the one-shot `check` of
//! `examples/check.rs` starts no thread.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;
use synack_exporter::{Checker, Module};

/// Checks each of `targets` `times` times with `module`, every check in a
/// task of its own, all at once; writes a line per target to `out`.
pub async fn run(
    checker: &Checker,
    module: &Module,
    targets: &[String],
    times: usize,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut checks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        for _ in 0..times {
            // Clones share the checker's threads and its in-flight limit.
            let (checker, module, target) = (checker.clone(), module.clone(), target.clone());
            checks.spawn(async move { (index, checker.check(&target, &module).await) });
        }
    }
    let mut open = vec![0; targets.len()];
    let mut first_failure: Vec<Option<String>> = vec![None; targets.len()];
    while let Some(done) = checks.join_next().await {
        let (index, checked) = done.map_err(std::io::Error::other)?;
        let failure = match checked {
            Err(error) => format!("not a target: {error}"),
            Ok(outcome) => match outcome.failure {
                None => {
                    open[index] += 1;
                    continue;
                }
                // `refused: connect to 127.0.0.1:1: ...`
                Some(failure) => failure.to_string(),
            },
        };
        first_failure[index].get_or_insert(failure);
    }
    for ((target, open), failure) in targets.iter().zip(open).zip(first_failure) {
        match failure {
            None => writeln!(out, "{target}: open {open} of {times} times")?,
            Some(failure) => writeln!(
                out,
                "{target}: open {open} of {times} times; first failure: {failure}"
            )?,
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let targets = [listener.local_addr()?.to_string(), "127.0.0.1:1".to_owned()];
    let checker = Checker::builder().max_in_flight(50).build()?;
    let module = Module::tcp_halfopen().with_timeout(Duration::from_secs(2));
    run(&checker, &module, &targets, 100, &mut std::io::stdout()).await?;
    // Past the kernel's delayed ACK (about 200 ms), a late ACK would show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = std::iter::from_fn(|| listener.accept().ok())
        .take(10_000)
        .count();
    println!("the listener accepted {accepted} connections");
    Ok(())
}
