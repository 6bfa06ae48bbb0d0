//! Entry lifetimes: a duration or `forever`, parsed from config and directives.
//!
//! Every duration a caller (or a stored value) can supply passes through this
//! type and is clamped to [`MAX_TTL`]: expiry arithmetic (TTL + stale grace,
//! `now + TTL`, Redis `PX`) then never overflows, and Redis never receives an
//! expiry it would reject. `forever` is a real option and is not a number.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The longest finite lifetime (365 days). Longer requests are clamped to it;
/// use `forever` for entries that should never expire.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Clamps any caller-supplied duration (TTL, max-age, stale grace) to [`MAX_TTL`].
pub fn clamp(d: Duration) -> Duration {
    d.min(MAX_TTL)
}

/// `clamp(a) + clamp(b)`: expiry arithmetic that cannot overflow.
pub fn add(a: Duration, b: Duration) -> Duration {
    clamp(a).saturating_add(clamp(b))
}

/// `at + d` without overflow: a duration too large for the clock is read as
/// [`MAX_TTL`] (configured timeouts are durations too).
pub fn instant_after(at: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(MAX_TTL))
        .unwrap_or(at)
}

/// How long an entry lives. `Forever` entries leave only under memory pressure.
///
/// Construct finite TTLs with [`Ttl::after`] / [`Ttl::secs`] (clamped);
/// [`Ttl::duration`] clamps again, so even a hand-built `After(huge)` is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    After(Duration),
    Forever,
}

impl Ttl {
    /// A finite TTL, clamped to [`MAX_TTL`].
    pub fn after(d: Duration) -> Ttl {
        Ttl::After(clamp(d))
    }

    /// A finite TTL of `secs` seconds, clamped to [`MAX_TTL`].
    pub fn secs(secs: u64) -> Ttl {
        Ttl::after(Duration::from_secs(secs))
    }

    /// Parses `forever`, an integer number of seconds, or a humantime string
    /// (any size: past [`MAX_TTL`] it is clamped).
    pub fn parse(text: &str) -> Option<Ttl> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("forever") {
            return Some(Ttl::Forever);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // Digits only: a number too large for u64 is still "very long".
            return Some(Ttl::secs(text.parse::<u64>().unwrap_or(u64::MAX)));
        }
        humantime::parse_duration(text).ok().map(Ttl::after)
    }

    /// The duration (at most [`MAX_TTL`]), with `Forever` as None.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Ttl::After(d) => Some(clamp(d)),
            Ttl::Forever => None,
        }
    }

    /// True when the entry must not be stored at all (a zero TTL).
    pub fn is_zero(self) -> bool {
        matches!(self, Ttl::After(d) if d.is_zero())
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::After(d) => write!(f, "{}", humantime::format_duration(*d)),
            Ttl::Forever => f.write_str("forever"),
        }
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Ttl::secs(s)),
            Raw::Text(t) => Ttl::parse(&t).ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid ttl `{t}`; use seconds, a duration like \"1h\", or \"forever\""
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Ttl::parse("forever"), Some(Ttl::Forever));
        assert_eq!(Ttl::parse("FOREVER"), Some(Ttl::Forever));
        assert_eq!(Ttl::parse("90"), Some(Ttl::After(Duration::from_secs(90))));
        assert_eq!(
            Ttl::parse("1h"),
            Some(Ttl::After(Duration::from_secs(3600)))
        );
        assert_eq!(Ttl::parse("-1"), None);
        assert_eq!(Ttl::parse("soon"), None);
        assert_eq!(Ttl::parse(""), None);
    }

    #[test]
    fn huge_values_are_clamped_not_overflowed() {
        for text in [
            "18446744073709551615",
            "99999999999999999999999999",
            "500000000000h",
            "400d",
        ] {
            assert_eq!(Ttl::parse(text), Some(Ttl::After(MAX_TTL)), "{text}");
        }
        assert_eq!(Ttl::secs(u64::MAX).duration(), Some(MAX_TTL));
        // A hand-built variant is clamped on use.
        assert_eq!(Ttl::After(Duration::MAX).duration(), Some(MAX_TTL));
        assert_eq!(add(Duration::MAX, Duration::MAX), MAX_TTL * 2);
        // Forever is not a number.
        assert_eq!(Ttl::parse("forever").unwrap().duration(), None);
    }
}
