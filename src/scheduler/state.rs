//! What the scheduler remembers about one target between probes: the last
//! outcome, the rise/fall health state, counters and the handshake
//! histogram, and what its prober keeps for its own series
//! ([`Kept`], declared in the prober's file).
//!
//! Health follows HAProxy's checks with one difference at start-up: the
//! first probe sets the state directly, so a new target is neither shown
//! healthy for `fall` intervals while it is down, nor unhealthy for `rise`
//! intervals while it is up. After that, `fall` failures in a row make a
//! healthy target unhealthy and `rise` successes in a row bring it back.

#![forbid(unsafe_code)]

use crate::config::MAX_ADDRESSES;
use crate::prober::{Kept, Outcome, RESULTS, Reason, result_index};
use std::net::IpAddr;
use std::time::Duration;

/// Upper bounds of the handshake histogram, in seconds: 100 µs to 5 s.
pub(crate) const HANDSHAKE_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// A cumulative histogram of handshake times.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Histogram {
    /// Observations at or below each bound of [`HANDSHAKE_BUCKETS`].
    pub(crate) cumulative: [u64; HANDSHAKE_BUCKETS.len()],
    /// Sum of all observations, seconds.
    pub(crate) sum: f64,
    /// Number of observations (the `+Inf` bucket).
    pub(crate) count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, cumulative) in HANDSHAKE_BUCKETS.iter().zip(&mut self.cumulative) {
            if seconds <= *bound {
                *cumulative += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Where a target's health stands, which decides its next interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Healthy and agreeing, or not probed yet: `interval`.
    Up,
    /// The last result disagrees with the state, so rise or fall is
    /// counting towards a change: `fast_interval`.
    Changing,
    /// Unhealthy and agreeing: `down_interval`.
    Down,
}

/// The state of one scheduled target.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TargetState {
    /// Whether any probe has finished yet.
    pub(crate) probed: bool,
    /// The last probe's failure reason; `None` after a success or before any probe.
    pub(crate) last_reason: Option<Reason>,
    /// The last probe's detail text, for the landing page.
    pub(crate) last_detail: String,
    /// The last probe succeeded.
    pub(crate) last_success: bool,
    /// Duration of the last probe, seconds.
    pub(crate) last_duration: f64,
    /// Handshake time of the last successful probe, seconds.
    pub(crate) last_handshake: Option<f64>,
    /// What the module's prober keeps for its own series (see
    /// [`crate::prober::TARGET_SERIES`]).
    pub(crate) kept: Kept,
    /// IP version of the last probe: 4, 6 or 0.
    pub(crate) ip_protocol: u8,
    /// The rise/fall state.
    pub(crate) healthy: bool,
    /// Results in a row that disagree with `healthy`.
    against_state: u32,
    /// Unix time of the last finished probe, seconds; 0 before any.
    pub(crate) last_probe_unix: f64,
    /// Unix time of the last health change (or the first probe), seconds.
    pub(crate) last_change_unix: f64,
    /// Probes by result, in the order of [`RESULTS`].
    pub(crate) results: [u64; RESULTS.len()],
    /// Health changes after the first probe.
    pub(crate) state_changes: u64,
    /// Probes since the last health change (or since the first probe).
    pub(crate) probes_since_change: u64,
    /// Handshakes attempted, over all probes.
    pub(crate) attempts: u64,
    /// Of those, the ones that failed.
    pub(crate) attempts_failed: u64,
    /// Handshake times of every successful attempt.
    pub(crate) handshake: Histogram,
    /// The interval until the next probe, of the phase the scheduler saw.
    pub(crate) interval: Duration,
    /// With `ip_addresses: all`, each address the last probe resolved to,
    /// with its own rise/fall state, in the order resolved: at most
    /// [`MAX_ADDRESSES`] of 24 bytes each (a test measures it). An address the
    /// name no longer gives is dropped; one it newly gives starts as a
    /// new target does.
    pub(crate) addresses: Vec<AddressState>,
}

/// The rise/fall state of one address of an `ip_addresses: all` target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddressState {
    /// The address.
    pub(crate) ip: IpAddr,
    /// Whether its last probe succeeded.
    pub(crate) last_success: bool,
    /// Its last probe's failure reason; `None` after a success.
    pub(crate) last_reason: Option<Reason>,
    /// Its rise/fall state.
    pub(crate) healthy: bool,
    /// Its results in a row that disagree with `healthy`.
    against_state: u32,
}

