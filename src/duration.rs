//! Human-readable durations (`"30s"`, `"5m"`, `"26h"`, `"1h 30m"`) for config and catalog.
//!
//! Both files are written by people, so durations are strings, never bare numbers whose unit
//! a reader has to guess.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Parses `"30s"`, `"5m"`, `"26h"`, `"1h 30m"`, `"250ms"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"30s\", \"5m\" or \"26h\" ({e})"))
}

/// Formats a duration the way it would be written in config: the largest whole unit
/// (`"26h"`, `"90m"`, `"45s"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// `#[serde(with = "crate::duration")]` for a required duration.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Writes the duration back in the same notation.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `#[serde(with = "crate::duration::option")]` for an optional duration.
pub mod option {
    use super::*;

    /// Reads an optional duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }

    /// Writes an optional duration string.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_as_people_write_them() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("26h").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse("30").unwrap_err().contains("`30`"));
        for text in ["26h", "90m", "45s", "250ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
