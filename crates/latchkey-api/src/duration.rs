//! Durations as written in a spec: Go's `time.ParseDuration` subset of whole hours, minutes
//! and seconds (`1h`, `90m`, `1h30m`, `3600s`), so the CRD's CEL `duration()` check and this
//! parser accept the same strings.

use std::time::Duration;

/// The CRD pattern for a duration field.
pub const PATTERN: &str = "^([0-9]+(h|m|s))+$";

/// Parse a spec duration, or say why it is not one.
pub fn parse(text: &str) -> Result<Duration, String> {
    let well_formed = !text.is_empty()
        && text.ends_with(['h', 'm', 's'])
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'h' | b'm' | b's'))
        && !text.starts_with(['h', 'm', 's'])
        && !text
            .as_bytes()
            .windows(2)
            .any(|w| !w[0].is_ascii_digit() && !w[1].is_ascii_digit());
    if !well_formed {
        return Err(format!(
            "{text:?} is not a duration like 1h, 90m, 1h30m or 3600s"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_style_whole_units() {
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1h0m30s").unwrap(), Duration::from_secs(3630));
        assert_eq!(parse("3600s").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", "1", "h", "1 h", "1hour", "1.5h", "-1h", "1d", "1hm", "m1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