impl AddressState {
    /// The states of the addresses of `outcome`, carried over from `old`
    /// for an address probed before.
    fn update(old: &[Self], outcome: &Outcome, rise: u32, fall: u32) -> Vec<Self> {
        outcome
            .addresses
            .iter()
            .take(MAX_ADDRESSES)
            .map(|probed| {
                let success = probed.failure.is_none();
                let last_reason = probed.failure.as_ref().map(|failure| failure.reason);
                match old.iter().find(|known| known.ip == probed.ip) {
                    Some(known) => {
                        let mut state = *known;
                        state.last_success = success;
                        state.last_reason = last_reason;
                        rise_or_fall(
                            &mut state.healthy,
                            &mut state.against_state,
                            success,
                            rise,
                            fall,
                        );
                        state
                    }
                    // Its first probe sets its state, as a target's does.
                    None => Self {
                        ip: probed.ip,
                        last_success: success,
                        last_reason,
                        healthy: success,
                        against_state: 0,
                    },
                }
            })
            .collect()
    }
}

/// HAProxy's rise/fall after the first probe: `fall` failures in a row
/// make `healthy` false, `rise` successes in a row make it true again;
/// `against` counts the results in a row that disagree. Returns whether
/// `healthy` changed.
fn rise_or_fall(
    healthy: &mut bool,
    against: &mut u32,
    success: bool,
    rise: u32,
    fall: u32,
) -> bool {
    if success == *healthy {
        *against = 0;
        return false;
    }
    *against += 1;
    let needed = if *healthy { fall } else { rise };
    if *against < needed {
        return false;
    }
    *healthy = success;
    *against = 0;
    true
}

impl TargetState {
    /// Takes in one outcome finished at `now_unix`; its detail text is
    /// moved in, not copied, since this runs for every scheduled probe.
    /// Returns whether it changed the health state (the first probe, which
    /// sets it, does not).
    pub(crate) fn record(&mut self, outcome: Outcome, rise: u32, fall: u32, now_unix: f64) -> bool {
        let success = outcome.is_success();
        self.last_success = success;
        self.last_reason = outcome.reason();
        self.last_duration = outcome.duration.as_secs_f64();
        self.ip_protocol = outcome.ip_protocol();
        self.kept.record(&outcome);
        self.last_probe_unix = now_unix;
        self.results[result_index(self.last_reason)] += 1;
        if let Some(tcp) = outcome.tcp() {
            self.attempts += u64::from(tcp.attempts);
            self.attempts_failed += u64::from(tcp.attempts_failed);
            if let Some(handshake) = tcp.handshake_time {
                self.last_handshake = Some(handshake.as_secs_f64());
            }
            for handshake in tcp.handshake_times() {
                self.handshake.observe(handshake.as_secs_f64());
            }
        }
        // A probe that reached no address (DNS, policy) says nothing
        // about each one: their states stay as they were.
        if !outcome.addresses.is_empty() {
            self.addresses = AddressState::update(&self.addresses, &outcome, rise, fall);
        }
        let changed = self.update_health(success, rise, fall, now_unix);
        self.last_detail = outcome
            .failure
            .map(|failure| failure.detail)
            .unwrap_or_default();
        changed
    }

    /// The phase the last probe left the target in.
    pub(crate) fn phase(&self) -> Phase {
        if !self.probed {
            Phase::Up
        } else if self.last_success != self.healthy {
            Phase::Changing
        } else if self.healthy {
            Phase::Up
        } else {
            Phase::Down
        }
    }

    fn update_health(&mut self, success: bool, rise: u32, fall: u32, now_unix: f64) -> bool {
        self.probes_since_change += 1;
        if !self.probed {
            self.probed = true;
            self.healthy = success;
            self.last_change_unix = now_unix;
            return false;
        }
        if !rise_or_fall(
            &mut self.healthy,
            &mut self.against_state,
            success,
            rise,
            fall,
        ) {
            return false;
        }
        self.state_changes += 1;
        self.last_change_unix = now_unix;
        true
    }

