//! What a new user copies from the README works: every YAML block of the
//! README that is an exporter config (top-level keys among `modules`,
//! `targets` and `groups`), and `examples/synack.yml`, load as they stand,
//! each on its own in a file of its own, as a user would paste it. A load
//! checks that an exec module's program exists, so the scripts that the
//! snippets name under `/usr/local/bin/` are put in a scratch directory
//! first, as a user would install them. The README's `check` snippet runs
//! as written, and so does `examples/check.rs`.

mod common;

use common::TempDir;
use std::path::Path;
use std::time::Duration;
use synack_exporter::{Exporter, Module, ProberKind};

#[path = "../examples/check.rs"]
#[allow(dead_code)] // its `main`
mod check_example;

const EXPORTER_KEYS: [&str; 3] = ["modules", "targets", "groups"];

/// Where the snippets' scripts live.
const SCRIPTS: &str = "/usr/local/bin/";

/// `yaml` with every `"/usr/local/bin/NAME"` moved to an executable
/// script of that name in `dir`.
fn with_scripts_in(dir: &Path, yaml: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let quoted = format!("\"{SCRIPTS}");
    for piece in yaml.split(&quoted).skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        let script = dir.join(name);
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    yaml.replace(&quoted, &format!("\"{}/", dir.display()))
}

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The bodies of the README's fenced ```yaml blocks, with their first line.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some((index + 2, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "README.md has an unclosed ```yaml block");
    blocks
}

/// Top-level keys of a YAML text: unindented `key:` lines.
fn top_level_keys(yaml: &str) -> Vec<&str> {
    yaml.lines()
        .filter(|line| !line.starts_with([' ', '#', '-']) && !line.trim().is_empty())
        .filter_map(|line| line.split_once(':').map(|(key, _)| key.trim()))
        .collect()
}

#[test]
fn every_exporter_config_snippet_of_the_readme_loads_on_its_own() {
    let readme = repo_file("README.md");
    let blocks = yaml_blocks(&readme);
    let scripts = TempDir::new("readme-snippets");
    let mut checked = 0;
    for (line, yaml) in &blocks {
        let keys = top_level_keys(yaml);
        if keys.is_empty() || !keys.iter().all(|key| EXPORTER_KEYS.contains(key)) {
            continue; // a Prometheus or Alertmanager snippet
        }
        if let Err(error) = Exporter::builder()
            .config_text(
                &format!("README.md:{line}"),
                &with_scripts_in(scripts.path(), yaml),
            )
            .check_config()
        {
            panic!("the README's snippet at line {line} does not load on its own: {error}\n{yaml}");
        }
        checked += 1;
    }
    // The configuration, scheduled targets and groups sections each have one.
    assert!(
        checked >= 3,
        "only {checked} exporter config snippets found among {} yaml blocks",
        blocks.len()
    );
}

#[test]
fn the_example_config_loads_and_uses_every_section() {
    let text = repo_file("examples/synack.yml");
    if let Err(error) = Exporter::builder()
        .config_text("examples/synack.yml", &text)
        .check_config()
    {
        panic!("{error}");
    }
    let config: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let modules = config["modules"].as_object().expect("a modules: section");
    assert!(
        modules
            .keys()
            .any(|name| name != "tcp_halfopen" && name != "tcp_connect"),
        "adds modules to the built-in ones"
    );
    assert!(
        modules.contains_key("tcp_connect"),
        "shows how to redefine a built-in module"
    );
    let targets = config["targets"].as_array().expect("a targets: section");
    assert!(targets.iter().any(|block| block["labels"].is_object()));
    assert!(
        config["groups"]
            .as_object()
            .is_some_and(|groups| !groups.is_empty())
    );
}

#[test]
fn the_snippet_scanner_finds_blocks_and_keys() {
    let markdown = "text\n```yaml\ntargets:\n  - module: m\n# c\ngroups: {}\n```\n```sh\nx\n```\n";
    let blocks = yaml_blocks(markdown);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].0, 3);
    assert_eq!(top_level_keys(&blocks[0].1), ["targets", "groups"]);
}

