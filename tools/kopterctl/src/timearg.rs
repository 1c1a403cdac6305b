//! The one parser of every time argument (`audit --since/--until`,
//! `cost --from/--to`, `tick --hour/--day`), so each verb takes the same
//! forms:
//!
//! - a date, `2026-11-29`: that day in UTC — its first millisecond as a
//!   start, its last as an end, so `--since D --until D` is the whole day;
//! - an RFC 3339 time, `2026-11-29T10:00:00Z` or `…+02:00`; seconds may be
//!   left out and a time without an offset is UTC (`2026-11-29T10:00Z`,
//!   `2026-11-29 10:00`);
//! - a duration back from now, `7d`, `36h`, `90m`, `1h 30m` (humantime);
//! - `now`.

use chrono::{DateTime, Duration, NaiveDate, TimeDelta, Utc};

/// Which end of a range an argument is: a bare date means the start of
/// that day for a [`Bound::Start`] and its end for a [`Bound::End`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Start,
    End,
}

/// Parses `s` (one of the forms above) relative to `now`. The error names
/// the value and the accepted forms; the caller prefixes the flag.
pub fn parse(s: &str, bound: Bound, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let start = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(match bound {
            Bound::Start => start,
            Bound::End => start + Duration::days(1) - TimeDelta::milliseconds(1),
        });
    }
    if let Ok(at) = t.parse::<DateTime<chrono::FixedOffset>>() {
        return Ok(at.with_timezone(&Utc));
    }
    let naive = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    for f in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(naive, f) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(back) = humantime::parse_duration(t) {
        let back = Duration::from_std(back).map_err(|_| format!("{s:?} is too long ago"))?;
        return now
            .checked_sub_signed(back)
            .ok_or_else(|| format!("{s:?} is too long ago"));
    }
    Err(format!(
        "{s:?} is not a time: give a date (2026-11-29), an RFC 3339 time \
         (2026-11-29T10:00:00Z) or a duration back from now (36h, 7d)"
    ))
}

/// [`parse`] for a flag: the error starts with `--{flag}`.
pub fn flag(
    flag: &str,
    value: &str,
    bound: Bound,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    parse(value, bound, now).map_err(|e| format!("--{flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:34:56Z".parse().unwrap()
    }

    #[test]
    fn every_form_parses() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let p = |s, b| parse(s, b, now()).unwrap();
        assert_eq!(p("2026-11-29", Bound::Start), at("2026-11-29T00:00:00Z"));
        assert_eq!(p("2026-11-29", Bound::End), at("2026-11-29T23:59:59.999Z"));
        assert_eq!(
            p("2026-11-29T10:00:00Z", Bound::End),
            at("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            p("2026-11-29T10:00Z", Bound::Start),
            at("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            p("2026-11-29T12:00:00+02:00", Bound::Start),
            at("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            p("2026-11-29 10:00", Bound::Start),
            at("2026-11-29T10:00:00Z")
        );
        assert_eq!(p("36h", Bound::Start), at("2026-11-29T00:34:56Z"));
        assert_eq!(p("7d", Bound::Start), at("2026-11-23T12:34:56Z"));
        assert_eq!(p("now", Bound::End), now());
    }

    #[test]
    fn errors_name_the_flag_the_value_and_the_forms() {
        let e = flag("until", "yesterday-ish", Bound::End, now()).unwrap_err();
        assert!(e.starts_with("--until: \"yesterday-ish\""), "{e}");
        assert!(e.contains("2026-11-29") && e.contains("36h"), "{e}");
        assert!(parse("2026-13-01", Bound::Start, now()).is_err());
    }
}
