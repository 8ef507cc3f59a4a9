//! An IPv4-mapped IPv6 target (`[::ffff:127.0.0.1]:port`) is probed over
//! an IPv6 socket, but its ICMP errors are ICMP (IPv4) ones: the kernel
//! queues them on the socket's error queue with origin
//! `SO_EE_ORIGIN_ICMP` and an offender written as `::ffff:a.b.c.d`. The
//! probe must read them as ICMP, not ICMPv6, where type 3 is "time
//! exceeded": a port unreachable from the target itself is `refused`, and
//! the offender is the IPv4 address.
//!
//! The raw engine (`tcp: {engine: raw}`, issue 22) must read the same
//! from its own receive path: the ICMP error, the reason, the offender.
//!
//! The rules sit in the `output` chain of a namespace that the test
//! creates (see `tests/netns/faults.rs` for why it re-executes itself);
//! nothing leaves its loopback. Prerequisites as there.

use crate::namespace::{current_thread_runtime, firewall, namespace_test};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use synack_exporter::{Module, Reason};

firewall! {
    const RULESET = table "synack_netns_mapped" hook "output";
    /// Answered with ICMP port unreachable, as if by the target itself.
    const PORT_PORT_UNREACHABLE = 7101 => ipv4 "reject with icmp type port-unreachable";
    /// Answered with ICMP administratively prohibited.
    const PORT_ADMIN_PROHIBITED = 7102 => ipv4 "reject with icmp type admin-prohibited";
}

/// Below the 1 s SYN retransmission: an answered case ends at once.
const TIMEOUT: Duration = Duration::from_millis(500);

namespace_test! {
    parent: netns_mapped_icmp_errors_are_icmp,
    child: netns_mapped_child_probes => probe_mapped_targets,
    prefix: "synack-mapped",
    ruleset: RULESET,
    env: "SYNACK_NETNS_MAPPED_CHILD",
    limit: Duration::from_secs(30),
}

fn probe_mapped_targets() {
    let runtime = current_thread_runtime();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for (prober, engine) in crate::engines::matrix_probers() {
        for (port, code, reason) in [
            (PORT_PORT_UNREACHABLE, 3, Reason::Refused),
            (PORT_ADMIN_PROHIBITED, 13, Reason::Unreachable),
        ] {
            let target = format!("[::ffff:127.0.0.1]:{port}");
            let module = Module::new(prober.clone()).with_timeout(TIMEOUT);
            let outcome = runtime.block_on(crate::concurrent::check_valid_with(
                engine,
                target.clone(),
                module,
            ));
            let prober = crate::engines::label(&prober, engine);
            println!(
                "{prober} {target}: {:?} {:?}",
                outcome.failure,
                outcome.tcp().and_then(|tcp| tcp.icmp_error)
            );
            let icmp = outcome
                .tcp()
                .and_then(|tcp| tcp.icmp_error)
                .unwrap_or_else(|| panic!("{prober} {target}: no ICMP error in {outcome:?}"));
            assert_eq!(
                (icmp.ipv6, icmp.icmp_type, icmp.code, icmp.offender),
                (false, 3, code, Some(localhost)),
                "{prober} {target}: an ICMP (IPv4) error from 127.0.0.1"
            );
            assert_eq!(
                outcome.reason(),
                Some(reason),
                "{prober} {target}: {outcome:?}"
            );
            assert!(
                icmp.to_string().starts_with("ICMP destination unreachable"),
                "{prober} {target}: {icmp}"
            );
        }
    }
}
