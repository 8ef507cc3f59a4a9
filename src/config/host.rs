//! What a config asks of the host it runs on, checked when it is loaded:
//! settings that are valid YAML but would fail every probe of a module on
//! this host.
//!
//! - An `exec` module's program, `command[0]`, must be found and be
//!   executable, looked up as the exec prober does ([`find_program`]): a
//!   name with a `/` as written (relative to the working directory), any
//!   other in the module's `env` `PATH` or else the exporter's own.
//! - A `source_ip_address` must be an address this host can bind: a
//!   socket of its family is bound to it, port 0, and closed at once.
//! - A `prober: tcp` module that shakes hands with TLS must have usable
//!   inline PEM (`ca`, `cert`, `key`) and a key that is the certificate's
//!   ([`TlsMaterial::load`]). A CA, certificate or key *file* that cannot
//!   serve is not an error but a located note ([`tls_file_notes`]): as
//!   in blackbox_exporter, which reads them at each probe, the module
//!   loads and its probes fail as `tls`.
//!
//! - A `source_interface`, `mark` or `dscp` that the kernel refuses on a
//!   throwaway socket (an interface that does not exist, a missing
//!   capability) is a located note, not an error ([`route_notes`]).
//!
//! - A module with `engine: raw` on a host that refuses the exporter a raw
//!   socket (no `CAP_NET_RAW`) is a located note ([`raw_engine_notes`]).
//!
//! These run on every load from a file or from text ([`Config::load`],
//! [`Config::parse_for_this_host`]): at start-up, at every reload, and in
//! `--config.check`, so that the check and the exporter agree. A reload
//! that fails them keeps the config in force, as for any other error.
//! [`Config::parse`] alone does not look at the host.
//!
//! Both can still change after the load (a script deleted, an address
//! removed); the probe then fails as `local` and its detail says which.

#![forbid(unsafe_code)]

use super::{
    Config, ConfigError, Engine, ExecOptions, RAW_ENGINE_CAPABILITY, TlsMaterial, parse_yaml,
    scheduled::located, set_route_options,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// `PATH` for commands when the exporter runs without one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The exporter's `PATH`, read once: the environment does not change.
pub(crate) static EXPORTER_PATH: LazyLock<OsString> =
    LazyLock::new(|| std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()));

/// The `PATH` a module's command is looked up in and runs with: the
/// module's `env` `PATH` when it sets one, else the exporter's.
pub(crate) fn command_path(options: &ExecOptions) -> OsString {
    options
        .env()
        .get("PATH")
        .map_or_else(|| EXPORTER_PATH.clone(), OsString::from)
}

/// The file to execute for `program`: itself when it holds a `/`, else
/// the first regular file of that name in `path` that has an execute bit.
///
/// Looked up here rather than left to `execvp`, because glibc's `execvp`
/// runs a file it found in `PATH` with `/bin/sh` when the kernel refuses
/// it with `ENOEXEC`: a script without `#!` would then run through a
/// shell instead of failing as the exec prober's docs say.
///
/// # Errors
/// `EACCES` when only files without an execute bit were found, else
/// `ENOENT`: the errors `execvp` would report.
pub(crate) fn find_program(program: &str, path: &OsStr) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let mut denied = false;
    for directory in std::env::split_paths(path) {
        // An empty entry is the working directory, as for execvp.
        let candidate = if directory.as_os_str().is_empty() {
            Path::new(".").join(program)
        } else {
            directory.join(program)
        };
        match std::fs::metadata(&candidate) {
            Ok(file) if file.is_file() && is_executable(&file) => return Ok(candidate),
            Ok(file) if file.is_file() => denied = true,
            _ => {}
        }
    }
    let errno = if denied { libc::EACCES } else { libc::ENOENT };
    Err(io::Error::from_raw_os_error(errno))
}

/// Whether a file has an execute bit, as [`find_program`] requires.
fn is_executable(file: &std::fs::Metadata) -> bool {
    file.permissions().mode() & 0o111 != 0
}

