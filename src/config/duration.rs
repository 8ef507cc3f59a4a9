//! Durations written the way Prometheus writes them: `500ms`, `5s`, `1m30s`.
//!
//! Users copy timeouts between Prometheus, blackbox_exporter and this
//! exporter, so the accepted grammar is Prometheus' `model.ParseDuration`:
//! one or more `<integer><unit>` pairs with units from largest to smallest,
//! out of `y w d h m s ms`. Serialising writes the same form back, so
//! `/config` shows what the user wrote.

#![forbid(unsafe_code)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Units in the order Prometheus requires them, with their length in ms.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A duration read from or written to the config in Prometheus syntax
/// (`1m30s`, `500ms`). Convert with [`PromDuration::new`] or `From` either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub(crate) Duration);

impl PromDuration {
    /// The duration as the config would hold it.
    #[must_use]
    pub const fn new(duration: Duration) -> Self {
        Self(duration)
    }

    /// The duration itself.
    #[must_use]
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses `1h30m`, `500ms`, `0s` and the like.
    ///
    /// # Errors
    /// Returns a message naming what is wrong when the text is not a
    /// Prometheus duration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid duration {text:?}: use Prometheus syntax such as \"500ms\", \"5s\" or \"1m30s\""
            )
        };
        if text.is_empty() {
            return Err(invalid());
        }
        let mut rest = text;
        let mut total_ms: u64 = 0;
        // Index into UNITS of the last unit seen; each must be smaller.
        let mut next_allowed = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..letters];
            rest = &rest[letters..];
            let index = UNITS[next_allowed..]
                .iter()
                .position(|(name, _)| *name == unit)
                .map(|offset| next_allowed + offset)
                .ok_or_else(invalid)?;
            next_allowed = index + 1;
            let part = number.checked_mul(UNITS[index].1).ok_or_else(invalid)?;
            total_ms = total_ms.checked_add(part).ok_or_else(invalid)?;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl From<Duration> for PromDuration {
    fn from(duration: Duration) -> Self {
        Self(duration)
    }
}

impl From<PromDuration> for Duration {
    fn from(duration: PromDuration) -> Self {
        duration.0
    }
}

impl fmt::Display for PromDuration {
    /// Writes the shortest Prometheus form, as Prometheus' `String()` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (name, unit_ms) in UNITS {
            if ms >= unit_ms {
                write!(f, "{}{name}", ms / unit_ms)?;
                ms %= unit_ms;
            }
        }
        Ok(())
    }
}

impl PromDuration {
    /// Deserialises a duration and refuses one outside `range`, with a
    /// message that states the range; `why` follows it (`"; ..."`, or
    /// empty). For fields with bounds, through `deserialize_with`.
    ///
    /// # Errors
    /// The deserializer's error, or one naming the range.
    pub fn deserialize_within<'de, D: Deserializer<'de>>(
        deserializer: D,
        range: RangeInclusive<Duration>,
        why: &str,
    ) -> Result<Self, D::Error> {
        let duration = Self::deserialize(deserializer)?;
        if range.contains(&duration.0) {
            return Ok(duration);
        }
        Err(serde::de::Error::custom(format!(
            "{duration} is out of range: use a duration from {} to {}{why}",
            Self(*range.start()),
            Self(*range.end())
        )))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_forms() {
        let ms = |t: &str| PromDuration::parse(t).map(|d| d.0.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("5s"), Ok(5000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "", "5", "s", "1.5s", "5x", "30s1m", "1s1s", "-1s", " 5s", "5 s",
        ] {
            assert!(
                PromDuration::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["500ms", "5s", "1m30s", "1h", "0s", "1d2h3m4s5ms"] {
            assert_eq!(PromDuration::parse(text).unwrap().to_string(), text);
        }
    }
}
