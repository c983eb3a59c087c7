//! Durations (`"2s"`, `"1h30m"`) and sizes (`"50MiB"`) as the config writes them.

use std::time::Duration;

/// The longest duration a config may give. Timers add durations to the
/// clock, and a sum past what the clock or the timer wheel can hold panics
/// (`debounce = "99999999999999h"` did); a year is beyond any sensible use.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration: a number and a unit, `ms`, `s`, `m` or `h` (`"250ms"`,
/// `"2s"`, `"1h"`). Also accepted: decimals (`"1.5s"`) and several parts
/// (`"1h30m"`, `"1m 30s"`). The unit is required; `"0s"` is allowed; the result
/// must be a whole number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "use ms, s, m or h, e.g. \"500ms\", \"2s\", \"5m\", \"1h\"";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration: {UNITS}"));
    }
    if t.starts_with('-') {
        return Err(format!("bad duration {s:?}: a duration cannot be negative"));
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("bad duration {s:?}: expected a number at {rest:?}"));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("bad duration {s:?}: missing unit: {UNITS}")),
            other => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {other:?}: {UNITS}"
                ))
            }
        };
        let (value, exact) =
            scaled(num, unit_ns).map_err(|e| format!("bad duration {s:?}: {e}"))?;
        if !exact {
            return Err(format!(
                "bad duration {s:?}: durations are precise to the millisecond"
            ));
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("bad duration {s:?}: too large"))?;
        rest = after.trim_start();
    }
    if !total.is_multiple_of(1_000_000) {
        return Err(format!(
            "bad duration {s:?}: durations are precise to the millisecond"
        ));
    }
    if total > MAX_DURATION.as_nanos() {
        return Err(format!(
            "bad duration {s:?}: too large: at most \"8760h\" (one year)"
        ));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("bad duration {s:?}: too large"))?;
    let nanos = u32::try_from(total % 1_000_000_000)
        .map_err(|_| format!("bad duration {s:?}: too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// Parses a size: a number and a unit, `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers
/// of 1024) or `KB`/`kB`, `MB`, `GB`, `TB` (powers of 1000, as their SI names
/// say); a bare whole number is bytes. Decimals are allowed with a unit above
/// `B` (`"1.5GiB"`), rounded down to a whole byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const UNITS: &str = "use B, KiB, MiB or GiB, e.g. \"50MiB\" (KB, MB, GB mean powers of 1000)";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty size: {UNITS}"));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() {
        return Err(format!(
            "bad size {s:?}: expected a number, then a unit: {UNITS}"
        ));
    }
    let mult: u128 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("bad size {s:?}: unknown unit {other:?}: {UNITS}")),
    };
    if mult == 1 && num.contains('.') {
        return Err(format!(
            "bad size {s:?}: a byte count must be a whole number"
        ));
    }
    let (value, _) = scaled(num, mult).map_err(|e| format!("bad size {s:?}: {e}"))?;
    u64::try_from(value).map_err(|_| format!("bad size {s:?}: too large"))
}

/// `num` (digits with at most one `.`) times `unit`, rounded down, and whether
/// that was exact.
fn scaled(num: &str, unit: u128) -> Result<(u128, bool), String> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(format!("bad number {num:?}"));
    }
    if frac.len() > 12 {
        return Err(format!("too many decimals in {num:?}"));
    }
    let int: u128 = int.parse().map_err(|_| "too large".to_string())?;
    let mut value = int.checked_mul(unit).ok_or("too large")?;
    let mut exact = true;
    if !frac.is_empty() {
        let frac_value: u128 = frac.parse().map_err(|_| format!("bad number {num:?}"))?;
        let denom = 10u128.pow(frac.len() as u32);
        let scaled_frac = frac_value.checked_mul(unit).ok_or("too large")?;
        exact = scaled_frac.is_multiple_of(denom);
        value = value.checked_add(scaled_frac / denom).ok_or("too large")?;
    }
    Ok((value, exact))
}

/// Writes a duration the way [`parse_duration`] reads it: `"0s"`, `"250ms"`,
/// `"2s"`, `"1h30m"`, `"1s500ms"`.
pub fn format_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let parts = [
        (ms / 3_600_000, "h"),
        (ms / 60_000 % 60, "m"),
        (ms / 1000 % 60, "s"),
        (ms % 1000, "ms"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect()
}

/// Writes a size in the largest binary unit that divides it: `"50MiB"`, `"1000B"`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_beyond_a_year_are_refused() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for huge in ["8760h1ms", "99999999999999h", "18446744073709551615s"] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("too large"), "{huge}: {err}");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let ok = [
            ("250ms", ms(250)),
            ("2s", ms(2000)),
            ("5m", ms(300_000)),
            ("1h", ms(3_600_000)),
            ("0s", ms(0)),
            ("0ms", ms(0)),
            (" 2s ", ms(2000)),
            ("1.5s", ms(1500)),
            ("0.25m", ms(15_000)),
            ("1h30m", ms(5_400_000)),
            ("1m 30s", ms(90_000)),
            ("2 s", ms(2000)),
            ("1s500ms", ms(1500)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "empty"),
            ("5", "missing unit"),
            ("2x", "unknown unit \"x\""),
            ("2S", "unknown unit"),
            ("-1s", "negative"),
            ("s", "expected a number"),
            ("1.s", "bad number"),
            ("1.2.3s", "bad number"),
            (".5s", "bad number"),
            ("1.0001s", "precise to the millisecond"),
            ("1d", "unknown unit"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("1s2", "missing unit"),
        ];
        for (s, want) in bad {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("1024", 1024),
            ("100B", 100),
            ("1KiB", 1024),
            ("50MiB", 50 << 20),
            ("50 MiB", 50 << 20),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("1.5KiB", 1536),
            ("1KB", 1000),
            ("1kB", 1000),
            ("3MB", 3_000_000),
            ("1GB", 1_000_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "empty"),
            ("MiB", "expected a number"),
            ("-1", "expected a number"),
            ("5mb", "unknown unit"),
            ("1.5", "whole number"),
            ("1.5B", "whole number"),
            ("99999999999TiB", "too large"),
        ];
        for (s, want) in bad {
            let e = parse_size(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(90_000), "25h"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
        for (n, s) in [
            (0, "0B"),
            (1000, "1000B"),
            (1024, "1KiB"),
            (50 << 20, "50MiB"),
            (1 << 30, "1GiB"),
        ] {
            assert_eq!(format_size(n), s);
            assert_eq!(parse_size(s), Ok(n));
        }
    }
}
