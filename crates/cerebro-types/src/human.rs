//! Human-friendly durations ("500ms", "10s", "1.5m", "2h", or plain seconds)
//! and sizes ("512", "10K", "10MiB", "1G").

use std::time::Duration;

/// Parses a duration; a bare number is seconds (the seed's unit for limits).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{input}' is not a duration (examples: 30, 500ms, 10s, 5m, 2h)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{input}' (use ms, s, m, h or d)"
            ))
        }
    };
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration '{input}' is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a byte size; a bare number is bytes, K/M/G (and KiB/MiB/GiB, KB/MB/GB) are powers of 1024.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{input}' is not a size (examples: 1048576, 512K, 10M, 1G)"))?;
    let scale: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{input}' (use K, M or G)"
            ))
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size '{input}' is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a memory size in megabytes, as job files and `tasksitter --mem`
/// take it: a bare number is megabytes (`512`, `-5` for validation to
/// refuse), a suffixed size is converted (`512M`, `2G`, `1048576B`).
pub fn parse_mem_mb(input: &str) -> Result<f64, String> {
    match input.trim().parse::<f64>() {
        Ok(n) => Ok(n),
        Err(_) => parse_size(input).map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("10K").unwrap(), 10 * 1024);
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 apples").is_err());
    }

    #[test]
    fn memory_in_megabytes() {
        assert_eq!(parse_mem_mb("300").unwrap(), 300.0);
        assert_eq!(parse_mem_mb("512M").unwrap(), 512.0);
        assert_eq!(parse_mem_mb("2G").unwrap(), 2048.0);
        assert_eq!(parse_mem_mb("-5").unwrap(), -5.0);
        assert!(parse_mem_mb("lots").is_err());
    }
}

/// Serde helpers so configs may write `"512M"` or `"30s"` where a plain
/// number (megabytes, seconds) is also accepted.
pub mod serde_human {
    use serde::de::{self, Deserializer};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(f64),
        Text(String),
    }

    fn read<'de, D: Deserializer<'de>>(
        deserializer: D,
        from_text: impl Fn(&str) -> Result<f64, String>,
    ) -> Result<Option<f64>, D::Error> {
        match Option::<NumberOrText>::deserialize(deserializer)? {
            None => Ok(None),
            Some(NumberOrText::Number(n)) => Ok(Some(n)),
            Some(NumberOrText::Text(text)) => from_text(&text).map(Some).map_err(de::Error::custom),
        }
    }

    fn seconds(text: &str) -> Result<f64, String> {
        super::parse_duration(text).map(|d| d.as_secs_f64())
    }

    /// Megabytes: `512`, `"512"`, `"512M"`, `"2G"`.
    pub fn mem_mb<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        read(deserializer, super::parse_mem_mb)
    }

    /// Seconds: `30`, `"30"`, `"500ms"`, `"5m"`.
    pub fn opt_seconds<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        read(deserializer, seconds)
    }

    pub fn seconds_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        read(deserializer, seconds)?
            .ok_or_else(|| de::Error::custom("expected a duration, got null"))
    }
}
