//! The history of `/probe` requests is bounded in bytes, not only in
//! records (issue 18, item 14): any client that can reach `/probe` can fill
//! it, so what one record may hold and what all of them may hold are
//! capped whatever the module does.
//!
//! The real binary runs an exec module whose command line is about 1 MB
//! (within the config limits) with `--history.limit 10000`; its resident
//! memory is read from `/proc` before and after a few hundred probes. Only
//! loopback is used, and `/bin/true` is the command.

use crate::common;

use common::ExporterProcess;
use common::TempDir;
use common::http::blocking_get;
use std::net::SocketAddr;
use std::time::Duration;

/// Arguments of 4096 bytes (the most one may have) after the program:
/// 255 of them, the most a command may have, about 1 MB in all.
fn big_argv_config() -> String {
    let argument = "x".repeat(4096);
    let mut yaml = String::from(
        "modules:\n  big:\n    prober: exec\n    timeout: 10s\n    exec:\n      command:\n        - /bin/true\n",
    );
    for _ in 0..255 {
        yaml.push_str("        - ");
        yaml.push_str(&argument);
        yaml.push('\n');
    }
    yaml
}

/// `count` probes of module `big`, from 4 clients at once; each must succeed.
fn probe_big(address: SocketAddr, count: usize) {
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(move || {
                for _ in 0..count / 4 {
                    let response = blocking_get(
                        address,
                        "/probe?module=big&target=127.0.0.1:1",
                        Duration::from_secs(20),
                    )
                    .expect("probe answered");
                    assert_eq!(response.status, 200, "{}", response.body);
                    assert!(
                        response.body.contains("\nprobe_success 1\n"),
                        "{}",
                        response.body
                    );
                }
            });
        }
    });
}

#[test]
fn a_history_of_probes_with_a_megabyte_command_line_stays_within_its_byte_budget() {
    let dir = TempDir::new("history-memory");
    let config = dir.write("synack.yml", &big_argv_config());
    let exporter = ExporterProcess::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--history.limit",
        "10000",
    ]);
    // Warm up the allocator and the runtime's threads first.
    probe_big(exporter.address, 20);
    let before = common::resident_bytes(exporter.pid());
    // 120 records of about 1 MiB each would be 120 MiB; each may keep at
    // most 64 KiB, and all of them at most 16 MiB.
    probe_big(exporter.address, 120);
    let after = common::resident_bytes(exporter.pid());
    let grown = after.saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "120 probes of a 1 MB command line grew the exporter by {} MiB ({} to {} MiB): \
         the history must hold at most 16 MiB",
        grown >> 20,
        before >> 20,
        after >> 20
    );

    // The newest record's log shows that its command line was cut.
    let landing = blocking_get(exporter.address, "/", Duration::from_secs(10)).unwrap();
    let id = landing
        .body
        .split("href=\"/logs?id=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a log link on the landing page");
    let log = blocking_get(
        exporter.address,
        &format!("/logs?id={id}"),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(log.status, 200);
    assert!(
        log.body.len() < 64 << 10,
        "a record's log is {} bytes",
        log.body.len()
    );
    assert!(
        log.body.contains("the command line is cut"),
        "no marker in the log: {}",
        &log.body[..log.body.len().min(2000)]
    );
    assert!(log.body.contains("probe succeeded"), "{}", log.body);
}
