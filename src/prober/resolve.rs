//! From a host to the one IP address a probe uses.
//!
//! # Which address
//!
//! The choice follows blackbox_exporter: take an address of the preferred
//! family; if there is none and fallback is on, take one of the other
//! family; otherwise fail as `dns`. IP literals skip the lookup but obey
//! the same family rule, so a config that forbids IPv4 forbids it for
//! literals too; as nothing was looked up, a forbidden literal fails as
//! `local`, and the detail names the option ([`family_refusal`]). Names are asked for the preferred family's record (A or
//! AAAA) first and for the other only when fallback allows it and the
//! first had none, so an IPv4 module costs one query per name.
//!
//! With `ip_addresses: all` every allowed family is asked at once. Once
//! one has answered with addresses, the others are waited for until a
//! tenth of the timeout before the probe's last start
//! ([`super::Budget::last_start`]); a family still unanswered then is left
//! out, and the addresses found are probed (Go's resolver also asks A and
//! AAAA at once, but waits for both until the deadline, which here would
//! leave no time to probe).
//!
//! # How names are looked up
//!
//! A [`Resolver`] is a stub resolver (hickory-resolver) in the exporter's
//! own process:
//!
//! - `/etc/hosts` first, as glibc's `hosts: files dns` does: a name listed
//!   there (`localhost`) is answered from the file alone and never sent to
//!   a name server. This check is ours, not hickory's, because hickory
//!   consults the file only for the first name of the search list.
//! - Then the name servers, search domains and `options` (`ndots`,
//!   `timeout`, `attempts`) of `/etc/resolv.conf`, or the servers given
//!   with `--dns.server`, which replace resolv.conf's servers but keep its
//!   search domains and options. Without any server, as glibc does, the
//!   one on 127.0.0.1:53.
//! - Answers are cached for their TTL (NXDOMAIN and empty answers for the
//!   TTL of their SOA record, as RFC 2308 says), so scheduled targets do
//!   not query every interval; concurrent lookups of one name share one
//!   query.
//! - The probe's deadline bounds every lookup. The query is a task that
//!   is aborted at the deadline, with its socket: nothing outlives it.
//!
//! Both files are read when the resolver is built, once per exporter at
//! start-up (and on the first call of [`crate::check`]), never on the
//! probe path. A change to them takes a restart.
//!
//! # Why not getaddrinfo
//!
//! getaddrinfo blocks, so tokio ran each call on a thread of its blocking
//! pool, and a timeout only stopped waiting for it: the thread stayed
//! until glibc gave up (resolv.conf's `timeout` × `attempts` per server).
//! 1,000 lookups of names that the server never answered grew the
//! exporter to 516 threads, and `localhost`, queued behind them for a
//! thread, failed as `dns` at its deadline (issue 8).
//!
//! # Where the work runs
//!
//! Probes run on the probe thread (see [`crate::runner`]), whose job is to
//! close half-open sockets before the kernel's ~200 ms delayed ACK. A
//! query is not free: it opens a UDP socket, sends, later decodes the
//! answer and closes the socket, and at a deadline hickory's state for it
//! is torn down. Run on the probe thread, 1,000 lookups that reached their
//! deadline together held it for 20 to 140 ms (debug build, two shared
//! cores): half-open probes of 127.0.0.1 in that moment took that long
//! instead of under 1 ms.
//!
//! So an exporter's queries run on a thread of their own, the DNS thread,
//! which [`crate::runner::ProbeRunner`] starts next to the probe thread
//! and hands to its resolver ([`Resolver::run_on`]). The probe thread
//! checks `/etc/hosts` itself (a hash lookup), spawns the query onto the
//! DNS thread and waits for the answer until the deadline, then aborts
//! the query. With that, the same 1,000 deadlines left half-open probes
//! at most 7.5 ms slow (`tests/integration/dns.rs`). A cached answer now costs a hop
//! between threads, a few microseconds.
//!
//! hickory spawns one background task per name-server connection, with
//! `tokio::spawn` on the runtime that first needs it: here the DNS
//! thread, like every query. For UDP it only hands each query back to the
//! task that asked. [`crate::check`] has no such thread and queries in the
//! caller's task, with one resolver per tokio runtime: a connection task
//! left on another runtime that stops being driven would hold every
//! lookup until its deadline.
//!
//! Nothing limits lookups per name or per server: lookups of different
//! names are separate tasks with their own queries (lookups of one name
//! share one), so a name that is never answered holds only its own
//! probes, and `localhost` or a name the server answers resolve at once
//! beside 1,000 such lookups (`tests/integration/dns.rs`). The exporter has one DNS
//! thread however many lookups run.