/// The README's web config example says which password its bcrypt hash is
/// for, and it is: a user who tries the example with curl gets in.
#[test]
fn the_basic_auth_example_states_the_password_of_its_hash() {
    let readme = repo_file("README.md");
    let users = readme
        .split_once("basic_auth_users:\n")
        .expect("a basic_auth_users: example")
        .1;
    let line = users.lines().next().unwrap_or_default();
    let (user, rest) = line
        .trim()
        .split_once(": ")
        .unwrap_or_else(|| panic!("`user: hash` in {line:?}"));
    let (hash, comment) = rest
        .split_once(" # ")
        .unwrap_or_else(|| panic!("a comment stating the password in {line:?}"));
    let password = comment
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("the password in quotes in {comment:?}"));
    assert_eq!(user, "prometheus");
    assert!(
        bcrypt::verify(password, hash.trim()).unwrap_or(false),
        "{hash:?} is not the bcrypt hash of {password:?}"
    );
}

/// The README's `check` snippet, run: it stands verbatim between the
/// markers below (`the_readme_check_snippet_is_the_one_run_here` compares),
/// with `println!` writing into `printed`.
async fn readme_check_snippet() -> Result<String, Box<dyn std::error::Error>> {
    let mut printed = String::new();
    macro_rules! println {
        ($($arg:tt)*) => {{
            printed.push_str(&format!($($arg)*));
            printed.push('\n');
        }};
    }
    // The README's check snippet begins.
    use synack_exporter::{Module, ProberKind, check};

    let outcome = check("127.0.0.1:5432", &Module::new(ProberKind::TcpHalfopen)).await?;
    match (outcome.failure, outcome.handshake_time) {
        (None, Some(handshake)) => println!("open, SYN-ACK after {handshake:?}"),
        (None, None) => println!("open"),
        (Some(failure), _) => println!("down: {failure}"),
    }
    // The README's check snippet ends.
    Ok(printed)
}

/// The README's fenced ```rust block that holds `needle`.
fn rust_block(markdown: &str, needle: &str) -> String {
    markdown
        .split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no ```rust block of the README holds {needle:?}"))
        .to_owned()
}

#[test]
fn the_readme_check_snippet_is_the_one_run_here() {
    let this_file = repo_file("tests/readme_snippets.rs");
    let (_, rest) = this_file
        .split_once("    // The README's check snippet begins.\n")
        .unwrap();
    let (tested, _) = rest
        .split_once("    // The README's check snippet ends.\n")
        .unwrap();
    let tested: String = tested
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    assert_eq!(
        rust_block(&repo_file("README.md"), "check(\"127.0.0.1:5432\""),
        tested
    );
}

#[tokio::test]
async fn the_readme_check_snippet_prints_the_handshake_time_plainly() {
    // The snippet probes 127.0.0.1:5432: listen there, unless something
    // already does, which is as good.
    let _listener = std::net::TcpListener::bind("127.0.0.1:5432");
    let printed = readme_check_snippet().await.unwrap();
    assert!(printed.starts_with("open, SYN-ACK after "), "{printed}");
    assert!(!printed.contains("Some("), "{printed}");
    assert_eq!(printed.lines().count(), 1, "{printed}");
}

#[tokio::test]
async fn the_check_example_says_why_a_target_is_bad_and_goes_on() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let targets = ["no-port".to_owned(), open.clone(), "127.0.0.1:1".to_owned()];
    let module = Module::new(ProberKind::TcpHalfopen).with_timeout(Duration::from_secs(2));
    let mut out = Vec::new();
    check_example::run(&targets, &module, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        "no-port: not a target: target has no port: write it as host:port"
    );
    assert!(
        lines[1].starts_with(&format!("{open}: open (SYN-ACK after ")),
        "{out}"
    );
    assert!(lines[1].ends_with(" ms)"), "{out}");
    assert!(lines[2].starts_with("127.0.0.1:1: refused: "), "{out}");
    assert!(
        !out.contains("MissingPort") && !out.contains("Some("),
        "{out}"
    );
}

#[test]
fn every_cargo_install_in_the_readme_is_locked() {
    let readme = repo_file("README.md");
    let installs: Vec<&str> = readme
        .lines()
        .filter(|line| line.contains("cargo install"))
        .collect();
    assert!(!installs.is_empty());
    for line in installs {
        assert!(line.contains("cargo install --locked "), "{line}");
    }
}
