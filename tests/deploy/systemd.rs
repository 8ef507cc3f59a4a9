//! The systemd unit has its hardening, runs the example config, and passes
//! `systemd-analyze verify`.

use super::{BINARY, COMMAND_LIMIT, CONFIG_FILE_ARG, logical_lines, read, repo_path};
use crate::common;
use std::process::Command;

#[test]
fn the_systemd_unit_is_hardened() {
    let text = read("examples/synack_exporter.service");
    let directives = logical_lines(&text, &['#', ';']);
    for required in [
        "[Service]",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            directives.iter().any(|d| d == required),
            "the unit lacks the line {required:?}"
        );
    }
    assert!(
        directives.iter().any(|d| d.starts_with("LimitNOFILE=")),
        "LimitNOFILE"
    );
    // No capability: half-open probes use raw sockets of the kernel's TCP.
    assert!(
        !directives
            .iter()
            .any(|d| d.starts_with("CapabilityBoundingSet=") && d != "CapabilityBoundingSet="),
        "CapabilityBoundingSet must stay empty"
    );
    let exec_start = directives
        .iter()
        .find(|d| d.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec_start.contains(CONFIG_FILE_ARG),
        "ExecStart uses {CONFIG_FILE_ARG}: {exec_start}"
    );
}

/// The binary accepts the unit's ExecStart arguments with
/// examples/synack.yml as the config file ExecStart reads.
#[test]
fn the_systemd_unit_runs_the_example_config() {
    let text = read("examples/synack_exporter.service");
    let directives = logical_lines(&text, &['#', ';']);
    let exec_start = directives
        .iter()
        .find_map(|d| d.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let example = repo_path("examples/synack.yml");
    let args: Vec<String> = exec_start
        .split_whitespace()
        .skip(1)
        .map(|arg| {
            if arg == CONFIG_FILE_ARG {
                format!("--config.file={}", example.display())
            } else {
                arg.to_owned()
            }
        })
        .chain(["--config.check".to_owned()])
        .collect();
    let output = common::run_within(Command::new(BINARY).args(&args), COMMAND_LIMIT);
    assert_eq!(
        (output.code(), output.stdout.as_str()),
        (Some(0), "ok\n"),
        "{args:?}: {}",
        output.stderr
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    verify(&read("examples/synack_exporter.service"));
}

/// The lines the unit's comment gives for a module's `tcp.mark`, put in
/// place of the empty capability sets, grant `CAP_NET_ADMIN` alone and
/// still verify (systemd-analyze does not judge capability names: the
/// name is the one checked here).
#[test]
fn the_units_lines_for_mark_grant_net_admin_alone_and_verify() {
    verify(&granted("CAP_NET_ADMIN"));
}

/// The same for a module's `tcp.engine: raw`: `CAP_NET_RAW` alone.
#[test]
fn the_units_lines_for_the_raw_engine_grant_net_raw_alone_and_verify() {
    verify(&granted("CAP_NET_RAW"));
}

/// The unit with the lines its comment gives for `capability` in place
/// of the empty capability sets.
fn granted(capability: &str) -> String {
    let text = read("examples/synack_exporter.service");
    let mut granted = text.clone();
    for directive in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let commented = format!("#   {directive}={capability}\n");
        assert!(
            text.contains(&commented),
            "the unit's comment gives {commented:?}"
        );
        let empty = format!("\n{directive}=\n");
        assert_eq!(text.matches(&empty).count(), 1, "{directive}= is empty");
        granted = granted.replace(&empty, &format!("\n{directive}={capability}\n"));
    }
    granted
}

/// `systemd-analyze verify` of a unit's `text`, skipped (or failed under
/// `SYNACK_SYSTEM_TESTS=require`) without systemd-analyze.
fn verify(text: &str) {
    if common::run_bounded(
        Command::new("systemd-analyze").arg("--version"),
        None,
        COMMAND_LIMIT,
    )
    .is_err()
    {
        common::skip_or_fail("systemd-analyze");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at this build.
    let text = text.replace("/usr/local/bin/synack_exporter", BINARY);
    let dir = common::TempDir::new("systemd");
    let path = dir.write("synack_exporter.service", &text);
    let output = common::run_within(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        COMMAND_LIMIT,
    );
    let stderr = &output.stderr;
    assert!(
        output.success() && !stderr.contains("synack_exporter.service"),
        "systemd-analyze verify: {stderr}"
    );
}
