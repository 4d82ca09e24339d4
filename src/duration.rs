//! Durations in the configuration: written as `"1s"`, `"250ms"`, `"5m"`, `"1h 30m"`, `"7d"`
//! (days of 24 hours) or a number of seconds. A serde helper (`#[serde(with =
//! "crate::duration")]`) for every section that has durations (`[storage]`, `[serial]`,
//! `[[webhook]]`), and the parser the command line uses for `--since`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Secs(u64),
    Float(f64),
    Text(String),
}

/// Parses a duration from a string (`"1s"`, `"500ms"`) or a number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    // Days ("7d", "2 days", "1d 12h") are 24 hours here; the rest is jiff's friendly format.
    let mut days = 0u64;
    let mut rest = Vec::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let (num, unit) = match w.find(|c: char| !c.is_ascii_digit()) {
            Some(0) | None => (w, words.get(i + 1).copied().unwrap_or("")),
            Some(n) => (&w[..n], &w[n..]),
        };
        let is_day = matches!(unit, "d" | "day" | "days");
        match num.parse::<u64>() {
            Ok(n) if is_day => {
                days = days.saturating_add(n);
                i += if w.len() == num.len() { 2 } else { 1 };
            }
            _ => {
                rest.push(w);
                i += 1;
            }
        }
    }
    let base = if rest.is_empty() {
        Duration::ZERO
    } else {
        let sd: jiff::SignedDuration = rest.join(" ").parse().map_err(|e| {
            format!("{text:?} is not a duration like \"1s\", \"500ms\" or \"7d\": {e}")
        })?;
        Duration::try_from(sd).map_err(|_| format!("{text:?} must not be negative"))?
    };
    if text.trim().is_empty() {
        return Err("an empty duration".into());
    }
    base.checked_add(Duration::from_secs(days.saturating_mul(86_400)))
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A duration as the configuration writes it: `"30s"`, `"250ms"`, `"1m 30s"`, `"7d"`
/// (days of 24 hours); [`parse`] reads it back to the same value.
pub fn format(d: Duration) -> String {
    let mut ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if ns >= size {
            parts.push(format!("{}{unit}", ns / size));
            ns %= size;
        }
    }
    parts.join(" ")
}

/// Serializes a duration as [`format()`] writes it.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Deserializes a duration.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) if (0.0..1e12).contains(&f) => Ok(Duration::from_secs_f64(f)),
        Raw::Float(f) => Err(D::Error::custom(format!("{f} is not a duration"))),
        Raw::Text(t) => parse(&t).map_err(D::Error::custom),
    }
}

/// The same for an optional duration (`#[serde(with = "crate::duration::option")]`, with
/// `default` and `skip_serializing_if = "Option::is_none"` beside it): absent is None.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a present duration as [`super::format`] writes it.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes a present duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(Some(Wrap::deserialize(d)?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::{format, parse};
    use std::time::Duration;

    #[test]
    fn days_and_friendly_units() {
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("2 days"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse("1d 12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse("").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn an_optional_duration_is_absent_or_written_like_any_other() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct S {
            #[serde(
                default,
                skip_serializing_if = "Option::is_none",
                with = "super::option"
            )]
            after: Option<Duration>,
        }
        let s: S = toml::from_str("after = \"1m 30s\"").unwrap();
        assert_eq!(s.after, Some(Duration::from_secs(90)));
        assert_eq!(toml::to_string(&s).unwrap().trim(), "after = \"1m 30s\"");
        let none: S = toml::from_str("").unwrap();
        assert_eq!(none.after, None);
        assert_eq!(toml::to_string(&none).unwrap().trim(), "");
        assert!(toml::from_str::<S>("after = \"soon\"").is_err());
    }

    #[test]
    fn formatted_durations_parse_back() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(7 * 86_400), "7d"),
            (Duration::from_secs(36 * 3600), "1d 12h"),
            (Duration::from_micros(1_500), "1ms 500us"),
            (Duration::new(3_661, 7), "1h 1m 1s 7ns"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text}");
        }
    }
}