/// Why the program of `options` cannot run on this host, if it cannot.
fn program_problem(options: &ExecOptions) -> Option<String> {
    let program = options.command().first()?;
    let path = command_path(options);
    let whose_path = if options.env().contains_key("PATH") {
        "the module's env PATH"
    } else {
        "PATH"
    };
    let path_text = path.to_string_lossy();
    let file = match find_program(program, &path) {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::EACCES) => {
            return Some(format!(
                "program {program:?} is in {whose_path} ({path_text}) only as a file without \
                 execute permission: chmod +x it"
            ));
        }
        Err(_) => {
            return Some(format!(
                "program {program:?} is not in {whose_path} ({path_text}): install it, write its \
                 absolute path, or set PATH under env:"
            ));
        }
    };
    // A name found in PATH is an executable file; a path is as written.
    let why = match std::fs::metadata(&file) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            "does not exist: install it or correct the path".to_owned()
        }
        Err(error) => format!("cannot be looked at: {error}"),
        Ok(found) if found.is_dir() => "is a directory, not a program".to_owned(),
        Ok(found) if !found.is_file() => "is not a regular file".to_owned(),
        Ok(found) if !is_executable(&found) => format!(
            "is not executable (mode {:04o}): chmod +x it",
            found.permissions().mode() & 0o7777
        ),
        Ok(_) => return None,
    };
    Some(format!("program {program:?} {why}"))
}

/// Why this host cannot send from `source`, if it cannot: the bind a
/// probe makes, on a socket of the address's family, port 0.
fn source_problem(source: IpAddr) -> Option<String> {
    let address = SocketAddr::new(source, 0);
    let bound = Socket::new(
        Domain::for_address(address),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )
    .and_then(|socket| socket.bind(&SockAddr::from(address)));
    let error = bound.err()?;
    let family = if source.is_ipv4() { "ipv4" } else { "ipv6" };
    let why = match error.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => format!(
            "{source} is not an address of this host: use one it has (ip address shows them), or \
             allow sending from addresses it does not have with sysctl net.{family}.ip_nonlocal_bind=1"
        ),
        Some(libc::EAFNOSUPPORT) => {
            format!("this host has no {family} (the kernel refuses the family)")
        }
        // The kernel binds a link-local address only with its interface
        // (a scope), which a source_ip_address cannot name.
        Some(libc::EINVAL) if source.is_ipv6() && is_link_local(source) => format!(
            "{source} is link-local, and a link-local address is bound only together with its \
             interface, which source_ip_address cannot name: use a global or unique-local \
             address of this host"
        ),
        _ => error.to_string(),
    };
    Some(format!("this host cannot send from {source}: {why}"))
}

