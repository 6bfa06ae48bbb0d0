//! Entry lifetimes: a duration or `forever`, parsed from config and directives.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// How long an entry lives. `Forever` entries leave only under memory pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    After(Duration),
    Forever,
}

impl Ttl {
    /// Parses `forever`, an integer number of seconds, or a humantime string.
    pub fn parse(text: &str) -> Option<Ttl> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("forever") {
            return Some(Ttl::Forever);
        }
        if let Ok(secs) = text.parse::<u64>() {
            return Some(Ttl::After(Duration::from_secs(secs)));
        }
        humantime::parse_duration(text).ok().map(Ttl::After)
    }

    /// The duration, with `Forever` as None.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Ttl::After(d) => Some(d),
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
            Raw::Secs(s) => Ok(Ttl::After(Duration::from_secs(s))),
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
    }
}
