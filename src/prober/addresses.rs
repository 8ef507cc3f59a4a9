//! `ip_addresses: all`: every address of a name probed at once.
//!
//! The name is checked by the target policy and resolved once (every
//! family the module allows, at most [`MAX_ADDRESSES`]); then each address
//! gets the module's handshake, all of them at once within the probe's one
//! budget. Each address's result is kept in [`Outcome::addresses`]; the
//! probe succeeds when any address does (`ip_addresses_success: any`) or
//! when all do (`all`). The rest of the outcome (address, detail, failure)
//! is the deciding address's: on success the first address that
//! succeeded, on failure the first address (in resolved order) that
//! failed, so that `probe_failure_reason` and the failure detail name one
//! address and one reason.

#![forbid(unsafe_code)]

use super::tcp::{self, Tcp};
use super::{AddressOutcome, Budget, Context, Detail, Outcome, StepLog, TcpDetail, resolve};
use crate::config::{IpAddressesSuccess, MAX_ADDRESSES};
use crate::target::Target;
use std::net::SocketAddr;
use tokio::time::Instant;

/// Probes every address of `target` with `tcp`; see the module docs.
pub(super) async fn probe(
    tcp: Tcp<'_>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let checked = tcp.policy.map(|policy| policy.check_target(target));
    let cleared = match checked.transpose() {
        Ok(cleared) => cleared,
        Err(refusal) => return Outcome::denied(&refusal),
    };
    let dns_started = Instant::now();
    let resolved = resolve::resolve_all(
        &target.host,
        tcp.options,
        &context.resolver,
        budget,
        steplog,
    )
    .await
    .and_then(|ips| {
        // `resolve_all` gives at least one address, or fails.
        tcp::left_enough_after_dns(ips[0], budget, dns_started)?;
        Ok(ips)
    });
    let dns_time = dns_started.elapsed();
    let ips = match resolved {
        Ok(ips) => ips,
        Err(failure) => return tcp::resolve_failed(failure, dns_time),
    };
    debug_assert!(ips.len() <= MAX_ADDRESSES);
    let probes = ips.iter().map(|&ip| {
        let mut steps = steplog.fork();
        async move {
            let refused = match (tcp.policy, cleared) {
                (Some(policy), Some(cleared)) => {
                    policy.check_address(cleared, ip, target.port).err()
                }
                _ => None,
            };
            let outcome = match refused {
                Some(refusal) => Outcome::denied(&refusal),
                None => {
                    let address = SocketAddr::new(ip, target.port);
                    tcp::probe_address(tcp, address, context, budget, &mut steps).await
                }
            };
            (ip, outcome, steps)
        }
    });
    let finished = futures_util::future::join_all(probes).await;
    let mut addresses = Vec::with_capacity(finished.len());
    let mut outcomes = Vec::with_capacity(finished.len());
    for (ip, outcome, steps) in finished {
        steplog.join(steps);
        addresses.push(AddressOutcome::new(ip, outcome.failure.clone()));
        outcomes.push(outcome);
    }
    let wanted = tcp.options.ip_addresses_success;
    let mut outcome = decide(outcomes, wanted);
    outcome.addresses = addresses;
    outcome.dns_time = dns_time;
    outcome
}

/// The outcome that stands for all of `outcomes` (one per address, at
/// least one): with `any`, the first success, else the first failure;
/// with `all`, the first failure, else the first success.
fn decide(outcomes: Vec<Outcome>, wanted: IpAddressesSuccess) -> Outcome {
    let first_success = outcomes.iter().position(Outcome::is_success);
    let first_failure = outcomes.iter().position(|outcome| !outcome.is_success());
    let chosen = match wanted {
        IpAddressesSuccess::Any => first_success.or(first_failure),
        IpAddressesSuccess::All => first_failure.or(first_success),
    };
    outcomes
        .into_iter()
        .nth(chosen.unwrap_or(0))
        .unwrap_or_else(|| Outcome::new(None, Detail::Tcp(TcpDetail::default())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::{Failure, Reason};

    fn ended(failure: Option<Reason>) -> Outcome {
        Outcome::new(
            failure.map(|reason| Failure::new(reason, reason.as_str())),
            Detail::Tcp(TcpDetail::default()),
        )
    }

    #[test]
    fn any_takes_the_first_success_and_all_the_first_failure() {
        let mixed = || {
            vec![
                ended(Some(Reason::Refused)),
                ended(None),
                ended(Some(Reason::Timeout)),
            ]
        };
        assert_eq!(decide(mixed(), IpAddressesSuccess::Any).reason(), None);
        assert_eq!(
            decide(mixed(), IpAddressesSuccess::All).reason(),
            Some(Reason::Refused)
        );
        let up = || vec![ended(None), ended(None)];
        assert_eq!(decide(up(), IpAddressesSuccess::All).reason(), None);
        let down = || vec![ended(Some(Reason::Timeout)), ended(Some(Reason::Refused))];
        assert_eq!(
            decide(down(), IpAddressesSuccess::Any).reason(),
            Some(Reason::Timeout)
        );
    }
}
