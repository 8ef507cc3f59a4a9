//! Network namespaces for tests that stage faults with nftables, which
//! only root can: a test re-executes its own binary under `ip netns exec`
//! in a namespace it creates, with rules on that namespace's `lo`, and
//! removes the namespace afterwards. `tests/netns/faults.rs` explains why
//! it is done this way.

use crate::common::run_bounded;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one `ip` or `nft` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// A test in a namespace of its own whose only interface is `lo`: the
/// parent test makes the namespace and runs the child test in it.
pub struct Child<'a> {
    /// The start of the namespace's name.
    pub prefix: &'a str,
    /// The nftables rules loaded in the namespace (`nft -f -`).
    pub ruleset: &'a str,
    /// The variable that tells the child it is inside the namespace.
    pub env: &'a str,
    /// The child test's path, `module_path!()` and its name, as
    /// [`namespace_test!`] writes it (`netns::faults::netns_child_...`).
    pub test: &'a str,
    /// How long the whole child run may take before it is killed.
    pub limit: Duration,
}

impl Child<'_> {
    /// The parent's part: checks the prerequisites (skipping, or failing
    /// under `SYNACK_SYSTEM_TESTS=require`, when one is missing), makes
    /// the namespace with `lo` up and the rules loaded, runs the child
    /// test in it and fails unless the child ran and passed. Does nothing
    /// in the child (`env` set), where the parent test runs too.
    pub fn run_parent(&self) {
        if std::env::var_os(self.env).is_some() {
            return;
        }
        if let Err(missing) = prerequisites() {
            crate::common::skip_or_fail(&missing);
            return;
        }
        let name = namespace_name(self.prefix);
        let _namespace = match NamespaceGuard::add(&name) {
            Ok(guard) => guard,
            Err(missing) => {
                crate::common::skip_or_fail(&missing);
                return;
            }
        };

        run_checked(
            Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]),
            None,
        );
        run_checked(
            Command::new("ip").args(["netns", "exec", &name, "nft", "-f", "-"]),
            Some(self.ruleset),
        );
        run_child_in(
            &name,
            &ChildTest {
                env: self.env,
                // libtest's names leave out the crate's.
                test: self
                    .test
                    .split_once("::")
                    .map_or(self.test, |(_, test)| test),
                limit: self.limit,
            },
        );
    }

    /// The child's part: passes at once outside the namespace (`env`
    /// unset); inside, checks that `lo` is the only interface, runs
    /// `cases` (which panic on a wrong one) and prints the marker the
    /// parent demands.
    pub fn run_child(&self, cases: impl FnOnce()) {
        if !entered_loopback_child(self.env) {
            return;
        }
        cases();
        println!("{}", done_marker(self.env));
    }
}