/// Whether `address` is an IPv6 link-local unicast address, fe80::/10.
fn is_link_local(address: IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Where the fields this module checks are written, read from the text
/// again when a check fails: the config itself keeps no positions.
#[derive(Deserialize)]
struct FileSpots {
    #[serde(default)]
    modules: BTreeMap<String, ModuleSpots>,
}

#[derive(Deserialize)]
struct ModuleSpots {
    #[serde(default)]
    prober: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    exec: Option<ExecSpots>,
    #[serde(default)]
    tcp: Option<TcpSpots>,
}

#[derive(Deserialize)]
struct ExecSpots {
    command: Vec<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
struct TcpSpots {
    #[serde(default)]
    source_ip_address: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    source_interface: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    mark: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    dscp: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    engine: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    tls_config: Option<BTreeMap<String, Spanned<IgnoredAny>>>,
}

/// Runs the checks of the module docs on `config`, parsed from `text`.
///
/// # Errors
/// The first problem found, at the field: `modules.NAME.exec.command[0]`
/// or `modules.NAME.tcp.source_ip_address`, or the `tls_config` field
/// at fault.
pub(super) fn check(file: &str, text: &str, config: &Config) -> Result<(), ConfigError> {
    for (name, module) in &config.modules {
        if let Some(probe) = module.prober().tcp_probe()
            && probe.shakes_hands()
            && let Err(refused) = TlsMaterial::load(&probe.tls_config)
            && !is_file_field(refused.field)
        {
            let field = refused.field;
            let at = |spots: ModuleSpots| spots.tcp?.tls_config?.remove(field);
            return Err(locate(
                file,
                text,
                name,
                &format!("tcp.tls_config.{field}"),
                at,
                refused.message,
            ));
        }
        if let Some(problem) = module.prober().exec().and_then(program_problem) {
            let at = |spots: ModuleSpots| spots.exec?.command.into_iter().next();
            return Err(locate(file, text, name, "exec.command[0]", at, problem));
        }
        if let Some(problem) = module
            .tcp()
            .and_then(|tcp| tcp.source_ip_address)
            .and_then(source_problem)
        {
            let at = |spots: ModuleSpots| spots.tcp?.source_ip_address;
            return Err(locate(
                file,
                text,
                name,
                "tcp.source_ip_address",
                at,
                problem,
            ));
        }
    }
    Ok(())
}

/// Fills in where each module set aside writes its `prober:`, read from
/// `text` again: only a file with such modules pays for it.
pub(super) fn locate_probers(
    file: &str,
    text: &str,
    unsupported: &mut BTreeMap<String, super::Unsupported>,
) {
    if unsupported.is_empty() {
        return;
    }
    let Ok(spots) = parse_yaml::<FileSpots>(file, text) else {
        return;
    };
    for (name, spot) in spots.modules {
        if let (Some(set_aside), Some(prober)) = (unsupported.get_mut(&name), spot.prober) {
            set_aside.at = Some((prober.referenced.line(), prober.referenced.column()));
        }
    }
}

/// The note of each module of `modules`, parsed from `text`, whose
/// `tls_config.min_version` is below TLS 1.2, where it is written.
pub(super) fn min_version_notes(
    file: &str,
    text: &str,
    modules: &BTreeMap<String, super::Module>,
) -> Vec<ConfigError> {
    modules
        .iter()
        .filter_map(|(name, module)| {
            let note = module.prober().tcp_probe()?.min_version_note()?;
            let at = |spots: ModuleSpots| spots.tcp?.tls_config?.remove("min_version");
            let field = "tcp.tls_config.min_version";
            Some(locate(
                file,
                text,
                name,
                field,
                at,
                format!("module {name:?} {note}"),
            ))
        })
        .collect()
}

/// Whether `field` of `tls_config` names a file (`ca_file`, `cert_file`,
/// `key_file`) rather than holding PEM itself.
fn is_file_field(field: &str) -> bool {
    field.ends_with("_file")
}

/// The note of each module of `config`, parsed from `text`, that shakes
/// hands with a `tls_config` file that cannot serve now (missing,
/// unreadable, no PEM, a key that is not the certificate's), where it is
/// written. blackbox_exporter reads these files at each probe, so its
/// config loads and that module's probes fail: so here, the module loads
/// and its probes fail as `tls`, saying which file and why
/// (`prober::tls::TlsSetup::new`). PEM written in the config itself
/// (`ca`, `cert`, `key`) is the config's own text: an error
/// ([`check`]).
pub(super) fn tls_file_notes(file: &str, text: &str, config: &Config) -> Vec<ConfigError> {
    config
        .modules
        .iter()
        .filter_map(|(name, module)| {
            let probe = module.prober().tcp_probe()?;
            if !probe.shakes_hands() {
                return None;
            }
            let refused = TlsMaterial::load(&probe.tls_config).err()?;
            if !is_file_field(refused.field) {
                return None;
            }
            let field = refused.field;
            let at = |spots: ModuleSpots| spots.tcp?.tls_config?.remove(field);
            Some(locate(
                file,
                text,
                name,
                &format!("tcp.tls_config.{field}"),
                at,
                format!(
                    "{}; module {name:?} loads, as in blackbox_exporter, and its probes fail \
                     with reason tls until the file can be used",
                    refused.message
                ),
            ))
        })
        .collect()
}

/// The note of each module of `config`, parsed from `text`, whose
/// `source_interface`, `mark` or `dscp` this host refuses now, where it
/// is written: the options are set on a throwaway socket, by the setter
/// the probes use ([`set_route_options`]), so that the note and a probe's
/// detail say the same. Notes, not errors: an interface may come later (a
/// VPN link, a VRF made after the exporter starts), and a capability is
/// the service manager's to grant; until then the module's probes fail
/// as `local`, naming the interface or the capability.
pub(super) fn route_notes(file: &str, text: &str, config: &Config) -> Vec<ConfigError> {
    config
        .modules
        .iter()
        .filter_map(|(name, module)| {
            let options = module.tcp()?;
            if options.source_interface.is_none()
                && options.mark.is_none()
                && options.dscp.is_none()
            {
                return None;
            }
            let (socket, destination) = throwaway_socket().ok()?;
            let refused = set_route_options(&socket, options, destination).err()?;
            let field = refused.field;
            let at = |spots: ModuleSpots| {
                let tcp = spots.tcp?;
                match field {
                    "source_interface" => tcp.source_interface,
                    "mark" => tcp.mark,
                    _ => tcp.dscp,
                }
            };
            Some(locate(
                file,
                text,
                name,
                &format!("tcp.{field}"),
                at,
                format!(
                    "module {name:?}: {}; its probes fail with reason local until then",
                    refused.hint()
                ),
            ))
        })
        .collect()
}

/// The note of each module of `config`, parsed from `text`, with
/// `engine: raw` when this host refuses the exporter a raw socket now (no
/// `CAP_NET_RAW`), where it is written. A note, not an error, as for a
/// `mark` without its capability: the service manager grants it, and
/// until then the module's probes fail as `local`, saying the same.
pub(super) fn raw_engine_notes(file: &str, text: &str, config: &Config) -> Vec<ConfigError> {
    let raw_modules: Vec<&String> = config
        .modules
        .iter()
        .filter(|(_, module)| {
            module
                .tcp()
                .is_some_and(|options| options.engine == Engine::Raw)
        })
        .map(|(name, _)| name)
        .collect();
    if raw_modules.is_empty() {
        return Vec::new();
    }
    // A host without IPv4 says nothing of the capability.
    let refused = crate::sys::can_open_raw()
        .err()
        .filter(|error| error.raw_os_error() != Some(libc::EAFNOSUPPORT));
    let Some(error) = refused else {
        return Vec::new();
    };
    raw_modules
        .into_iter()
        .map(|name| {
            locate(
                file,
                text,
                name,
                "tcp.engine",
                |spots| spots.tcp?.engine,
                match error.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => format!(
                        "module {name:?}: this host refuses the exporter a raw socket: \
                         {RAW_ENGINE_CAPABILITY}; its probes fail with reason local until then"
                    ),
                    _ => format!(
                        "module {name:?}: the exporter cannot open a raw socket here ({error}); \
                         its probes fail with reason local until it can, or use engine: socket"
                    ),
                },
            )
        })
        .collect()
}

/// A TCP socket to try options on, IPv4 where the host has it, else IPv6,
/// with an address of its family (documentation ranges: nothing is sent).
fn throwaway_socket() -> io::Result<(Socket, IpAddr)> {
    let v4 = IpAddr::from([192, 0, 2, 1]);
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map(|socket| (socket, v4))
        .or_else(|_| {
            let v6 = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
            Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).map(|socket| (socket, v6))
        })
}