#![forbid(unsafe_code)]

use super::{Budget, Failure, Reason, Step, StepLog};
use crate::config::{IpProtocol, MAX_ADDRESSES, TcpOptions};
use crate::target::Host;
use crate::task::AbortOnDrop;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::runtime::Handle;
use tokio::time::Instant;

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The name servers, search domains and `/etc/hosts` of an exporter, with
/// its TTL cache. Build it once and share it: see the module docs.
#[derive(Clone)]
pub(crate) struct Resolver {
    shared: Arc<Shared>,
    /// Where queries run; `None` runs them in the task that asks.
    runtime: Option<Handle>,
}

/// What every clone of a [`Resolver`] shares, the cache included.
struct Shared {
    dns: TokioResolver,
    hosts: Arc<Hosts>,
    servers: Arc<str>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("servers", &self.shared.servers)
            .field("own_runtime", &self.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver that reads `/etc/resolv.conf` and `/etc/hosts` now; when
    /// `servers` is not empty, they replace resolv.conf's name servers.
    ///
    /// This reads files, so call it at start-up, not on the probe thread.
    /// Problems with resolv.conf are logged, not returned: the exporter
    /// can still probe IP literals and names in `/etc/hosts`.
    #[must_use]
    pub(crate) fn from_system(servers: &[SocketAddr]) -> Self {
        SystemConfig::read(servers).build()
    }

    /// The same resolver, running its queries as tasks on `runtime`
    /// rather than in the task that asks.
    #[must_use]
    pub(crate) fn run_on(self, runtime: Handle) -> Self {
        Self {
            runtime: Some(runtime),
            ..self
        }
    }

    /// The name servers asked, such as `127.0.0.53:53`.
    #[must_use]
    pub(crate) fn servers(&self) -> &str {
        &self.shared.servers
    }

    /// The addresses of `name`, of the families `options` allow, most
    /// wanted first, by `deadline`; an empty list when the name has no
    /// such address. With `every_by`, of every family allowed, asked at
    /// once (see [`Shared::query_every`]); without, of the first family
    /// that has any.
    async fn lookup(
        &self,
        name: &str,
        options: &TcpOptions,
        deadline: Instant,
        every_by: Option<Instant>,
        steplog: &mut StepLog,
    ) -> Result<Vec<IpAddr>, Failure> {
        let query_name = Name::from_ascii(name).map_err(|error| {
            Failure::new(
                Reason::Dns,
                format!("{name} is not a valid DNS name: {error}"),
            )
        })?;
        // A hash lookup: not worth a trip to the DNS thread.
        if let Some(listed) = self.shared.in_hosts_file(&query_name) {
            steplog.log(|| Step::InHostsFile(listed.clone()));
            return Ok(listed);
        }
        if is_under_invalid(name) {
            return Err(Failure::new(
                Reason::Dns,
                format!(
                    "{name} does not exist: names under .invalid never do (RFC 6761), so no name server was asked"
                ),
            ));
        }
        let too_late = || {
            Failure::new(
                Reason::Dns,
                format!(
                    "resolving {name} did not finish before the deadline: no answer from name servers {}",
                    self.servers()
                ),
            )
        };
        let Some(runtime) = &self.runtime else {
            let query = self.shared.query(&query_name, options, every_by, steplog);
            return tokio::time::timeout_at(deadline, query)
                .await
                .map_err(|_| too_late())?;
        };
        let shared = Arc::clone(&self.shared);
        let options = options.clone();
        let mut steps = steplog.fork();
        let task = runtime.spawn(async move {
            let query = shared.query(&query_name, &options, every_by, &mut steps);
            (tokio::time::timeout_at(deadline, query).await, steps)
        });
        // Dropped at the deadline or with the probe: the query stops too.
        let _cancel = AbortOnDrop::new(task.abort_handle());
        // Both sides watch the deadline, so that the answer is on time
        // even when the DNS thread is late; only the query's own steps
        // are then missing from the step log.
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok((answer, steps))) => {
                steplog.join(steps);
                answer.map_err(|_| too_late())?
            }
            Ok(Err(_)) => Err(Failure::new(Reason::Local, "the DNS thread stopped")),
            Err(_) => Err(too_late()),
        }
    }
}

