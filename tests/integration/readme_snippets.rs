//! What a new user copies from the README and the reference in `docs/`
//! works, and what they say is there: every YAML block of README.md and
//! docs/*.md that is an exporter config (top-level keys among `modules`,
//! `targets` and `groups`), and `examples/synack.yml`, load as they stand,
//! each on its own in a file of its own, as a user would paste it. A load
//! checks that an exec module's program exists, so the scripts that the
//! snippets name under `/usr/local/bin/` are put in a scratch directory
//! first, as a user would install them. The README's `check` snippet runs
//! as written, and so does `examples/check.rs`. Every relative link and
//! anchor between the documents resolves, every file they name in
//! backquotes exists, every flag of `--help` is in the flag table with its
//! default, and every series the exporter writes is in `docs/metrics.md`
//! with its HELP text.

use crate::common;

use common::TempDir;
use std::path::Path;
use std::time::Duration;
use synack_exporter::{Exporter, Module};

#[path = "../../examples/check.rs"]
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

/// The documents a user reads: README.md, then docs/*.md by name, each
/// with its path relative to the repository.
fn documents() -> Vec<(String, String)> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut names: Vec<String> = std::fs::read_dir(&docs)
        .unwrap_or_else(|error| panic!("{}: {error}", docs.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".to_owned());
    names
        .into_iter()
        .map(|name| {
            let text = repo_file(&name);
            (name, text)
        })
        .collect()
}

/// The bodies of a document's fenced ```yaml blocks, with their first line.
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
    assert!(current.is_none(), "an unclosed ```yaml block");
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
fn every_exporter_config_snippet_of_the_docs_loads_on_its_own() {
    let scripts = TempDir::new("readme-snippets");
    let mut checked = 0;
    let mut blocks_seen = 0;
    for (document, text) in documents() {
        let blocks = yaml_blocks(&text);
        blocks_seen += blocks.len();
        for (line, yaml) in &blocks {
            let keys = top_level_keys(yaml);
            if keys.is_empty() || !keys.iter().all(|key| EXPORTER_KEYS.contains(key)) {
                continue; // a Prometheus or Alertmanager snippet
            }
            if let Err(error) = Exporter::builder()
                .config_text(
                    &format!("{document}:{line}"),
                    &with_scripts_in(scripts.path(), yaml),
                )
                .check_config()
            {
                panic!(
                    "the snippet at {document}:{line} does not load on its own: {error}\n{yaml}"
                );
            }
            checked += 1;
        }
    }
    // The configuration reference alone has a dozen: modules, attempts,
    // exec, scheduled targets, groups, target policies, health-checker.
    assert!(
        checked >= 10,
        "only {checked} exporter config snippets found among {blocks_seen} yaml blocks"
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

/// The web config example (docs/security.md) says which password its
/// bcrypt hash is for, and it is: a user who tries the example with curl
/// gets in.
#[test]
fn the_basic_auth_example_states_the_password_of_its_hash() {
    let mut checked = 0;
    for (document, text) in documents() {
        for users in text.split("basic_auth_users:\n").skip(1) {
            let line = users.lines().next().unwrap_or_default();
            let (user, rest) = line
                .trim()
                .split_once(": ")
                .unwrap_or_else(|| panic!("{document}: `user: hash` in {line:?}"));
            let (hash, comment) = rest.split_once(" # ").unwrap_or_else(|| {
                panic!("{document}: a comment stating the password in {line:?}")
            });
            let password = comment
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("{document}: the password in quotes in {comment:?}"));
            assert_eq!(user, "prometheus");
            assert!(
                bcrypt::verify(password, hash.trim()).unwrap_or(false),
                "{document}: {hash:?} is not the bcrypt hash of {password:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no basic_auth_users: example in the docs");
}

thread_local! {
    /// What the snippets below print, one line per `println!`.
    static PRINTED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The snippets' `println!`: into [`PRINTED`], for the tests to read.
macro_rules! println {
    ($($arg:tt)*) => {
        PRINTED.with_borrow_mut(|printed| {
            printed.push_str(&format!($($arg)*));
            printed.push('\n');
        })
    };
}

/// What the snippets printed on this thread since the last call.
fn take_printed() -> String {
    PRINTED.with_borrow_mut(std::mem::take)
}

/// The README's `check` snippet, run: it stands verbatim between the
/// markers below (`the_rust_snippets_are_the_ones_run_here` compares).
async fn readme_check_snippet() -> Result<String, Box<dyn std::error::Error>> {
    // The README's check snippet begins.
    use synack_exporter::{Module, check};

    let outcome = check("127.0.0.1:5432", &Module::tcp_halfopen()).await?;
    match (&outcome.failure, outcome.handshake_time()) {
        (None, Some(handshake)) => println!("open, SYN-ACK after {handshake:?}"),
        (None, None) => println!("open"),
        (Some(failure), _) => println!("down: {failure}"),
    }
    // The README's check snippet ends.
    Ok(take_printed())
}

/// The tcp-shaker snippet of docs/migration.md, run as the README's is.
async fn migration_check_snippet() -> Result<String, Box<dyn std::error::Error>> {
    // The tcp-shaker snippet begins.
    use std::time::Duration;
    use synack_exporter::{Module, Reason, check};

    let module = Module::tcp_halfopen().with_timeout(Duration::from_secs(1));
    let outcome = check("127.0.0.1:6379", &module).await?;
    match outcome.failure {
        // CheckAddr returned nil
        None => println!("open"),
        // ErrTimeout
        Some(failure) if failure.reason == Reason::Timeout => println!("timed out"),
        // another error, with its reason
        Some(failure) => println!("down: {failure}"),
    }
    // The tcp-shaker snippet ends.
    Ok(take_printed())
}

/// The lines of this file between two marker comments, unindented by one
/// level: a snippet as the documents show it.
fn tested_snippet(begins: &str, ends: &str) -> String {
    let this_file = repo_file("tests/integration/readme_snippets.rs");
    let (_, rest) = this_file.split_once(begins).unwrap();
    let (tested, _) = rest.split_once(ends).unwrap();
    tested
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect()
}

#[tokio::test]
async fn the_tcp_shaker_snippet_prints_one_line() {
    // Listen on its port, unless something already does.
    let _listener = std::net::TcpListener::bind("127.0.0.1:6379");
    let printed = migration_check_snippet().await.unwrap();
    assert_eq!(printed, "open\n");
}

/// The one fenced ```rust block of the documents that holds `needle`.
fn rust_block(documents: &[(String, String)], needle: &str) -> String {
    let blocks: Vec<&str> = documents
        .iter()
        .flat_map(|(_, text)| text.split("```rust\n").skip(1))
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| block.contains(needle))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "```rust blocks holding {needle:?}: {blocks:?}"
    );
    blocks[0].to_owned()
}

/// The Rust snippets of the documents are the ones run here: the README's
/// `check` snippet and the tcp-shaker one of docs/migration.md.
#[test]
fn the_rust_snippets_are_the_ones_run_here() {
    for (needle, name) in [
        ("check(\"127.0.0.1:5432\"", "The README's check snippet"),
        ("check(\"127.0.0.1:6379\"", "The tcp-shaker snippet"),
    ] {
        assert_eq!(
            rust_block(&documents(), needle),
            tested_snippet(
                &format!("    // {name} begins.\n"),
                &format!("    // {name} ends.\n")
            ),
            "{name}"
        );
    }
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
    let module = Module::tcp_halfopen().with_timeout(Duration::from_secs(2));
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
fn every_cargo_install_in_the_docs_is_locked() {
    let documents = documents();
    let installs: Vec<&str> = documents
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter(|line| line.contains("cargo install"))
        .collect();
    assert!(!installs.is_empty());
    for line in installs {
        assert!(line.contains("cargo install --locked "), "{line}");
    }
}

/// The anchor GitHub gives a heading: lower case, letters, digits, `_`
/// and `-` kept, spaces made `-`, everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of `markdown` outside fenced code blocks, with their numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The anchors of a document's headings, numbered as GitHub numbers
/// repeats (`name`, `name-1`, ...).
fn anchors(markdown: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    for (_, line) in prose_lines(markdown) {
        let Some(heading) = line
            .strip_prefix('#')
            .map(|rest| rest.trim_start_matches('#'))
            .and_then(|rest| rest.strip_prefix(' '))
        else {
            continue;
        };
        let base = anchor(heading.trim());
        let repeats = anchors
            .iter()
            .filter(|seen| {
                **seen == base
                    || seen
                        .strip_prefix(&format!("{base}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        anchors.push(if repeats == 0 {
            base
        } else {
            format!("{base}-{repeats}")
        });
    }
    anchors
}

/// The targets of the inline links `[text](target)` in a document's
/// prose, with their line numbers; code spans are left out.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (number, line) in prose_lines(markdown) {
        // Drop code spans, whose brackets are not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .map(|(index, piece)| if index % 2 == 0 { piece } else { "code" })
            .collect();
        for piece in prose.split("](").skip(1) {
            if let Some((target, _)) = piece.split_once(')') {
                links.push((number, target.to_owned()));
            }
        }
    }
    links
}

/// `path` with its `..` parts taken out: `docs/../README.md` is `README.md`.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut normal = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// What is wrong with each relative link of `documents`: a file that does
/// not exist, or an anchor that no heading of its document has.
fn broken_links(root: &Path, documents: &[(String, String)]) -> Vec<String> {
    let mut broken = Vec::new();
    for (document, text) in documents {
        for (line, target) in links(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                Path::new(document).to_path_buf()
            } else {
                normalize(
                    &Path::new(document)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(path),
                )
            };
            let known = documents
                .iter()
                .find(|(name, _)| Path::new(name) == linked)
                .map(|(_, text)| text.clone());
            let Some(text) = known.or_else(|| {
                let file = root.join(&linked);
                file.exists()
                    .then(|| std::fs::read_to_string(&file).unwrap_or_default())
            }) else {
                broken.push(format!("{document}:{line}: {target}: no such file"));
                continue;
            };
            let Some(fragment) = fragment else { continue };
            if !anchors(&text).iter().any(|known| known == fragment) {
                broken.push(format!(
                    "{document}:{line}: {target}: {} has no heading with anchor #{fragment}",
                    linked.display()
                ));
            }
        }
    }
    broken
}

#[test]
fn every_link_between_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documents = documents();
    let broken = broken_links(root, &documents);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The README leads to every reference document.
    let readme = &documents[0].1;
    for (document, _) in &documents[1..] {
        assert!(
            readme.contains(&format!("]({document}")),
            "README.md does not link {document}"
        );
    }
}

#[test]
fn the_link_checker_finds_missing_files_and_anchors() {
    assert_eq!(
        anchor("TLS and authentication: --web.config.file"),
        "tls-and-authentication---webconfigfile"
    );
    assert_eq!(
        anchor("Load-balancer health: `/health/<group>`"),
        "load-balancer-health-healthgroup"
    );
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n## A"),
        ["a", "a-1", "a-2"]
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documents = [(
        "docs/x.md".to_owned(),
        "# Here\n[ok](#here) [bad](#there) [`c`](../Cargo.toml) [gone](nowhere.md)\n\
         `[not](a-link.md)` [web](https://example.org/#x)\n\
         [far](../README.md#two-commands) [far-bad](../README.md#no-such-heading)\n"
            .to_owned(),
    )];
    let broken = broken_links(root, &documents);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(
        broken[0].starts_with("docs/x.md:2: #there: "),
        "{broken:#?}"
    );
    assert!(
        broken[1].contains("nowhere.md: no such file"),
        "{broken:#?}"
    );
    assert!(broken[2].contains("#no-such-heading"), "{broken:#?}");
}

/// The repository paths a document names in backquotes, such as
/// `` `src/lib.rs` `` or `` `bench/soak.sh` ``, with their line numbers;
/// patterns (`*`, `<...>`) and paths with arguments are left out.
fn named_paths(markdown: &str) -> Vec<(usize, String)> {
    const ROOTS: [&str; 9] = [
        "src/",
        "tests/",
        "bench/",
        "examples/",
        "dashboards/",
        "docs/",
        ".ci/",
        "ci/",
        "Cargo",
    ];
    let mut paths = Vec::new();
    for (number, line) in markdown.lines().enumerate() {
        for span in line.split('`').skip(1).step_by(2) {
            let path = span.trim_end_matches(['.', ',', ':']);
            let is_path = ROOTS.iter().any(|root| path.starts_with(root))
                && !path.contains(['*', '<', ' ', '$', '=', '{'])
                && (path.contains('/') || path.contains('.'));
            if is_path {
                paths.push((number + 1, path.to_owned()));
            }
        }
    }
    paths
}

/// Fails unless at least `least` things were `checked` (so that a check
/// that finds nothing to check cannot pass) and none is `missing`.
fn assert_all_found(checked: usize, least: usize, what: &str, missing: &[String], why: &str) {
    assert!(checked >= least, "only {checked} {what}");
    assert!(missing.is_empty(), "{why}:\n{}", missing.join("\n"));
}

/// The files and folders the docs name exist: a rename that forgets the
/// docs fails here.
#[test]
fn every_file_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut named = 0;
    for (document, text) in documents() {
        for (line, path) in named_paths(&text) {
            named += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{document}:{line}: {path}"));
            }
        }
    }
    assert_all_found(named, 30, "paths named", &missing, "named but missing");
    assert_eq!(
        named_paths("see `src/lib.rs`, `bench/*.sh`, `tests/x.rs --flag` and `bench/soak.sh`."),
        [
            (1, "src/lib.rs".to_owned()),
            (1, "bench/soak.sh".to_owned())
        ]
    );
}