    /// Ends the count of probes since the last change, returning it.
    pub(crate) fn take_probes_since_change(&mut self) -> u64 {
        std::mem::take(&mut self.probes_since_change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::Failure;

    fn success() -> Outcome {
        let mut outcome = refused();
        outcome.failure = None;
        outcome.address = Some("127.0.0.1:80".parse().unwrap());
        outcome.tcp_mut().handshake_time = Some(Duration::from_micros(300));
        outcome.duration = Duration::from_micros(350);
        outcome.tcp_mut().attempts_failed = 0;
        outcome
    }

    fn refused() -> Outcome {
        let mut outcome = Outcome::not_started(
            Failure::new(Reason::Refused, "RST"),
            Duration::from_micros(200),
        );
        let tcp = outcome.tcp_mut();
        (tcp.attempts, tcp.attempts_failed) = (1, 1);
        outcome
    }

    #[test]
    fn first_probe_decides_then_fall_and_rise_damp_flaps() {
        let (rise, fall) = (2, 3);
        let mut state = TargetState::default();
        state.record(success(), rise, fall, 1.0);
        assert!(state.healthy);
        for time in 2..=3 {
            state.record(refused(), rise, fall, f64::from(time));
            assert!(
                state.healthy && !state.last_success,
                "still healthy after {} failures",
                time - 1
            );
        }
        assert!(
            state.record(refused(), rise, fall, 4.0),
            "a change at the fall-th failure"
        );
        assert_eq!(state.take_probes_since_change(), 4, "1 success, 3 failures");
        assert!(!state.healthy, "unhealthy at the fall-th failure");
        assert_eq!((state.state_changes, state.last_change_unix), (1, 4.0));
        state.record(success(), rise, fall, 5.0);
        assert!(!state.healthy);
        state.record(refused(), rise, fall, 6.0);
        state.record(success(), rise, fall, 7.0);
        assert!(!state.healthy, "an interrupted streak starts over");
        assert!(state.record(success(), rise, fall, 8.0), "reported once");
        assert!(state.healthy, "healthy at the rise-th success in a row");
        assert_eq!(state.take_probes_since_change(), 4, "since the last change");
        assert!(!state.record(success(), rise, fall, 9.0), "no change");
        assert_eq!(state.state_changes, 2);
        assert_eq!(state.results, [5, 4, 0, 0, 0, 0, 0, 0, 0]);
    }

    /// An outcome of `ip_addresses: all` whose addresses ended as `results`.
    fn every(results: &[(&str, Option<Reason>)]) -> Outcome {
        let mut outcome = success();
        outcome.addresses = results
            .iter()
            .map(|(ip, reason)| {
                let failure = reason.map(|reason| Failure::new(reason, "x"));
                crate::prober::AddressOutcome::new(ip.parse().unwrap(), failure)
            })
            .collect();
        outcome
    }

    #[test]
    fn each_address_has_its_own_rise_and_fall_and_gone_addresses_are_dropped() {
        let (rise, fall) = (2, 2);
        let mut state = TargetState::default();
        let up = |ip| (ip, None);
        let refused = |ip| (ip, Some(Reason::Refused));
        state.record(every(&[up("127.0.0.2"), up("127.0.0.3")]), rise, fall, 1.0);
        assert!(state.addresses.iter().all(|address| address.healthy));
        state.record(
            every(&[refused("127.0.0.2"), up("127.0.0.3")]),
            rise,
            fall,
            2.0,
        );
        let healthy = |state: &TargetState| -> Vec<bool> {
            state
                .addresses
                .iter()
                .map(|address| address.healthy)
                .collect()
        };
        assert_eq!(healthy(&state), [true, true], "one failure of fall 2");
        assert_eq!(state.addresses[0].last_reason, Some(Reason::Refused));
        state.record(
            every(&[refused("127.0.0.2"), up("127.0.0.3")]),
            rise,
            fall,
            3.0,
        );
        assert_eq!(
            healthy(&state),
            [false, true],
            "the second failure in a row"
        );
        // .3 is gone from the name, .4 is new: its first probe sets it.
        state.record(
            every(&[refused("127.0.0.2"), refused("127.0.0.4")]),
            rise,
            fall,
            4.0,
        );
        let ips: Vec<String> = state.addresses.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["127.0.0.2", "127.0.0.4"]);
        assert_eq!(healthy(&state), [false, false]);
        assert_eq!(std::mem::size_of::<AddressState>(), 24, "as the docs say");
    }

    /// A probe that reached no address (the name did not resolve, or the
    /// policy refused it) says nothing about each address: their states
    /// stay, so that a DNS blip does not let a down address come back
    /// without `rise` successes.
    #[test]
    fn a_probe_that_reached_no_address_keeps_each_addresss_state() {
        let (rise, fall) = (2, 1);
        let mut state = TargetState::default();
        let dns = || {
            Outcome::not_started(
                Failure::new(Reason::Dns, "no such name"),
                Duration::from_millis(1),
            )
        };
        state.record(
            every(&[("127.0.0.2", Some(Reason::Refused))]),
            rise,
            fall,
            1.0,
        );
        assert!(!state.addresses[0].healthy);
        state.record(dns(), rise, fall, 2.0);
        assert_eq!(state.addresses.len(), 1, "kept through the DNS failure");
        state.record(every(&[("127.0.0.2", None)]), rise, fall, 3.0);
        assert!(
            !state.addresses[0].healthy,
            "one success of rise 2 does not bring it back"
        );
    }

    /// HAProxy's `srv_getinter`: `inter` when fully up, `downinter` when
    /// fully down, `fastinter` while the health counter moves.
    #[test]
    fn the_phase_follows_the_rise_and_fall_counters() {
        let (rise, fall) = (2, 3);
        let mut state = TargetState::default();
        assert_eq!(state.phase(), Phase::Up, "not probed: interval");
        let mut phases = Vec::new();
        let results = [
            true, false, false, false, false, true, false, true, true, true,
        ];
        for (time, ok) in (1..).zip(results) {
            state.record(
                if ok { success() } else { refused() },
                rise,
                fall,
                f64::from(time),
            );
            phases.push(state.phase());
        }
        use Phase::{Changing, Down, Up};
        assert_eq!(
            phases,
            [
                Up,       // the first probe decides: healthy
                Changing, // 1 of 3 failures
                Changing, // 2 of 3
                Down,     // the 3rd: unhealthy
                Down,     // still failing
                Changing, // 1 of 2 successes
                Down,     // the streak broke
                Changing, // 1 of 2
                Up,       // the 2nd: healthy
                Up,
            ]
        );
        let mut down_first = TargetState::default();
        down_first.record(refused(), rise, fall, 1.0);
        assert_eq!(
            down_first.phase(),
            Down,
            "the first probe decides: unhealthy"
        );
        let mut at_once = TargetState::default();
        at_once.record(success(), 1, 1, 1.0);
        at_once.record(refused(), 1, 1, 2.0);
        assert_eq!(
            at_once.phase(),
            Down,
            "fall 1 changes at once, never changing"
        );
    }

    #[test]
    fn histogram_counts_successful_handshakes_cumulatively() {
        let mut state = TargetState::default();
        state.record(success(), 2, 3, 1.0);
        state.record(refused(), 2, 3, 2.0);
        let histogram = &state.handshake;
        assert_eq!(histogram.count, 1);
        assert_eq!(
            histogram.cumulative[..3],
            [0, 0, 1],
            "300 µs lands in the 500 µs bucket"
        );
        assert_eq!(histogram.cumulative[HANDSHAKE_BUCKETS.len() - 1], 1);
    }

    #[test]
    fn every_attempt_is_counted_and_every_successful_one_observed() {
        let mut state = TargetState::default();
        let mut ping = success();
        let tcp = ping.tcp_mut();
        (tcp.attempts, tcp.attempts_failed) = (5, 2);
        ping.tcp_mut().later_handshake_times =
            vec![Duration::from_millis(2), Duration::from_secs(2)];
        state.record(ping, 2, 3, 1.0);
        state.record(refused(), 2, 3, 2.0);
        assert_eq!((state.attempts, state.attempts_failed), (6, 3));
        let histogram = &state.handshake;
        assert_eq!(histogram.count, 3, "three successful attempts");
        assert_eq!(
            histogram.cumulative[2..6],
            [1, 1, 2, 2],
            "300 µs by 500 µs, 2 ms by 2.5 ms"
        );
        assert_eq!(histogram.cumulative[HANDSHAKE_BUCKETS.len() - 2], 2);
        assert_eq!(
            histogram.cumulative[HANDSHAKE_BUCKETS.len() - 1],
            3,
            "2 s by 5 s"
        );
        assert_eq!(state.last_handshake, Some(0.0003), "the first success's");
    }
}