impl Shared {
    /// Asks the name servers for `name`'s addresses: with `every_by`,
    /// every family at once ([`Self::query_every`]); without it, family
    /// by family in the order `options` want, until one has addresses.
    async fn query(
        &self,
        name: &Name,
        options: &TcpOptions,
        every_by: Option<Instant>,
        steplog: &mut StepLog,
    ) -> Result<Vec<IpAddr>, Failure> {
        if let Some(every_by) = every_by {
            return self.query_every(name, options, every_by, steplog).await;
        }
        for kind in query_order(options) {
            let addresses = self.query_family(name, kind, steplog).await?;
            if !addresses.is_empty() {
                return Ok(addresses);
            }
        }
        Ok(Vec::new())
    }

    /// Asks for every family `options` allow at once, for `ip_addresses:
    /// all`. Once one family has given addresses, the others are waited
    /// for only until `every_by` (shortly before the probe's last start,
    /// [`Budget::last_start`]): a family whose
    /// query is never answered then costs neither the addresses found nor
    /// the time to probe them. The addresses come in the order of
    /// [`query_order`]; a family's failure fails the lookup only when no
    /// family gave an address.
    async fn query_every(
        &self,
        name: &Name,
        options: &TcpOptions,
        every_by: Instant,
        steplog: &mut StepLog,
    ) -> Result<Vec<IpAddr>, Failure> {
        let kinds: Vec<RecordType> = query_order(options).collect();
        let mut answers: Vec<Option<Result<Vec<IpAddr>, Failure>>> =
            kinds.iter().map(|_| None).collect();
        let mut pending: FuturesUnordered<_> = kinds
            .iter()
            .enumerate()
            .map(|(index, &kind)| {
                let mut steps = steplog.fork();
                async move {
                    let answer = self.query_family(name, kind, &mut steps).await;
                    (index, answer, steps)
                }
            })
            .collect();
        loop {
            let found = answers
                .iter()
                .any(|answer| matches!(answer, Some(Ok(addresses)) if !addresses.is_empty()));
            let next = if found {
                tokio::time::timeout_at(every_by, pending.next()).await
            } else {
                Ok(pending.next().await)
            };
            match next {
                Ok(Some((index, answer, steps))) => {
                    steplog.join(steps);
                    answers[index] = Some(answer);
                }
                Ok(None) => break,
                Err(_) => {
                    let unanswered: Vec<&str> = kinds
                        .iter()
                        .zip(&answers)
                        .filter(|(_, answer)| answer.is_none())
                        .map(|(kind, _)| record_name(*kind))
                        .collect();
                    tracing::debug!(%name, ?unanswered, "ip_addresses: all probes the addresses found; the other queries were too late");
                    break;
                }
            }
        }
        let mut found = Vec::new();
        let mut first_failure = None;
        for answer in answers.into_iter().flatten() {
            match answer {
                Ok(addresses) => found.extend(addresses),
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        match first_failure {
            Some(failure) if found.is_empty() => Err(failure),
            _ => Ok(found),
        }
    }

    /// Asks the name servers for `name`'s records of type `kind`: its
    /// addresses, none when the name has no such record.
    async fn query_family(
        &self,
        name: &Name,
        kind: RecordType,
        steplog: &mut StepLog,
    ) -> Result<Vec<IpAddr>, Failure> {
        steplog.log(|| Step::Asking {
            servers: Arc::clone(&self.servers),
            record: record_name(kind),
        });
        let addresses = match self.dns.lookup(name.clone(), kind).await {
            Ok(answer) => addresses(answer.answers().iter().map(|record| &record.data)),
            Err(error) if error.is_nx_domain() => {
                return Err(Failure::new(
                    Reason::Dns,
                    format!("{name} does not exist (NXDOMAIN from {})", self.servers),
                ));
            }
            // The name exists but has no record of this type.
            Err(error) if error.is_no_records_found() => Vec::new(),
            Err(error) => {
                return Err(Failure::new(
                    Reason::Dns,
                    format!("resolving {kind} {name} failed: {}", describe(&error)),
                ));
            }
        };
        steplog.log(|| Step::Answer {
            record: record_name(kind),
            addresses: addresses.clone(),
        });
        Ok(addresses)
    }

    /// Every address `/etc/hosts` lists for `name`, if it lists the name.
    fn in_hosts_file(&self, name: &Name) -> Option<Vec<IpAddr>> {
        let mut found = false;
        let mut listed = Vec::new();
        for kind in [RecordType::A, RecordType::AAAA] {
            if let Some(lookup) = self
                .hosts
                .lookup_static_host(&Query::query(name.clone(), kind))
            {
                found = true;
                listed.extend(addresses(
                    lookup.answers().iter().map(|record| &record.data),
                ));
            }
        }
        found.then_some(listed)
    }
}

/// The resolver of [`crate::check`]: one per tokio runtime, from files
/// read on the first call. See the module docs for why not one per process.
pub(crate) fn for_check() -> Resolver {
    static SYSTEM: OnceLock<SystemConfig> = OnceLock::new();
    static CURRENT: Mutex<Option<(tokio::runtime::Id, Resolver)>> = Mutex::new(None);
    let runtime = tokio::runtime::Handle::current().id();
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    match &*current {
        Some((id, resolver)) if *id == runtime => resolver.clone(),
        _ => {
            let resolver = SYSTEM.get_or_init(|| SystemConfig::read(&[])).build();
            *current = Some((runtime, resolver.clone()));
            resolver
        }
    }
}

/// What the files said, from which resolvers are built without reading
/// them again.
#[derive(Clone)]
struct SystemConfig {
    config: ResolverConfig,
    options: ResolverOpts,
    hosts: Arc<Hosts>,
}

impl SystemConfig {
    fn read(servers: &[SocketAddr]) -> Self {
        let hosts = Hosts::from_system().unwrap_or_else(|error| {
            tracing::warn!(file = "/etc/hosts", err = %error, "cannot read the hosts file; names are looked up in DNS only");
            Hosts::default()
        });
        Self::new(std::fs::read(RESOLV_CONF), servers, hosts)
    }

    /// From the text of resolv.conf (or why it could not be read).
    fn new(resolv_conf: std::io::Result<Vec<u8>>, servers: &[SocketAddr], hosts: Hosts) -> Self {
        let (mut config, options) = match resolv_conf
            .map_err(NetError::from)
            .and_then(hickory_resolver::system_conf::parse_resolv_conf)
        {
            Ok(parsed) => parsed,
            Err(error) => {
                if servers.is_empty() {
                    tracing::warn!(
                        file = RESOLV_CONF,
                        err = %error,
                        "cannot use the resolver config; asking 127.0.0.1:53 as glibc does. \
                         Fix the file or pass --dns.server=IP:PORT"
                    );
                }
                let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
                let config = ResolverConfig::from_parts(None, Vec::new(), servers_config(&[local]));
                (config, ResolverOpts::default())
            }
        };
        if !servers.is_empty() {
            config = ResolverConfig::from_parts(
                config.domain().cloned(),
                config.search().to_vec(),
                servers_config(servers),
            );
        }
        Self {
            config,
            options,
            hosts: Arc::new(hosts),
        }
    }

    fn build(&self) -> Resolver {
        let mut options = self.options.clone();
        // Our own check of /etc/hosts comes first; see Shared::in_hosts_file.
        options.use_hosts_file = ResolveHosts::Never;
        let servers = self
            .config
            .name_servers()
            .iter()
            .flat_map(|server| {
                server
                    .connections
                    .iter()
                    .take(1)
                    .map(move |connection| SocketAddr::new(server.ip, connection.port))
            })
            .map(|address| address.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut builder = TokioResolver::builder_with_config(
            self.config.clone(),
            TokioRuntimeProvider::default(),
        );
        *builder.options_mut() = options;
        let dns = builder
            .build()
            .expect("a resolver without TLS or DNSSEC builds from any config");
        Resolver {
            shared: Arc::new(Shared {
                dns,
                hosts: Arc::clone(&self.hosts),
                servers: servers.into(),
            }),
            runtime: None,
        }
    }
}

/// UDP, and TCP for truncated answers, to each of `servers`.
fn servers_config(servers: &[SocketAddr]) -> Vec<NameServerConfig> {
    servers
        .iter()
        .map(|server| {
            let on_port = |mut connection: ConnectionConfig| {
                connection.port = server.port();
                connection
            };
            NameServerConfig::new(
                server.ip(),
                true,
                vec![
                    on_port(ConnectionConfig::udp()),
                    on_port(ConnectionConfig::tcp()),
                ],
            )
        })
        .collect()
}

/// Whether `name` is `invalid` or under it. RFC 6761 reserves the domain
/// for names that must not exist and asks resolvers to answer NXDOMAIN
/// without sending a query.
fn is_under_invalid(name: &str) -> bool {
    name.trim_end_matches('.')
        .rsplit('.')
        .next()
        .is_some_and(|top| top.eq_ignore_ascii_case("invalid"))
}

fn addresses<'a>(data: impl Iterator<Item = &'a RData>) -> Vec<IpAddr> {
    data.filter_map(|data| match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    })
    .collect()
}

fn describe(error: &NetError) -> String {
    match error {
        NetError::Timeout => "no answer from the name servers".to_owned(),
        other => other.to_string(),
    }
}

/// The record types to ask for, in order: the preferred family's, then
/// the other's when fallback allows it; only the source address's family
/// when one is set, since only it can be connected from.
fn query_order(options: &TcpOptions) -> impl Iterator<Item = RecordType> + use<> {
    let (preferred, other) = match options.preferred_ip_protocol {
        IpProtocol::Ip4 => (RecordType::A, RecordType::AAAA),
        IpProtocol::Ip6 => (RecordType::AAAA, RecordType::A),
    };
    let source = options.source_ip_address;
    [
        Some(preferred),
        options.ip_protocol_fallback.then_some(other),
    ]
    .into_iter()
    .flatten()
    .filter(move |kind| source.is_none_or(|ip| ip.is_ipv4() == (*kind == RecordType::A)))
}

/// Resolves `host` and picks an address allowed by `options`.
pub(super) async fn resolve(
    host: &Host,
    options: &TcpOptions,
    resolver: &Resolver,
    deadline: Instant,
    steplog: &mut StepLog,
) -> Result<IpAddr, Failure> {
    let looked_up;
    let candidates = match host {
        Host::Ip(ip) => std::slice::from_ref(ip),
        Host::Name(name) => {
            steplog.log(|| Step::Resolving);
            looked_up = resolver
                .lookup(name, options, deadline, None, steplog)
                .await?;
            looked_up.as_slice()
        }
    };
    let chosen = choose(candidates, options).ok_or_else(|| no_allowed_address(host, options))?;
    steplog.log(|| Step::Chose(chosen));
    Ok(chosen)
}

/// The failure of a probe of `host` that has no address `options` allow.
fn no_allowed_address(host: &Host, options: &TcpOptions) -> Failure {
    match host {
        // Nothing was looked up: the module itself forbids the address.
        Host::Ip(ip) => Failure::new(
            Reason::Local,
            family_refusal(*ip, options).unwrap_or_default(),
        ),
        Host::Name(_) => Failure::new(
            Reason::Dns,
            format!(
                "{host} has no address of an allowed family (preferred_ip_protocol {}, \
                 ip_protocol_fallback {}, source_ip_address {})",
                options.preferred_ip_protocol,
                options.ip_protocol_fallback,
                options
                    .source_ip_address
                    .map_or_else(|| "none".to_owned(), |source| source.to_string())
            ),
        ),
    }
}

/// Resolves `host` to every address `options` allow, for
/// `ip_addresses: all`: the preferred family's first, then (with
/// `ip_protocol_fallback`) the other's, only the source address's family
/// when one is set, without repeats, at most [`MAX_ADDRESSES`] (the step
/// debug log says how many were left out). An IP literal is that one address.
pub(super) async fn resolve_all(
    host: &Host,
    options: &TcpOptions,
    resolver: &Resolver,
    budget: Budget,
    steplog: &mut StepLog,
) -> Result<Vec<IpAddr>, Failure> {
    let Host::Name(name) = host else {
        return resolve(host, options, resolver, budget.deadline, steplog)
            .await
            .map(|ip| vec![ip]);
    };
    steplog.log(|| Step::Resolving);
    // A tenth of the timeout before the last start, so that the answer
    // is back on the probe thread before it: see `Shared::query_every`.
    let every_by = budget
        .last_start
        .checked_sub(budget.timeout / 10)
        .unwrap_or(budget.last_start);
    let looked_up = resolver
        .lookup(name, options, budget.deadline, Some(every_by), steplog)
        .await?;
    let mut chosen: Vec<IpAddr> = Vec::with_capacity(looked_up.len().min(MAX_ADDRESSES));
    let preferred_first = looked_up
        .iter()
        .filter(|ip| IpProtocol::of(**ip) == options.preferred_ip_protocol)
        .chain(
            looked_up
                .iter()
                .filter(|ip| IpProtocol::of(**ip) != options.preferred_ip_protocol),
        );
    let mut left_out = 0;
    for ip in preferred_first {
        if chosen.contains(ip) || choose(std::slice::from_ref(ip), options).is_none() {
            continue;
        }
        if chosen.len() == MAX_ADDRESSES {
            left_out += 1;
        } else {
            chosen.push(*ip);
        }
    }
    let Some(first) = chosen.first().copied() else {
        return Err(no_allowed_address(host, options));
    };
    steplog.log(|| Step::Chose(first));
    if left_out > 0 {
        tracing::debug!(%name, left_out, "ip_addresses: all probes the first {MAX_ADDRESSES} addresses");
    }
    Ok(chosen)
}

/// Why `options` forbid probing the IP literal `ip`, or `None` when they
/// allow it: a source address of the other family, or a family that is
/// not preferred without `ip_protocol_fallback`. Such a probe could never
/// be sent, so scheduled targets and groups fail it as `local` and
/// `/probe` refuses it with 400.
pub(crate) fn family_refusal(ip: IpAddr, options: &TcpOptions) -> Option<String> {
    if choose(&[ip], options).is_some() {
        return None;
    }
    let family = IpProtocol::of(ip);
    if let Some(source) = options
        .source_ip_address
        .filter(|source| source.is_ipv4() != ip.is_ipv4())
    {
        return Some(format!(
            "target {ip} is an {family} address and the module's source_ip_address {source} is {}: \
             a probe cannot go from one family to the other; use a module without it, or a target of its family",
            IpProtocol::of(source)
        ));
    }
    Some(format!(
        "target {ip} is an {family} address and the module allows only {} \
         (preferred_ip_protocol: {}, ip_protocol_fallback: false): use a module that allows {family}",
        options.preferred_ip_protocol, options.preferred_ip_protocol
    ))
}

/// The name of a query's record type, for the step log.
fn record_name(kind: RecordType) -> &'static str {
    match kind {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        _ => "other",
    }
}

