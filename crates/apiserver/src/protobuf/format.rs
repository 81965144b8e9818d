//! The JSON text of the scalar-like messages, as Go's JSON encoding of the same values writes
//! it: [`time`] (meta/v1 Time), [`micro_time`] and [`duration`] (time.Duration's String).

use chrono::{DateTime, Datelike, Utc};

/// A Unix time in seconds as `2006-01-02T15:04:05Z` (Time drops nanoseconds, as upstream's
/// protobuf decoding does). None outside years 0-9999, which RFC 3339 cannot write.
pub(crate) fn time(seconds: i64) -> Option<String> {
    let t = in_range(DateTime::<Utc>::from_timestamp(seconds, 0)?)?;
    Some(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A Unix time as `2006-01-02T15:04:05.000000Z` (MicroTime keeps microseconds).
pub(crate) fn micro_time(seconds: i64, nanos: i32) -> Option<String> {
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let t = in_range(DateTime::<Utc>::from_timestamp(seconds, nanos)?)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn in_range(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (0..=9999).contains(&t.year()).then_some(t)
}

/// Nanoseconds as Go's `time.Duration.String()`: "0s", "1.5µs", "100ms", "1h0m0s", "-2m3.5s".
pub(crate) fn duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Below a second: one unit, with a fraction.
        let (unit, prec) = match u {
            _ if u < 1_000 => ("ns", 0),
            _ if u < 1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (int, frac) = split_frac(u, prec);
        out.push_str(&format!("{int}{frac}{unit}"));
    } else {
        let (secs, frac) = split_frac(u, 9);
        u = secs;
        let s = u % 60;
        u /= 60;
        let seconds = format!("{s}{frac}s");
        if u > 0 {
            let m = u % 60;
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&seconds);
    }
    if nanos < 0 {
        out.insert(0, '-');
    }
    out
}

/// `v / 10^prec` and its fraction as ".123" without trailing zeros ("" when zero).
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let frac = v % scale;
    if frac == 0 {
        return (v / scale, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (v / scale, format!(".{}", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(time(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(time(1_700_000_000).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(time(i64::MAX), None);
        assert_eq!(
            time(-62_167_219_200).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(time(-62_167_219_201), None, "year -1");
        assert_eq!(
            micro_time(1_700_000_000, 123_456_789).as_deref(),
            Some("2023-11-14T22:13:20.123456Z")
        );
        assert_eq!(micro_time(0, -1), None);
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-123_000_000_000, "-2m3s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(duration(nanos), text, "{nanos}");
        }
    }
}
