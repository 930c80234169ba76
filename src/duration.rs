//! Human-readable durations and sizes, as Flink's configuration writes them: `"5s"`, `"500ms"`,
//! `"1min"`, `"2h"`, `"5mb"`. A bare integer duration is milliseconds, as in Flink.

use std::time::Duration;

/// The longest duration any option or step takes: longer ones are typos, and would saturate.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);
/// The largest size any option takes (1 TB).
pub const MAX_SIZE: u64 = 1 << 40;

/// Why a text is not a duration; each message quotes the text and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{text}` is not a duration (examples: 500ms, 5s, 1min, 2h)")]
    NotADuration { text: String },
    #[error("`{text}`: unknown time unit `{unit}` (allowed: ms, s, min, h, d)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` is not a valid duration")]
    Invalid { text: String },
    /// Longer than [`MAX_DURATION`].
    #[error("`{text}` is longer than the longest allowed duration, 30d")]
    TooLong { text: String },
}

/// Why a text is not a size; each message quotes the text and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{text}` is not a size (examples: 512kb, 5mb)")]
    NotASize { text: String },
    #[error("`{text}`: unknown size unit `{unit}` (allowed: b, kb, mb, gb)")]
    UnknownUnit { text: String, unit: String },
    /// Larger than [`MAX_SIZE`].
    #[error("`{text}` is larger than the largest allowed size, 1024gb")]
    TooLarge { text: String },
}

/// Parses `"500ms"`, `"5s"`, `"5 s"`, `"1min"`, `"1m"`, `"2h"`, `"1d"` or a bare number of milliseconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(ckptlab::duration::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(ckptlab::duration::parse_duration("250"), Ok(Duration::from_millis(250)));
/// assert!(ckptlab::duration::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| DurationError::NotADuration { text: text.to_string() })?;
    let millis_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        other => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: other.to_string() }),
    };
    let ms = value * millis_per_unit;
    if !ms.is_finite() || ms < 0.0 {
        return Err(DurationError::Invalid { text: text.to_string() });
    }
    if ms > MAX_DURATION.as_millis() as f64 {
        return Err(DurationError::TooLong { text: text.to_string() });
    }
    Ok(Duration::from_micros((ms * 1000.0).round() as u64))
}

/// Formats a duration the short way a person reads it: `0ms`, `250ms`, `1s`, `1.5s`, `2min`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 && ms >= 60_000 {
        format!("{}min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Parses `"5mb"`, `"512kb"`, `"1gb"`, `"100b"` or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| SizeError::NotASize { text: text.to_string() })?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(SizeError::UnknownUnit { text: text.to_string(), unit: other.to_string() }),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(SizeError::TooLarge { text: text.to_string() });
    }
    Ok(bytes as u64)
}

/// Formats a byte count: `812 B`, `12.4 KB`, `3.1 MB`.
pub fn format_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_flink_units() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5 s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0ms").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("5 parsecs").unwrap_err().to_string(),
            "`5 parsecs`: unknown time unit `parsecs` (allowed: ms, s, min, h, d)"
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_that_would_saturate_are_refused() {
        assert_eq!(
            parse_duration("99999999999h").unwrap_err().to_string(),
            "`99999999999h` is longer than the longest allowed duration, 30d"
        );
        assert!(matches!(parse_duration(&format!("{}", 1e308)), Err(DurationError::TooLong { .. })));
        assert_eq!(parse_duration("30d").unwrap(), MAX_DURATION);
        assert_eq!(parse_size("99999999999gb").unwrap_err().to_string(), "`99999999999gb` is larger than the largest allowed size, 1024gb");
    }

    #[test]
    fn durations_format_round_trip() {
        for text in ["100ms", "250ms", "1s", "1.5s", "2min"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("5mb").unwrap(), 5 * 1024 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(
            parse_size("5 furlongs").unwrap_err().to_string(),
            "`5 furlongs`: unknown size unit `furlongs` (allowed: b, kb, mb, gb)"
        );
        assert_eq!(parse_size("lots").unwrap_err().to_string(), "`lots` is not a size (examples: 512kb, 5mb)");
        assert_eq!(parse_duration("soon").unwrap_err().to_string(), "`soon` is not a duration (examples: 500ms, 5s, 1min, 2h)");
    }
}
