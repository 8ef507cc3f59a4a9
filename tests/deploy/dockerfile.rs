//! The Dockerfile has what the issue asks for (multi-stage, non-root, a
//! dependency layer) and `.dockerignore` agrees with it.

use super::{COMMAND_LIMIT, logical_lines, read, repo_path};
use crate::common;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::process::Command;

/// The image the manifests run: this crate's name, tagged with its
/// version (what `docker build -t synack_exporter:VERSION .` makes).
pub fn image_tag() -> String {
    format!("{}:{}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile_instructions() -> Vec<String> {
    logical_lines(&read("Dockerfile"), &['#'])
}

fn is_instruction(instruction: &str, keyword: &str) -> bool {
    instruction
        .split_whitespace()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(keyword))
}

/// The build-context paths a COPY instruction copies (none for
/// `COPY --from=stage`); the last argument is the destination.
fn copied_context_paths(instruction: &str) -> Vec<&str> {
    if !is_instruction(instruction, "COPY") {
        return Vec::new();
    }
    let arguments: Vec<&str> = instruction.split_whitespace().skip(1).collect();
    if arguments.iter().any(|a| a.starts_with("--from")) {
        return Vec::new();
    }
    let paths = arguments.iter().filter(|a| !a.starts_with("--")).copied();
    let mut paths: Vec<&str> = paths.collect();
    paths.pop();
    paths
}

/// The `&&`-separated commands of a RUN instruction.
fn shell_commands(instruction: &str) -> Vec<&str> {
    let (_, script) = instruction.split_once(' ').unwrap_or_default();
    script.split("&&").map(str::trim).collect()
}

#[derive(Debug, Deserialize)]
struct CargoMetadata {
    packages: Vec<CargoPackage>,
}

#[derive(Debug, Deserialize)]
struct CargoPackage {
    targets: Vec<CargoTarget>,
}

#[derive(Debug, Deserialize)]
struct CargoTarget {
    kind: Vec<String>,
    src_path: String,
}

