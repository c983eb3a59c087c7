//! Times in the human output, in the user's local time zone.
//!
//! The daemon speaks RFC 3339 (UTC, or the author's offset for commits);
//! a person reads the clock on their wall. `--json` output is untouched.

/// `text` (RFC 3339) as local time, `YYYY-MM-DD HH:MM:SS`; unchanged when
/// it is not RFC 3339 or the C library cannot convert it.
pub fn local(text: &str) -> String {
    match parse_rfc3339(text).and_then(local_fields) {
        Some((y, mo, d, h, mi, s)) => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        None => text.to_string(),
    }
}

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(super) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let tz = rest.get(1..)?;
            if tz.len() != 5 || tz.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om): (i64, i64) = (tz[..2].parse().ok()?, tz[3..].parse().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Local calendar fields of `secs`, from the C library (TZ and /etc/localtime).
fn local_fields(secs: i64) -> Option<(i32, i32, i32, i32, i32, i32)> {
    #[allow(clippy::useless_conversion)] // time_t is i64 on 64-bit targets only
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let done = unsafe { libc::localtime_r(&t, &mut tm) };
    if done.is_null() {
        return None;
    }
    Some((
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_with_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-12-05T08:33:27Z"), Some(1_796_459_607));
        assert_eq!(
            parse_rfc3339("2026-12-05T09:33:27+01:00"),
            Some(1_796_459_607)
        );
        assert_eq!(
            parse_rfc3339("2026-12-05T03:03:27.5-05:30"),
            Some(1_796_459_607)
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600));
        for bad in [
            "",
            "yesterday",
            "2026-12-05",
            "2026-13-05T00:00:00Z",
            "2026-12-05T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(local("not a time"), "not a time");
    }
}
