//! The tests that stage faults in network namespaces, which only root can
//! make (they need `ip` and `nft` too): each parent test makes a namespace,
//! re-executes this binary in it for its child test, and removes it
//! ([`namespace`], `tests/netns/faults.rs` says why); their probes and the
//! judging of them are in [`concurrent`]. One binary for all of them, apart
//! from the other integration tests, so that a child runs only what it was
//! asked for.

#[path = "../common/mod.rs"]
mod common;
mod concurrent;
mod engines;
mod namespace;

mod attempts;
mod faults;
mod icmp;
mod mapped;
mod raw_accepts;
mod raw_forged;
mod raw_stranger;
mod route;
mod source_address;
mod syn_retransmit;
mod trace;