fn choose(candidates: &[IpAddr], options: &TcpOptions) -> Option<IpAddr> {
    // With a source address, only its family can be connected from.
    let source_family_ok = |ip: &&IpAddr| {
        options
            .source_ip_address
            .is_none_or(|source| source.is_ipv4() == ip.is_ipv4())
    };
    let is_preferred = |ip: &&IpAddr| match options.preferred_ip_protocol {
        IpProtocol::Ip4 => ip.is_ipv4(),
        IpProtocol::Ip6 => ip.is_ipv6(),
    };
    let allowed = || candidates.iter().filter(source_family_ok);
    let preferred = allowed().find(is_preferred);
    let fallback = || {
        allowed()
            .find(|ip| !is_preferred(ip))
            .filter(|_| options.ip_protocol_fallback)
    };
    preferred.or_else(fallback).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(preferred: IpProtocol, fallback: bool) -> TcpOptions {
        TcpOptions {
            preferred_ip_protocol: preferred,
            ip_protocol_fallback: fallback,
            ..TcpOptions::default()
        }
    }

    #[test]
    fn prefers_the_configured_family_and_falls_back_only_when_allowed() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(choose(&[v6, v4], &options(IpProtocol::Ip4, true)), Some(v4));
        assert_eq!(choose(&[v4, v6], &options(IpProtocol::Ip6, true)), Some(v6));
        assert_eq!(choose(&[v6], &options(IpProtocol::Ip4, true)), Some(v6));
        assert_eq!(choose(&[v6], &options(IpProtocol::Ip4, false)), None);
        assert_eq!(choose(&[], &options(IpProtocol::Ip4, true)), None);
        let from_v6 = TcpOptions {
            source_ip_address: Some(v6),
            ..options(IpProtocol::Ip4, true)
        };
        assert_eq!(
            choose(&[v4, v6], &from_v6),
            Some(v6),
            "the source's family wins"
        );
        assert_eq!(choose(&[v4], &from_v6), None);
    }

    #[test]
    fn asks_for_the_preferred_family_first_and_the_other_only_with_fallback() {
        use RecordType::{A, AAAA};
        let order = |options: &TcpOptions| query_order(options).collect::<Vec<_>>();
        assert_eq!(order(&options(IpProtocol::Ip4, true)), [A, AAAA]);
        assert_eq!(order(&options(IpProtocol::Ip6, true)), [AAAA, A]);
        assert_eq!(order(&options(IpProtocol::Ip4, false)), [A]);
        assert_eq!(order(&options(IpProtocol::Ip6, false)), [AAAA]);
        let from_v4 = TcpOptions {
            source_ip_address: Some("127.0.0.1".parse().unwrap()),
            ..options(IpProtocol::Ip6, false)
        };
        assert_eq!(order(&from_v4), [], "an IPv4 source cannot reach AAAA");
    }

    #[test]
    fn names_with_underscores_or_a_final_dot_are_dns_names() {
        for name in [
            "db-1.example_x.org",
            "localhost.",
            "_srv._tcp.example.org",
            "a",
        ] {
            assert!(Name::from_ascii(name).is_ok(), "{name}");
        }
    }

    const RESOLV_CONF_TEXT: &str =
        "search corp.example\nnameserver 10.9.9.9\noptions ndots:3 timeout:1 attempts:4\n";

    #[test]
    fn resolv_conf_gives_servers_search_domains_and_options() {
        let system = SystemConfig::new(Ok(RESOLV_CONF_TEXT.into()), &[], Hosts::default());
        assert_eq!(system.build().servers(), "10.9.9.9:53");
        assert_eq!(
            system.config.search(),
            [Name::from_ascii("corp.example").unwrap()]
        );
        assert_eq!(system.options.ndots, 3);
        assert_eq!(system.options.timeout, std::time::Duration::from_secs(1));
        assert_eq!(system.options.attempts, 4);
    }

    #[test]
    fn dns_servers_replace_resolv_conf_servers_and_keep_the_rest() {
        let servers = [
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ];
        let system = SystemConfig::new(Ok(RESOLV_CONF_TEXT.into()), &servers, Hosts::default());
        assert_eq!(system.build().servers(), "127.0.0.1:5353, [::1]:53");
        assert_eq!(
            system.config.search(),
            [Name::from_ascii("corp.example").unwrap()]
        );
        assert_eq!(system.options.ndots, 3);
    }

    #[test]
    fn without_resolv_conf_the_local_server_is_asked_as_glibc_does() {
        let missing = Err(std::io::ErrorKind::NotFound.into());
        let system = SystemConfig::new(missing, &[], Hosts::default());
        assert_eq!(system.build().servers(), "127.0.0.1:53");
        let empty = SystemConfig::new(Ok(b"search corp.example\n".to_vec()), &[], Hosts::default());
        assert_eq!(empty.build().servers(), "127.0.0.1:53");
    }
}
