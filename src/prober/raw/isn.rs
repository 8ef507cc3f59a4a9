//! Initial sequence numbers that prove an answer is ours.
//!
//! ZMap's idea: the SYN's sequence number is a keyed hash of what the
//! probe is, so that the answer carries its own proof. A SYN-ACK or an RST
//! to our SYN acknowledges `isn + 1`; an ICMP error quotes our SYN's first
//! bytes, `isn` among them. Without the key (128 bits drawn when the
//! engine starts, never written anywhere) nobody on the path can forge an
//! answer that passes but by a 1 in 2³² guess, and the engine looks the
//! probe up by its source port alone, with no table keyed by sequence.
//!
//! The hash covers the destination address and port, the source port,
//! and the source port's *generation*: how many probes have used that
//! port before. A port is reused by a later probe, perhaps of the same
//! target; a late answer to the earlier one then acknowledges the
//! earlier generation's number and is ignored, instead of being taken for
//! the new probe's answer.
//!
//! SipHash-1-3 (crate `siphasher`) is the keyed hash made for short
//! inputs: about 20 ns for these 24 bytes.

#![forbid(unsafe_code)]

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::io;
use std::net::SocketAddr;

/// The engine's secret key for sequence numbers.
pub(super) struct IsnKey {
    key: [u8; 16],
}

impl std::fmt::Debug for IsnKey {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IsnKey(..)")
    }
}

impl IsnKey {
    /// A key drawn from the operating system's random source.
    pub(super) fn random() -> io::Result<Self> {
        use ring::rand::SecureRandom;
        let mut key = [0_u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| io::Error::other("the system's random source failed"))?;
        Ok(Self { key })
    }

    /// The initial sequence number of a SYN to `destination` from
    /// `source_port` in its `generation`.
    pub(super) fn isn(&self, destination: SocketAddr, source_port: u16, generation: u32) -> u32 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        let ip = match destination.ip().to_canonical() {
            std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(ip) => ip.octets(),
        };
        hasher.write(&ip);
        hasher.write(&destination.port().to_be_bytes());
        hasher.write(&source_port.to_be_bytes());
        hasher.write(&generation.to_be_bytes());
        let hash = hasher.finish();
        // Both halves, so that every bit of the hash counts.
        (hash ^ (hash >> 32)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> IsnKey {
        IsnKey { key: [byte; 16] }
    }

    #[test]
    fn every_input_and_the_key_change_the_number() {
        let target: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let base = key(1).isn(target, 61000, 0);
        assert_eq!(
            base,
            key(1).isn(target, 61000, 0),
            "not a function of its inputs"
        );
        let others = [
            key(2).isn(target, 61000, 0),
            key(1).isn("127.0.0.2:80".parse().unwrap(), 61000, 0),
            key(1).isn("127.0.0.1:81".parse().unwrap(), 61000, 0),
            key(1).isn(target, 61001, 0),
            key(1).isn(target, 61000, 1),
        ];
        for (n, other) in others.into_iter().enumerate() {
            assert_ne!(base, other, "input {n} did not change the number");
        }
    }

    #[test]
    fn an_ipv4_mapped_destination_is_its_ipv4_address() {
        let v4: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:443".parse().unwrap();
        assert_eq!(key(3).isn(v4, 62000, 7), key(3).isn(mapped, 62000, 7));
    }

    #[test]
    fn numbers_spread_over_the_whole_range() {
        // 4096 generations of one 4-tuple: a keyed hash gives about as many
        // distinct numbers, with both high and low halves used.
        let target: SocketAddr = "[::1]:22".parse().unwrap();
        let numbers: std::collections::HashSet<u32> =
            (0..4096).map(|g| key(9).isn(target, 65000, g)).collect();
        assert!(numbers.len() > 4090, "{} distinct", numbers.len());
        assert!(numbers.iter().any(|n| *n > u32::MAX / 2));
        assert!(numbers.iter().any(|n| *n < u32::MAX / 2));
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (IsnKey::random().unwrap(), IsnKey::random().unwrap());
        assert_ne!(a.key, b.key);
        assert_eq!(format!("{a:?}"), "IsnKey(..)");
    }
}