/// The error for `field` of module `name`, at its position in `text` as
/// `at` finds it among the module's spots.
fn locate(
    file: &str,
    text: &str,
    name: &str,
    field: &str,
    at: impl FnOnce(ModuleSpots) -> Option<Spanned<IgnoredAny>>,
    problem: String,
) -> ConfigError {
    let field = format!("modules.{name}.{field}");
    let spot = parse_yaml::<FileSpots>(file, text)
        .ok()
        .and_then(|mut spots| spots.modules.remove(name))
        .and_then(at);
    located(
        file,
        spot.as_ref().map(|spot| &spot.referenced),
        field,
        problem,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory with `files`, each `(name, mode)` a script.
    fn scratch(name: &str, files: &[(&str, u32)]) -> PathBuf {
        let dir = crate::config::tests::temp_file(name)
            .parent()
            .expect("a directory")
            .to_owned();
        for (file, mode) in files {
            let path = dir.join(file);
            std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        dir
    }

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse_for_this_host("zk.yml", yaml)
    }

    fn exec(command: &str, env: &str) -> String {
        format!(
            "modules:\n  ok:\n    prober: tcp_connect\n  zk:\n    prober: exec\n    exec:\n      command: {command}\n{env}"
        )
    }

    #[test]
    fn a_program_that_cannot_run_is_a_located_error() {
        let dir = scratch("host-programs", &[("good.sh", 0o755), ("plain.sh", 0o644)]);
        let in_dir = |name: &str| dir.join(name).display().to_string();
        let (good, plain, missing) = (in_dir("good.sh"), in_dir("plain.sh"), in_dir("missing.sh"));
        let folder = dir.display().to_string();
        let path_env = format!("      env: {{PATH: {folder:?}}}\n");
        assert!(load(&exec(&format!("[{good:?}, \"{{host}}\"]"), "")).is_ok());
        assert!(load(&exec("[\"good.sh\"]", &path_env)).is_ok(), "in PATH");
        for (command, env, needle) in [
            (format!("[{missing:?}]"), "", "does not exist"),
            (format!("[{plain:?}]"), "", "is not executable (mode 0644)"),
            (format!("[{folder:?}]"), "", "is a directory"),
            (
                "[\"synack-no-such-program\"]".to_owned(),
                "",
                "is not in PATH (",
            ),
            (
                "[\"good.sh\", \"x\"]".to_owned(),
                "      env: {PATH: \"/nonexistent\"}\n",
                "is not in the module's env PATH (/nonexistent)",
            ),
            (
                "[\"plain.sh\"]".to_owned(),
                path_env.as_str(),
                "only as a file without execute permission",
            ),
        ] {
            let error = load(&exec(&command, env)).expect_err(&command);
            error.assert_says("zk.yml:7:17: field `modules.zk.exec.command[0]`", &[needle]);
        }
        // Parsing alone does not look at the host.
        assert!(Config::parse("zk.yml", &exec(&format!("[{missing:?}]"), "")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_source_address_this_host_lacks_is_a_located_error() {
        let module = |source: &str| {
            format!(
                "modules:\n  from:\n    prober: tcp_halfopen\n    tcp: {{source_ip_address: \"{source}\"}}\n"
            )
        };
        assert!(load(&module("127.0.0.2")).is_ok(), "all of 127/8 is local");
        // 192.0.2.0/24 is TEST-NET-1: documentation only, never assigned.
        let error = load(&module("192.0.2.77")).expect_err("not an address of this host");
        error.assert_says(
            "zk.yml:4:30: field `modules.from.tcp.source_ip_address`",
            &[
                "192.0.2.77 is not an address of this host",
                "net.ipv4.ip_nonlocal_bind",
            ],
        );
    }

    /// A `tls_config` file that cannot serve does not stop the config, as
    /// in blackbox_exporter (which reads it at each probe): the module
    /// loads, and the load notes, located, which file and why. PEM
    /// written in the config itself is the config's own error.
    #[test]
    fn a_tls_file_that_cannot_serve_is_a_located_note_and_inline_pem_an_error() {
        let dir = scratch("host-tls", &[]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let cert_path = dir.join("cert.pem").display().to_string();
        let key_path = dir.join("other.key").display().to_string();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, other_key.serialize_pem()).unwrap();
        let module = |tls: &str, files: &str| {
            format!("modules:\n  tls:\n    prober: tcp\n    tcp:\n{tls}      tls_config:\n{files}")
        };
        let noted = |yaml: &str| {
            let config = load(yaml).expect("a TLS file is not a load error");
            assert!(config.modules.contains_key("tls"), "the module loads");
            let warnings = config.warnings("zk.yml");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            warnings.into_iter().next().unwrap()
        };
        let missing = format!(
            "        ca_file: {:?}\n",
            dir.join("no.pem").display().to_string()
        );
        noted(&module("      tls: true\n", &missing)).assert_says(
            "zk.yml:7:18: field `modules.tls.tcp.tls_config.ca_file`",
            &[
                "no.pem: cannot read the file: no such file",
                "its probes fail with reason tls",
            ],
        );
        let mismatch =
            format!("        cert_file: {cert_path:?}\n        key_file: {key_path:?}\n");
        noted(&module("      tls: true\n", &mismatch)).assert_says(
            "zk.yml:8:19: field `modules.tls.tcp.tls_config.key_file`",
            &["is not the key of the certificate in cert_file"],
        );
        // Inline PEM is the config's own text: a located error.
        let inline = "        ca: \"not PEM\"\n";
        let error = load(&module("      tls: true\n", inline)).expect_err("inline PEM");
        error.assert_says(
            "zk.yml:7:13: field `modules.tls.tcp.tls_config.ca`",
            &["holds no PEM CERTIFICATE block"],
        );
        // A module that never shakes hands does not use its tls_config,
        // as in blackbox_exporter: its files are not read.
        let unused = load(&module("      query_response: [{send: hi}]\n", &missing)).unwrap();
        assert!(unused.warnings("zk.yml").is_empty());
        // Parsing alone does not read them.
        let parsed = Config::parse("zk.yml", &module("      tls: true\n", &missing)).unwrap();
        assert!(parsed.warnings("zk.yml").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A link-local IPv6 address cannot be bound without the interface it
    /// belongs to, which `source_ip_address` has no way to name: the
    /// kernel says EINVAL whether the host has the address or not. Said
    /// as such, not as "Invalid argument (os error 22)".
    #[test]
    fn a_link_local_source_address_is_refused_saying_why() {
        let error = load(
            "modules:\n  from:\n    prober: tcp_halfopen\n    tcp: {source_ip_address: \"fe80::1\"}\n",
        )
        .expect_err("a link-local address cannot be bound without its interface");
        assert_eq!(error.position, Some((4, 30)), "{error}");
        assert!(!error.message.contains("os error"), "{error}");
        if !error.message.contains("this host has no ipv6") {
            assert!(error.message.contains("fe80::1 is link-local"), "{error}");
        }
    }
}