/// The long flags of a `--help` text, with the default each shows.
fn flags_of_help(help: &str) -> Vec<(String, Option<String>)> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("-h, ")
                .or(line.strip_prefix("-V, "))
                .or(line.strip_prefix("-v, "))
                .unwrap_or(line);
            let name = line.strip_prefix("--")?.split([' ', '\t']).next()?;
            let default = line
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(value, _)| value.to_owned());
            Some((format!("--{name}"), default))
        })
        .collect()
}

fn help_of(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_synack_exporter"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Every flag of `synack_exporter --help` has a row in the flag table of
/// docs/configuration.md that gives its default, and every flag of the
/// health-checker mode is in docs/migration.md.
#[test]
fn every_flag_is_documented_with_its_default() {
    let flags = flags_of_help(&help_of(&["--help"]));
    assert!(flags.len() >= 17, "{flags:?}");
    let configuration = repo_file("docs/configuration.md");
    for (flag, default) in &flags {
        let row = configuration
            .lines()
            .find(|line| line.starts_with(&format!("| `{flag}` ")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no table row for {flag}"));
        if let Some(default) = default {
            assert!(
                row.contains(&format!("`{default}`")),
                "the row of {flag} does not give its default `{default}`: {row}"
            );
        }
    }
    let checker = flags_of_help(&help_of(&["health-checker", "--help"]));
    assert!(checker.len() >= 8, "{checker:?}");
    let migration = repo_file("docs/migration.md");
    for (flag, default) in &checker {
        assert!(
            migration.contains(&format!("`{flag}`")),
            "docs/migration.md does not name {flag}"
        );
        if let Some(default) = default {
            assert!(
                migration.contains(default.as_str()),
                "docs/migration.md does not give {flag}'s default {default}"
            );
        }
    }
}

/// Every series the exporter writes is in docs/metrics.md, on a table row
/// that names it and gives its HELP text as the exporter writes it: on
/// `/probe` for a module with attempts, an exec module and a `prober: tcp`
/// one, and on
/// `/metrics` with scheduled targets of both kinds and a web config.
/// A loopback port whose SYNs are dropped: a listener with a backlog of
/// 0 and one connection queued, so the accept queue is full and the
/// kernel drops further SYNs (a probe of it times out). Returns the
/// listener, the queued connection (keep both) and the port.
fn full_backlog() -> (socket2::Socket, std::net::TcpStream, u16) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    listener.bind(&address.into()).unwrap();
    listener.listen(0).unwrap();
    let local = listener.local_addr().unwrap().as_socket().unwrap();
    let queued = std::net::TcpStream::connect(local).unwrap();
    (listener, queued, local.port())
}

#[tokio::test]
async fn every_series_is_in_the_metrics_reference_with_its_help() {
    let dir = TempDir::new("metrics-reference");
    let script = dir.write("ok.sh", "#!/bin/sh\nexit 0\n");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let web = dir.write(
        "web.yml",
        "basic_auth_users:\n  prometheus: $2y$10$QBgJKsBQlYQxogY/a4IXv./ZvvY1CHbpSqWvnk0PuRq5dIp3S5j2i\n",
    );
    let (_listener, port) = common::open_port();
    let (_full, _queued, silent) = full_backlog();
    let config = format!(
        "modules:\n  ping: {{prober: tcp_halfopen, tcp: {{attempts: 2, attempt_interval: 10ms}}}}\n  \
         ok: {{prober: exec, exec: {{command: [\"{}\"]}}}}\n  \
         blackbox: {{prober: tcp, timeout: 2s, tcp: {{preferred_ip_protocol: ip4}}}}\n  \
         closed: {{prober: tcp_halfopen, tcp: {{expect_port: closed}}}}\n  \
         traced: {{prober: tcp_halfopen, timeout: 400ms, tcp: {{trace_on_timeout: true}}}}\n\
         targets:\n  - {{module: traced, interval: 1s, targets: [\"127.0.0.1:{silent}\"]}}\n  - {{module: tcp_halfopen, interval: 1s, targets: [\"127.0.0.1:{port}\"]}}\n  \
         - {{module: closed, interval: 1s, targets: [\"127.0.0.1:{port}\"]}}\n  \
         - {{module: ok, interval: 1s, targets: [\"127.0.0.1:{port}\"]}}\n",
        script.display()
    );
    let exporter =
        common::TestExporter::with_config(&config, Exporter::builder().web_config_file(&web)).await;
    let auth = common::http::basic("prometheus", "change-me");
    let get = |path: String| {
        let auth = auth.clone();
        let exporter = &exporter;
        async move {
            let response = exporter.get_with(&path, &[("Authorization", &auth)]).await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
            response.body
        }
    };
    let mut texts = vec![
        get(format!("/probe?module=ping&target=127.0.0.1:{port}")).await,
        get("/probe?module=ok".to_owned()).await,
        // blackbox_exporter's own prober, with its regex and bytes gauges.
        get(format!("/probe?module=blackbox&target=127.0.0.1:{port}")).await,
        // A negative check, with the port's answer.
        get(format!("/probe?module=closed&target=127.0.0.1:{port}")).await,
        // A timeout, traced: loopback has no hop, so the series is 0.
        get(format!("/probe?module=traced&target=127.0.0.1:{silent}")).await,
    ];
    assert!(
        texts[4].contains("probe_trace_last_hop{address=\"\"} 0\n"),
        "{}",
        texts[4]
    );
    // The scheduled exec target's exit code shows once it has run.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = get("/metrics".to_owned()).await;
        let ran = ["probe_exec_exit_code{", "probe_trace_last_hop{"]
            .iter()
            .all(|series| metrics.contains(series));
        if ran || std::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    texts.push(metrics);
    let reference = repo_file("docs/metrics.md");
    let mut missing = Vec::new();
    let mut series = 0;
    for line in texts.iter().flat_map(|text| text.lines()) {
        let Some((name, help)) = line
            .strip_prefix("# HELP ")
            .and_then(|rest| rest.split_once(' '))
        else {
            continue;
        };
        series += 1;
        let documented = reference.lines().any(|row| {
            row.starts_with('|')
                && (row.contains(&format!("`{name}`")) || row.contains(&format!("`{name}{{")))
                && row.contains(help)
        });
        if !documented {
            missing.push(format!("{name}: {help}"));
        }
    }
    assert_all_found(
        series,
        50,
        "HELP lines read",
        &missing,
        "docs/metrics.md lacks a row naming these series with their HELP text",
    );
}