/// The root source files, relative to the repository, of what `cargo
/// build` builds: the library, the binaries and any build script, not the
/// examples, tests and benches. From `cargo metadata`, so Cargo.toml is the
/// only list of them.
fn built_target_sources() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = repo_path("Cargo.toml");
    let output = common::run_within(
        Command::new(&cargo)
            .args([
                "metadata",
                "--no-deps",
                "--offline",
                "--format-version",
                "1",
            ])
            .arg("--manifest-path")
            .arg(&manifest),
        COMMAND_LIMIT,
    );
    assert!(output.success(), "cargo metadata: {}", output.stderr);
    // JSON is YAML, so the YAML parser the other files use reads it too.
    let metadata: CargoMetadata = serde_saphyr::from_str(&output.stdout).unwrap();
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    metadata
        .packages
        .iter()
        .flat_map(|package| &package.targets)
        .filter(|target| {
            !target
                .kind
                .iter()
                .any(|kind| ["example", "test", "bench"].contains(&kind.as_str()))
        })
        .map(|target| {
            let path = target.src_path.strip_prefix(&root);
            path.unwrap_or_else(|| panic!("{} is outside the crate", target.src_path))
                .to_owned()
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_the_dependencies_in_a_layer_before_the_sources() {
    let instructions = dockerfile_instructions();
    let find = |what: &str, found: &dyn Fn(&str) -> bool| -> Vec<usize> {
        let positions: Vec<usize> = (0..instructions.len())
            .filter(|&i| found(&instructions[i]))
            .collect();
        assert!(!positions.is_empty(), "the Dockerfile has no {what}");
        positions
    };
    let copies_manifests = find("COPY Cargo.toml Cargo.lock", &|i| {
        let paths = copied_context_paths(i);
        paths.contains(&"Cargo.toml") && paths.contains(&"Cargo.lock")
    })[0];
    let copies_sources = find("COPY src", &|i| copied_context_paths(i).contains(&"src"))[0];
    let builds = find("RUN cargo build --release --locked", &|i| {
        is_instruction(i, "RUN") && i.contains("cargo build --release --locked")
    });
    assert_eq!(builds.len(), 2, "a dependency build and a crate build");
    let (dependency_build, crate_build) = (builds[0], builds[1]);
    assert!(
        copies_manifests < dependency_build
            && dependency_build < copies_sources
            && copies_sources < crate_build,
        "the order must be: COPY Cargo.toml Cargo.lock, build, COPY src, build"
    );

    // Stand-ins for every target cargo builds, and those targets rebuilt
    // once the real sources are in: touched, since COPY keeps mtimes older
    // than the stand-ins' build.
    let dependency_build = &instructions[dependency_build];
    let crate_build = &instructions[crate_build];
    let commands = shell_commands(crate_build);
    let position = |start: &str| commands.iter().position(|c| c.starts_with(start));
    let touch = position("touch ")
        .unwrap_or_else(|| panic!("the crate build touches no source: {crate_build}"));
    assert!(
        Some(touch) < position("cargo build"),
        "touch before cargo build: {crate_build}"
    );
    let touch = commands[touch];
    let sources = built_target_sources();
    assert!(!sources.is_empty(), "cargo metadata lists no target");
    for source in &sources {
        assert!(
            dependency_build.contains(source.as_str()),
            "the dependency build makes no stand-in {source}: {dependency_build}"
        );
        assert!(
            touch.split_whitespace().any(|word| word == source),
            "{touch:?} must touch {source}"
        );
        assert!(
            source.starts_with("src/"),
            "{source} is not under src/, which is all the image gets"
        );
    }

    // Only the crate build's binary goes to the runtime stage.
    let binary = "target/release/synack_exporter";
    assert!(!dependency_build.contains(binary), "{dependency_build}");
    assert!(crate_build.contains(binary), "{crate_build}");
}

#[test]
fn the_dockerignore_admits_exactly_what_the_dockerfile_copies() {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        "exclude everything first, then admit what the image needs"
    );
    let admitted: BTreeSet<&str> = patterns[1..]
        .iter()
        .map(|pattern| {
            let path = pattern
                .strip_prefix('!')
                .unwrap_or_else(|| panic!("after `*`, only `!PATH` lines: {pattern}"));
            path.trim_end_matches('/')
        })
        .collect();
    let instructions = dockerfile_instructions();
    let copied: BTreeSet<&str> = instructions
        .iter()
        .flat_map(|instruction| copied_context_paths(instruction))
        .map(|path| path.trim_end_matches('/'))
        .collect();
    assert_eq!(
        admitted, copied,
        ".dockerignore against the Dockerfile's COPY"
    );
    for path in admitted {
        assert!(
            repo_path(path).exists(),
            ".dockerignore admits {path}, which does not exist"
        );
    }
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_runs_with_no_arguments() {
    let instructions = dockerfile_instructions();
    let with = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|instruction| is_instruction(instruction, keyword))
            .map(String::as_str)
            .collect()
    };

    let froms = with("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:") && froms[0].contains(" AS "),
        "build stage from the official Rust image: {}",
        froms[0]
    );
    let runtime = froms.last().unwrap();
    assert!(
        runtime.starts_with("FROM gcr.io/distroless/cc-debian12:")
            || runtime.starts_with("FROM debian:bookworm-slim"),
        "minimal runtime: {runtime}"
    );
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "pin {image}"
        );
    }
    assert!(with("EXPOSE").contains(&"EXPOSE 9215"), "EXPOSE 9215");

    let users = with("USER");
    let user = users.last().expect("a USER instruction");
    let name = user.split_whitespace().nth(1).unwrap();
    let uid = name.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root USER: {user}");

    // Exec form, no CMD that would need arguments: `docker run IMAGE` works.
    let entrypoint = with("ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1, "one ENTRYPOINT");
    assert!(
        entrypoint[0].contains(r#"["/usr/local/bin/synack_exporter"]"#),
        "exec-form ENTRYPOINT with no arguments: {}",
        entrypoint[0]
    );
    assert!(
        with("CMD").is_empty(),
        "no CMD: the embedded config needs none"
    );

    assert!(
        repo_path(".ci/lint_dockerfile.sh").exists(),
        ".ci/lint_dockerfile.sh lints it"
    );
}