/// Declares the two tests of a [`Child`] and the constant that describes
/// it: the parent, which makes the namespace with `ruleset` loaded and runs
/// the child test in it, and the child, which runs `cases` there (they
/// panic on a wrong case) and passes at once anywhere else.
macro_rules! namespace_test {
    (
        $(#[$parent_meta:meta])*
        parent: $parent:ident,
        $(#[$child_meta:meta])*
        child: $child:ident => $cases:path,
        prefix: $prefix:expr,
        ruleset: $ruleset:expr,
        env: $env:expr,
        limit: $limit:expr $(,)?
    ) => {
        const CHILD: $crate::namespace::Child = $crate::namespace::Child {
            prefix: $prefix,
            ruleset: $ruleset,
            env: $env,
            test: concat!(module_path!(), "::", stringify!($child)),
            limit: $limit,
        };

        $(#[$parent_meta])*
        #[test]
        fn $parent() {
            CHILD.run_parent();
        }

        $(#[$child_meta])*
        #[test]
        fn $child() {
            CHILD.run_child($cases);
        }
    };
}
pub(crate) use namespace_test;

/// An nftables ruleset of one table of the `inet` family (IPv4 and IPv6
/// alike) with one filter chain, `<hook>_filter`, on `hook`, accepting what
/// none of `rules` matches; at compile time, for [`Child::ruleset`]. (A
/// chain cannot be called `fwd`, an nft keyword, hence the long names.)
macro_rules! filter_table {
    ($table:literal, $hook:literal, [$($rule:expr),* $(,)?]) => {
        concat!(
            "table inet ", $table, " {\n",
            "    chain ", $hook, "_filter {\n",
            "        type filter hook ", $hook, " priority 0; policy accept;\n",
            $("        ", $rule, "\n",)*
            "    }\n",
            "}\n",
        )
    };
}
pub(crate) use filter_table;

/// Declares ports, each a `u16` constant, and `const $ruleset: &str`, the
/// [`filter_table!`] of the rules for SYNs to them, so that each port
/// number is written once, for the cases and the rules alike. A port's
/// rules are nft statements after `tcp dport <port>`, each for one family
/// only when it starts with `ipv4` or `ipv6` (`meta nfproto`):
///
/// ```ignore
/// firewall! {
///     const RULESET = table "synack_netns_x" hook "input";
///     /// Dropped.
///     const PORT_DROP = 7001 => "drop";
///     /// Rejected, in each family's own words.
///     const PORT_REJECT = 7002 => ipv4 "reject with icmp type host-unreachable",
///                                 ipv6 "reject with icmpv6 type addr-unreachable";
/// }
/// ```
macro_rules! firewall {
    (
        $(#[$ruleset_meta:meta])*
        const $ruleset:ident = table $table:literal hook $hook:literal;
        $(
            $(#[$port_meta:meta])*
            const $port:ident = $number:literal => $($($family:ident)? $rule:literal),+;
        )*
    ) => {
        $(
            $(#[$port_meta])*
            const $port: u16 = $number;
        )*

        $(#[$ruleset_meta])*
        const $ruleset: &str = $crate::namespace::filter_table!(
            $table,
            $hook,
            [$($(concat!(
                $("meta nfproto ", stringify!($family), " ",)?
                "tcp dport ",
                stringify!($number),
                " ",
                $rule
            )),+),*]
        );
    };
}
pub(crate) use firewall;

/// A child test to run in a namespace that the caller has set up.
pub struct ChildTest<'a> {
    /// The variable that tells the child it is inside the namespace.
    pub env: &'a str,
    /// The libtest name of the child test, run with `--exact`.
    pub test: &'a str,
    /// How long the whole child run may take before it is killed.
    pub limit: Duration,
}

/// What a child whose environment variable is `env` prints once every
/// case has been checked; demanded by the parent, so that a child that
/// silently did nothing cannot pass.
pub fn done_marker(env: &str) -> String {
    format!("{env}: all cases checked")
}

/// This test binary, to run only `test` under `ip netns exec namespace`
/// with `env` set.
pub fn child_command(namespace: &str, env: &str, test: &str) -> Command {
    let exe = std::env::current_exe().expect("path of the running test binary");
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, "1");
    command
}

/// A test of this binary running in the background in a namespace (a
/// listener, say), killed on drop.
pub struct NamespaceProcess {
    process: std::process::Child,
}

impl NamespaceProcess {
    /// Starts `test` under `ip netns exec namespace` with `env` set; its
    /// stderr is the caller's, its stdout discarded.
    pub fn start(namespace: &str, env: &str, test: &str) -> Self {
        let process = child_command(namespace, env, test)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("start {test} in namespace {namespace}: {error}"));
        Self { process }
    }
}

impl Drop for NamespaceProcess {
    fn drop(&mut self) {
        // `ip netns exec` execs the command, so this pid is the test binary.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs this test binary's `wanted.test` under `ip netns exec namespace`
/// and fails unless the child ran and passed.
pub fn run_child_in(namespace: &str, wanted: &ChildTest) {
    let name = namespace;
    let started = Instant::now();
    let child = run_bounded(
        &mut child_command(name, wanted.env, wanted.test),
        None,
        wanted.limit,
    )
    .unwrap_or_else(|error| panic!("cannot run the child test in namespace {name}: {error}"));
    let transcript = format!(
        "child {} after {:.3}s\n--- child stdout ---\n{}\n--- child stderr ---\n{}",
        child.status,
        started.elapsed().as_secs_f64(),
        child.stdout,
        child.stderr
    );
    // Shown with --nocapture, and by libtest whenever an assertion fails.
    eprintln!("{transcript}");
    assert!(
        child.status.success(),
        "the child test failed inside namespace {name}:\n{transcript}"
    );
    assert!(
        child.stdout.contains("1 passed") && child.stdout.contains(&done_marker(wanted.env)),
        "the child exited 0 but did not run its cases (test renamed?):\n{transcript}"
    );
}

/// The child's start: `false` outside the namespace (`child_env` unset),
/// where the child test then passes without doing anything; inside, it
/// checks that `lo` is the only interface ([`assert_only_loopback`]) and
/// ends libtest's `test NAME ... ` line, so the child's prints start on
/// lines of their own.
pub fn entered_loopback_child(child_env: &str) -> bool {
    if std::env::var_os(child_env).is_none() {
        return false;
    }
    assert_only_loopback(child_env);
    println!();
    true
}

/// Refuses to probe unless this process is in a namespace whose only
/// interface is `lo`: the rules and probes are meant for a private
/// loopback, never for the host's network.
pub fn assert_only_loopback(child_env: &str) {
    assert_only_interfaces(child_env, &["lo"]);
}

/// Refuses to probe unless this process is in a namespace whose
/// interfaces are exactly `expected` (in the kernel's order): for tests
/// whose namespace also has veths that the test made itself. The host's
/// namespace has its own interfaces, so it never matches.
pub fn assert_only_interfaces(child_env: &str, expected: &[&str]) {
    // /proc/self/net shows the network namespace of this process.
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim())
        .collect();
    assert_eq!(
        interfaces, expected,
        "{child_env} is set but this is not the test's namespace (only {expected:?} expected); refusing to probe"
    );
}

/// 127.0.0.1 and ::1, the addresses a child in a namespace with only
/// `lo` probes.
pub const LOOPBACKS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// Listeners on `addresses`, kept open by the caller; never
/// accepted from, which is fine: the kernel completes handshakes into
/// the backlog by itself.
pub fn listeners(addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<TcpListener> {
    addresses
        .into_iter()
        .map(|address| {
            TcpListener::bind(address)
                .unwrap_or_else(|error| panic!("bind the listener on {address}: {error}"))
        })
        .collect()
}

/// A child's tokio runtime, with two workers as on the small machines
/// the exporter is meant for.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A child's tokio runtime on its own thread, for probes one at a time.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Root, `ip` and `nft`; `Err` names what is missing.
pub fn prerequisites() -> Result<(), String> {
    if !running_as_root() {
        return Err("not running as root (network namespaces and nftables need it)".to_owned());
    }
    for (tool, version_flag) in [("ip", "-V"), ("nft", "--version")] {
        match run_bounded(Command::new(tool).arg(version_flag), None, COMMAND_LIMIT) {
            Ok(result) if result.status.success() => {}
            Ok(result) => {
                return Err(format!(
                    "`{tool} {version_flag}` failed ({}): {}",
                    result.status,
                    result.stderr.trim()
                ));
            }
            Err(error) => return Err(format!("`{tool}` is not available: {error}")),
        }
    }
    Ok(())
}

/// Whether the effective uid is 0, read from /proc, else from `id -u`.
fn running_as_root() -> bool {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
            // real, effective, saved, filesystem
            Some(uids.split_whitespace().nth(1) == Some("0"))
        });
    if let Some(root) = from_proc {
        return root;
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A name no other run uses: the pid, plus the clock in case a pid is
/// reused after a run that was killed before it could clean up.
pub fn namespace_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Checks the prerequisites and makes one namespace per role, named
/// `<prefix>-<pid>-<nanos>-<role>`, deleted on drop (with their veths);
/// `None` when something is missing, after skipping the test (or failing
/// it under `SYNACK_SYSTEM_TESTS=require`).
pub fn namespaces<const N: usize>(prefix: &str, roles: [&str; N]) -> Option<[NamespaceGuard; N]> {
    if let Err(missing) = prerequisites() {
        crate::common::skip_or_fail(&missing);
        return None;
    }
    let base = namespace_name(prefix);
    let mut made = Vec::new();
    for role in roles {
        match NamespaceGuard::add(&format!("{base}-{role}")) {
            Ok(guard) => made.push(guard),
            Err(missing) => {
                crate::common::skip_or_fail(&missing);
                return None;
            }
        }
    }
    made.try_into().ok()
}

/// Sets each of `links` up, per namespace.
pub fn links_up(links: &[(&str, &[&str])]) {
    for (namespace, names) in links {
        for link in *names {
            ip(&["-n", namespace, "link", "set", link, "up"]);
        }
    }
}

/// Adds each `(namespace, link, address/prefix)`; IPv6 ones `nodad`,
/// usable at once.
pub fn add_addresses(addresses: &[(&str, &str, String)]) {
    for (namespace, link, address) in addresses {
        let mut args = vec!["-n", namespace, "addr", "add", address, "dev", link];
        if address.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }
}

/// Deletes the namespace on drop, so that it goes away (with its rules,
/// sockets and veths) even when an assertion fails first.
pub struct NamespaceGuard {
    name: String,
}

impl NamespaceGuard {
    /// `ip netns add name`; `Err` says why it could not be made (for
    /// [`crate::common::skip_or_fail`]: a kernel or container without netns).
    pub fn add(name: &str) -> Result<Self, String> {
        let added = run_bounded(
            Command::new("ip").args(["netns", "add", name]),
            None,
            COMMAND_LIMIT,
        );
        match added {
            Ok(result) if result.status.success() => Ok(Self {
                name: name.to_owned(),
            }),
            Ok(result) => Err(format!(
                "`ip netns add {name}` failed ({}): {}",
                result.status,
                result.stderr.trim()
            )),
            Err(error) => Err(format!("cannot run `ip netns add {name}`: {error}")),
        }
    }

    /// The namespace's name, for `ip netns exec` and `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let deleted = run_bounded(
            Command::new("ip").args(["netns", "delete", &self.name]),
            None,
            COMMAND_LIMIT,
        );
        match deleted {
            Ok(result) if result.status.success() => {}
            Ok(result) => eprintln!(
                "warning: `ip netns delete {}` failed ({}): {}",
                self.name,
                result.status,
                result.stderr.trim()
            ),
            Err(error) => eprintln!("warning: cannot delete namespace {}: {error}", self.name),
        }
    }
}

/// `ip` with these arguments, which must succeed.
pub fn ip(args: &[&str]) {
    run_checked(Command::new("ip").args(args), None);
}

/// Writes `value` to `/proc/sys/<key>` inside `namespace`: `/proc/sys/net`
/// shows the network namespace of the process that opens it, and `tee`
/// (coreutils) is everywhere, unlike `sysctl` (procps).
pub fn write_proc_sys(namespace: &str, key: &str, value: &str) {
    run_checked(
        Command::new("ip").args([
            "netns",
            "exec",
            namespace,
            "tee",
            &format!("/proc/sys/{key}"),
        ]),
        Some(value),
    );
}

/// Runs a setup command that must succeed, or fails the test with its
/// output. The namespace exists by now, so a failure here is a real
/// problem (such as a kernel without nf_tables), not a missing tool.
pub fn run_checked(command: &mut Command, stdin: Option<&str>) {
    let shown = format!("{command:?}");
    let result = run_bounded(command, stdin, COMMAND_LIMIT)
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    assert!(
        result.status.success(),
        "{shown} failed ({}):\n{}{}",
        result.status,
        result.stdout,
        result.stderr
    );
}

/// A `TcpExt` counter of this process's network namespace
/// (`/proc/self/net/netstat`, as `nstat` reads it): `DelayedACKs`,
/// `LockDroppedIcmps`...; 0 when the kernel has no such counter.
pub fn tcp_ext(name: &str) -> u64 {
    let netstat =
        std::fs::read_to_string("/proc/self/net/netstat").expect("read /proc/self/net/netstat");
    // Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
    let mut tcp_ext = netstat
        .lines()
        .filter_map(|line| line.strip_prefix("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        panic!("no TcpExt lines in /proc/self/net/netstat");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(found, _)| *found == name)
        .map_or(0, |(_, value)| value.parse().expect("a TcpExt count"))
}

/// The packet counts of the named counters of nftables table `inet
/// table`, by name: in `namespace` (`ip netns exec`), or in this
/// process's own when `None`.
pub fn named_counters(namespace: Option<&str>, table: &str) -> BTreeMap<String, u64> {
    let mut command = match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace, "nft"]);
            command
        }
        None => Command::new("nft"),
    };
    command.args(["list", "counters", "table", "inet", table]);
    let listed = run_bounded(&mut command, None, COMMAND_LIMIT).expect("nft list counters");
    assert!(listed.status.success(), "{}", listed.stderr);
    let mut counters = BTreeMap::new();
    let mut name = None;
    for line in listed.stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("counter ") {
            name = rest.split_whitespace().next().map(str::to_owned);
        } else if let (Some(packets), Some(name)) = (line.strip_prefix("packets "), name.take()) {
            let count = packets.split_whitespace().next().unwrap_or_default();
            counters.insert(name, count.parse().expect("a packet count"));
        }
    }
    counters
}

/// What each counter of `before` gained by `after` (both from
/// [`named_counters`] of one table).
pub fn counters_gained(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, count)| (name.clone(), count - before[name]))
        .collect()
}
