//! The one reading of times that every sink uses (the Cassandra `timestamp`
//! and `date` columns, the S3 sink's `time_field`), so a value means the same
//! instant wherever it is written.
//!
//! | value | read as |
//! |---|---|
//! | a VRL timestamp | that instant |
//! | an integer (a JSON number) | epoch milliseconds, whatever its size or sign |
//! | a float (a JSON number) | epoch milliseconds with a fraction (to the nanosecond) |
//! | text of 13 digits, with or without a fraction (`1714557600000`, `1714557600000.25`) | epoch milliseconds (2001-09-09 to 2286-11-20) |
//! | text of 8 digits (`20240501`) | an ISO 8601 basic date, `2024-05-01` |
//! | other text of digits only (`1714557600`, `-1000`, `0`) | refused: no guess between seconds, milliseconds and dates |
//! | `2024-05-01T10:00:00Z`, `…+05:30`, `…+0530`, `…+05`, `…z` | RFC 3339 / ISO 8601 with its offset |
//! | `T`, `t` or a space between date and time; `HH:MM`, `HH:MM:SS`, a fraction of 1 to 9 digits | the same |
//! | `2024-05-01 10:00:00.000+0000` (cqlsh, Java), `… +0000`, `… UTC` | the same |
//! | `2024-05-01T10:00+05:30[Asia/Kolkata]` (Java's `ZonedDateTime`) | the offset decides |
//! | `2024-05-01 10:00:00`, no offset | in the job's zone (`timezone:`, UTC by default) |
//! | `2024-05-01`, `20240501` | midnight in the job's zone |
//!
//! Digits in text are ambiguous (`20240501` is a date, `1714557600` epoch
//! seconds, neither epoch milliseconds), so text is read as epoch
//! milliseconds only with the 13 digits every such time of this century has;
//! a number is a quantity, and always epoch milliseconds.
//!
//! A zone-less time that a daylight-saving change skips (a gap) or repeats
//! (an overlap) in the job's zone is an error, as VRL's own `parse_timestamp`
//! makes it: the record goes to the dead-letter topic rather than to a guessed
//! instant. Errors say what was found and which forms are read.

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// The forms an error message offers, so a user sees what would have worked.
const EXPECTED: &str = "expected RFC 3339 / ISO 8601 such as `2024-05-01T10:00:00Z`, \
                        `2024-05-01 10:00:00.000+0000`, `2024-05-01` or `20240501`, or epoch \
                        milliseconds (a JSON number, or text of 13 digits)";
/// Digits of epoch milliseconds in text: 2001-09-09 to 2286-11-20.
const EPOCH_MILLIS_DIGITS: usize = 13;

/// Reads `text` as a time; zone-less times are in `zone` (the job's).
pub fn parse_time(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty text is not a time ({EXPECTED})"));
    }
    if is_decimal_number(s) {
        return digits_text(s, zone);
    }
    let bad = |why: String| format!("`{}` is not a time: {why} ({EXPECTED})", shorten(s));
    let mut c = Cursor { s, pos: 0 };
    let date = c.date().map_err(bad)?;
    if c.done() {
        return in_zone(date.and_time(NaiveTime::MIN), zone, s);
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return Err(bad(format!(
            "expected `T` or a space after the date, found `{}`",
            shorten(c.rest())
        )));
    }
    let time = c.time().map_err(bad)?;
    let local = date.and_time(time);
    let offset = c.offset().map_err(bad)?;
    let named = c.bracketed_zone().map_err(bad)?;
    if !c.done() {
        return Err(bad(format!(
            "unexpected `{}` after the time",
            shorten(c.rest())
        )));
    }
    match (offset, named) {
        (Some(offset), _) => Ok(offset
            .from_local_datetime(&local)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("out of range".into()))?),
        (None, Some(named)) => in_zone(local, named, s),
        (None, None) => in_zone(local, zone, s),
    }
}

/// `ms` epoch milliseconds.
pub fn from_epoch_millis(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("{ms} is out of range as epoch milliseconds"))
}

/// `ms` epoch milliseconds with a fraction, kept to the nanosecond.
pub fn from_epoch_millis_f64(ms: f64) -> Result<DateTime<Utc>, String> {
    let whole = ms.floor();
    // i64::MAX as f64 rounds up; anything that large is out of chrono's range anyway.
    if !whole.is_finite() || whole.abs() >= 9.0e18 {
        return Err(format!("{ms} is out of range as epoch milliseconds"));
    }
    let nanos = ((ms - whole) * 1e6).round() as i64;
    from_epoch_millis(whole as i64)?
        .checked_add_signed(chrono::Duration::nanoseconds(nanos))
        .ok_or_else(|| format!("{ms} is out of range as epoch milliseconds"))
}

/// A record value as a time: a VRL timestamp, epoch milliseconds (integer or
/// float), or text [`parse_time`] reads.
#[cfg(feature = "vrl")]
pub fn time_of_value(v: &vrl::value::Value, zone: Tz) -> Result<DateTime<Utc>, String> {
    use vrl::value::Value;
    match v {
        Value::Timestamp(t) => Ok(*t),
        Value::Integer(ms) => from_epoch_millis(*ms),
        Value::Float(ms) => from_epoch_millis_f64(ms.into_inner()),
        Value::Bytes(_) | Value::String(_) => match v.to_str() {
            Some(text) => parse_time(text, zone),
            None => Err("text that is not UTF-8 is not a time".into()),
        },
        other => Err(format!("{} is not a time ({EXPECTED})", other.kind_str())),
    }
}

/// A record value as a calendar date: text `YYYY-MM-DD` or `YYYYMMDD` is
/// that date; anything else [`time_of_value`] reads gives its date in `zone`.
#[cfg(feature = "vrl")]
pub fn date_of_value(v: &vrl::value::Value, zone: Tz) -> Result<NaiveDate, String> {
    if let Some(text) = v.to_str() {
        if let Some(date) = basic_date(text.trim()) {
            return date;
        }
        let mut c = Cursor {
            s: text.trim(),
            pos: 0,
        };
        if let Ok(date) = c.date()
            && c.done()
        {
            return Ok(date);
        }
    }
    time_of_value(v, zone).map(|t| t.with_timezone(&zone).date_naive())
}

/// A time of day written `HH:MM`, `HH:MM:SS` or `HH:MM:SS.f` with 1 to 9
/// fraction digits (`,` also separates them), as a time column holds it; the
/// error says why not. A leap second (`23:59:60`) is refused: a time of day
/// has no place for it, and no other time of day stands for it.
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    let mut c = Cursor {
        s: text.trim(),
        pos: 0,
    };
    let time = c.time()?;
    if !c.done() {
        return Err(format!("unexpected `{}` after the time", shorten(c.rest())));
    }
    if is_leap_second(time) {
        return Err("second 60 is a leap second, which a time of day cannot hold".into());
    }
    Ok(time)
}

/// Whether `time` is within a leap second (chrono keeps it as a nanosecond
/// count past 1,000,000,000 of second 59).
pub fn is_leap_second(time: NaiveTime) -> bool {
    use chrono::Timelike;
    time.nanosecond() >= 1_000_000_000
}

/// A zone-less time in `zone`; a time that zone skips or repeats is refused.
fn in_zone(local: NaiveDateTime, zone: Tz, text: &str) -> Result<DateTime<Utc>, String> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Err(format!(
            "`{}` has no offset and happens twice in {zone} (at {} and at {}, a daylight-saving change); \
             give it an offset",
            shorten(text),
            a.format("%:z"),
            b.format("%:z"),
        )),
        LocalResult::None => Err(format!(
            "`{}` has no offset and does not exist in {zone} (skipped by a daylight-saving change); \
             give it an offset",
            shorten(text)
        )),
    }
}

/// `-?digits` or `-?digits.digits`: text of digits only.
fn is_decimal_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Text of digits only: 8 digits are a basic ISO 8601 date (midnight in
/// `zone`), 13 digits (and a fraction of up to 6) epoch milliseconds, exactly;
/// anything else is refused rather than guessed at.
fn digits_text(s: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Some(date) = basic_date(s) {
        return in_zone(date?.and_time(NaiveTime::MIN), zone, s);
    }
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != EPOCH_MILLIS_DIGITS || !whole.bytes().all(|b| b.is_ascii_digit()) {
        let hint = match whole.trim_start_matches(['-', '+']).len() {
            10 => " (10 digits look like epoch seconds: multiply them by 1000)",
            _ => "",
        };
        return Err(format!(
            "`{}` is not a time: text of digits only is epoch milliseconds when it has 13 digits \
             and a date (`YYYYMMDD`) when it has 8; this has {} digits before any fraction{hint}; \
             send other epoch milliseconds as a JSON number",
            shorten(s),
            whole.trim_start_matches(['-', '+']).len()
        ));
    }
    let ms: i64 = whole
        .parse()
        .map_err(|_| format!("`{}` is out of range as epoch milliseconds", shorten(s)))?;
    if fraction.len() > 6 {
        return Err(format!(
            "`{}` has more than 6 fraction digits of epoch milliseconds (finer than nanoseconds)",
            shorten(s)
        ));
    }
    let nanos: i64 = format!("{fraction:0<6}").parse().unwrap_or(0);
    DateTime::from_timestamp_millis(ms)
        .and_then(|t| t.checked_add_signed(chrono::Duration::nanoseconds(nanos)))
        .ok_or_else(|| format!("`{}` is out of range as epoch milliseconds", shorten(s)))
}

/// `YYYYMMDD`, ISO 8601's basic form of a date: `None` unless `s` is 8 digits.
fn basic_date(s: &str) -> Option<Result<NaiveDate, String>> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month, day) = (&s[..4], &s[4..6], &s[6..]);
    let date = NaiveDate::from_ymd_opt(
        year.parse().unwrap_or(0),
        month.parse().unwrap_or(0),
        day.parse().unwrap_or(0),
    );
    Some(date.ok_or_else(|| {
        format!("`{s}` is not a time: there is no date {year}-{month}-{day} ({EXPECTED})")
    }))
}

/// At most 60 characters of a value, for error messages.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(60).collect::<String>())
    }
}

/// Reads the parts of an ISO 8601 time from left to right.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn done(&self) -> bool {
        self.pos == self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.as_bytes().get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, word: &str) -> bool {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize, what: &str) -> Result<u32, String> {
        let part = self.s.get(self.pos..self.pos + n).unwrap_or("");
        if part.len() != n || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "expected {n} digits of {what} at `{}`",
                shorten(self.rest())
            ));
        }
        self.pos += n;
        Ok(part.parse().unwrap_or(0))
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected `{}` {what}", b as char))
        }
    }

    /// `YYYY-MM-DD`.
    fn date(&mut self) -> Result<NaiveDate, String> {
        let year = self.digits(4, "the year")?;
        self.expect(b'-', "after the year")?;
        let month = self.digits(2, "the month")?;
        self.expect(b'-', "after the month")?;
        let day = self.digits(2, "the day")?;
        NaiveDate::from_ymd_opt(year as i32, month, day)
            .ok_or_else(|| format!("there is no date {year:04}-{month:02}-{day:02}"))
    }

    /// `HH:MM`, `HH:MM:SS`, `HH:MM:SS.f` with 1 to 9 fraction digits (`,` also
    /// separates them, as ISO 8601 allows); second 60 is a leap second.
    fn time(&mut self) -> Result<NaiveTime, String> {
        let hour = self.digits(2, "the hour")?;
        self.expect(b':', "after the hour")?;
        let minute = self.digits(2, "the minute")?;
        let second = if self.eat(b':') {
            self.digits(2, "the second")?
        } else {
            0
        };
        let mut nanos = 0;
        if self.eat(b'.') || self.eat(b',') {
            let start = self.pos;
            while self
                .s
                .as_bytes()
                .get(self.pos)
                .is_some_and(u8::is_ascii_digit)
            {
                self.pos += 1;
            }
            let fraction = &self.s[start..self.pos];
            if fraction.is_empty() || fraction.len() > 9 {
                return Err(format!(
                    "a fraction of a second has 1 to 9 digits (nanoseconds), found `{fraction}`"
                ));
            }
            nanos = format!("{fraction:0<9}").parse().unwrap_or(0);
        }
        let time = if second == 60 {
            NaiveTime::from_hms_nano_opt(hour, minute, 59, 1_000_000_000 + nanos)
        } else {
            NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
        };
        time.ok_or_else(|| format!("there is no time {hour:02}:{minute:02}:{second:02}"))
    }

    /// `Z`, `z`, `UTC`, `GMT`, `±HH:MM`, `±HHMM` or `±HH`, after at most one
    /// space; `None` when the time has no offset.
    fn offset(&mut self) -> Result<Option<FixedOffset>, String> {
        let before_space = self.pos;
        self.eat(b' ');
        if self.eat(b'Z') || self.eat(b'z') || self.eat_str("UTC") || self.eat_str("GMT") {
            return Ok(FixedOffset::east_opt(0));
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            self.pos = before_space;
            return Ok(None);
        };
        let hours = self.digits(2, "the offset's hours")?;
        // `+05:30`, `+0530` or `+05`.
        let colon = self.eat(b':');
        let more = self
            .s
            .as_bytes()
            .get(self.pos)
            .is_some_and(u8::is_ascii_digit);
        let minutes = if colon || more {
            self.digits(2, "the offset's minutes")?
        } else {
            0
        };
        if hours > 23 || minutes > 59 {
            return Err(format!("there is no offset {hours:02}:{minutes:02}"));
        }
        Ok(FixedOffset::east_opt(
            sign * (hours * 3600 + minutes * 60) as i32,
        ))
    }

    /// `[Area/City]` after the time, as Java's `ZonedDateTime` prints it.
    fn bracketed_zone(&mut self) -> Result<Option<Tz>, String> {
        if !self.eat(b'[') {
            return Ok(None);
        }
        let rest = self.rest();
        let Some(end) = rest.find(']') else {
            return Err("`[` without its `]`".into());
        };
        let name = &rest[..end];
        self.pos += end + 1;
        name.parse::<Tz>()
            .map(Some)
            .map_err(|_| format!("unknown time zone `{name}` in brackets"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Tz = chrono_tz::UTC;
    const NEW_YORK: Tz = chrono_tz::America::New_York;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("valid test time")
            .with_timezone(&Utc)
    }

    fn ok(text: &str, zone: Tz) -> DateTime<Utc> {
        parse_time(text, zone).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn reads_rfc3339_and_the_common_iso_8601_variants() {
        let ten = at("2024-05-01T10:00:00Z");
        for text in [
            "2024-05-01T10:00:00Z",
            "2024-05-01t10:00:00z",
            "2024-05-01 10:00:00Z",
            "2024-05-01T10:00Z",
            "2024-05-01T15:30:00+05:30",
            "2024-05-01T15:30:00+0530",
            "2024-05-01T15:00:00+05",
            "2024-05-01T05:00:00-05:00",
            "2024-05-01 10:00:00.000+0000",
            "2024-05-01 10:00:00.000000+0000",
            "2024-05-01 10:00:00 +0000",
            "2024-05-01 10:00:00 UTC",
            "2024-05-01 10:00:00GMT",
            "2024-05-01T15:30+05:30[Asia/Kolkata]",
            "  2024-05-01T10:00:00Z  ",
        ] {
            assert_eq!(ok(text, NEW_YORK), ten, "{text}");
        }
    }

    #[test]
    fn keeps_fractions_to_the_nanosecond() {
        let t = ok("2024-05-01T10:00:00.123456789Z", UTC);
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(
            ok("2024-05-01T10:00:00,5Z", UTC).timestamp_subsec_millis(),
            500
        );
        assert_eq!(
            ok("2024-05-01T10:00:00.1Z", UTC).timestamp_subsec_millis(),
            100
        );
        let err = parse_time("2024-05-01T10:00:00.1234567891Z", UTC).expect_err("10 digits");
        assert!(err.contains("1 to 9 digits"), "{err}");
    }

    #[test]
    fn zone_less_times_and_dates_are_in_the_given_zone() {
        assert_eq!(ok("2024-12-31 23:30:00", UTC), at("2024-12-31T23:30:00Z"));
        assert_eq!(
            ok("2024-12-31 23:30:00", NEW_YORK),
            at("2025-01-01T04:30:00Z")
        );
        assert_eq!(ok("2024-12-31T23:30", NEW_YORK), at("2025-01-01T04:30:00Z"));
        assert_eq!(ok("2024-05-01", UTC), at("2024-05-01T00:00:00Z"));
        assert_eq!(ok("2024-05-01", NEW_YORK), at("2024-05-01T04:00:00Z"));
        // A zone in brackets stands for the job's when there is no offset.
        assert_eq!(
            ok("2024-05-01T10:00[Asia/Kolkata]", NEW_YORK),
            at("2024-05-01T04:30:00Z")
        );
    }

    #[test]
    fn zone_less_times_in_a_daylight_saving_gap_or_overlap_are_refused() {
        let gap = parse_time("2024-03-10 02:30:00", NEW_YORK).expect_err("skipped hour");
        assert!(gap.contains("does not exist in America/New_York"), "{gap}");
        assert!(gap.contains("give it an offset"), "{gap}");
        let overlap = parse_time("2024-11-03 01:30:00", NEW_YORK).expect_err("repeated hour");
        assert!(
            overlap.contains("happens twice in America/New_York"),
            "{overlap}"
        );
        assert!(
            overlap.contains("-04:00") && overlap.contains("-05:00"),
            "{overlap}"
        );
        // With an offset, the same wall-clock time is one instant.
        assert_eq!(
            ok("2024-11-03 01:30:00-05:00", NEW_YORK),
            at("2024-11-03T06:30:00Z")
        );
        // UTC has no such change.
        assert_eq!(ok("2024-03-10 02:30:00", UTC), at("2024-03-10T02:30:00Z"));
    }

    #[test]
    fn numbers_are_epoch_milliseconds() {
        let t = at("2024-05-01T10:00:00Z");
        assert_eq!(from_epoch_millis(1_714_557_600_000), Ok(t));
        assert_eq!(ok("1714557600000", NEW_YORK), t);
        assert_eq!(from_epoch_millis(-1000), Ok(at("1969-12-31T23:59:59Z")));
        let frac = from_epoch_millis_f64(1_714_557_600_000.25).expect("float");
        assert_eq!(frac.timestamp_millis(), 1_714_557_600_000);
        assert_eq!(frac.timestamp_subsec_nanos(), 250_000);
        let text = ok("1714557600000.123456", UTC);
        assert_eq!(text.timestamp_subsec_nanos(), 123_456);
        let negative = from_epoch_millis_f64(-0.5).expect("float");
        assert_eq!(negative, at("1969-12-31T23:59:59.9995Z"));
        for bad in [f64::INFINITY, f64::NAN, 1e300] {
            let err = from_epoch_millis_f64(bad).expect_err("out of range");
            assert!(err.contains("out of range"), "{err}");
        }
        let err = from_epoch_millis(i64::MAX).expect_err("out of range");
        assert!(err.contains("out of range as epoch milliseconds"), "{err}");
        let err = parse_time("1714557600000.1234567", UTC).expect_err("too fine");
        assert!(err.contains("finer than nanoseconds"), "{err}");
    }

    #[test]
    fn digits_in_text_are_epoch_milliseconds_only_with_13_and_a_date_with_8() {
        assert_eq!(ok("20240501", UTC), at("2024-05-01T00:00:00Z"));
        assert_eq!(ok(" 20240501 ", NEW_YORK), at("2024-05-01T04:00:00Z"));
        assert_eq!(ok("1000000000000", UTC), at("2001-09-09T01:46:40Z"));
        assert_eq!(ok("9999999999999", UTC), at("2286-11-20T17:46:39.999Z"));
        let err = parse_time("20241301", UTC).expect_err("no month 13");
        assert!(err.contains("there is no date 2024-13-01"), "{err}");
        for (text, digits) in [
            ("1714557600", 10),
            ("1714557600.5", 10),
            ("-1000", 4),
            ("0", 1),
            ("999999999999", 12),
            ("17145576000000", 14),
            ("202405011030", 12),
            ("99999999999999999999999", 23),
        ] {
            let err = parse_time(text, UTC).expect_err(text);
            assert!(
                err.contains(&format!(
                    "text of digits only is epoch milliseconds when it has 13 digits and a date \
                     (`YYYYMMDD`) when it has 8; this has {digits} digits"
                )),
                "{text}: {err}"
            );
        }
        let err = parse_time("1714557600", UTC).expect_err("seconds");
        assert!(err.contains("look like epoch seconds"), "{err}");
    }

    #[test]
    fn times_of_day_keep_every_digit_or_are_refused() {
        let t = |h, m, s, n| NaiveTime::from_hms_nano_opt(h, m, s, n).expect("time");
        assert_eq!(parse_time_of_day("10:00"), Ok(t(10, 0, 0, 0)));
        assert_eq!(parse_time_of_day(" 23:59:59 "), Ok(t(23, 59, 59, 0)));
        assert_eq!(
            parse_time_of_day("10:00:00.123456789"),
            Ok(t(10, 0, 0, 123_456_789))
        );
        assert_eq!(
            parse_time_of_day("10:00:00,5"),
            Ok(t(10, 0, 0, 500_000_000))
        );
        for (text, why) in [
            ("10:00:00.1234567891", "1 to 9 digits"),
            ("23:59:60", "leap second"),
            ("23:59:60.5", "leap second"),
            ("24:00:00", "there is no time 24:00:00"),
            ("10:00:00Z", "unexpected `Z`"),
            ("9:30", "expected 2 digits of the hour"),
            ("10:00:00.", "1 to 9 digits"),
        ] {
            let err = parse_time_of_day(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_leap_second_is_read() {
        let t = ok("2016-12-31T23:59:60Z", UTC);
        assert_eq!(t.timestamp(), at("2016-12-31T23:59:59Z").timestamp());
    }

    #[test]
    fn errors_say_what_was_found_and_what_is_read() {
        for (text, why) in [
            ("", "empty text"),
            ("yesterday", "expected 4 digits of the year"),
            ("2024-13-01", "there is no date 2024-13-01"),
            ("2024-02-30T10:00:00Z", "there is no date 2024-02-30"),
            ("2024-05-01X10:00", "expected `T` or a space"),
            ("2024-05-01T25:00:00Z", "there is no time 25:00:00"),
            ("2024-05-01T10:00:00+2400", "there is no offset 24:00"),
            (
                "2024-05-01T10:00:00+5",
                "expected 2 digits of the offset's hours",
            ),
            ("2024-05-01T10:00:00Z junk", "unexpected ` junk`"),
            (
                "2024-05-01T10:00:00+01:00[Mars/Base]",
                "unknown time zone `Mars/Base`",
            ),
            (
                "Wed May 01 10:00:00 UTC 2024",
                "expected 4 digits of the year",
            ),
        ] {
            let err = parse_time(text, UTC).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
            if !text.is_empty() {
                assert!(err.contains("expected RFC 3339"), "{text}: {err}");
            }
        }
    }

    #[cfg(feature = "vrl")]
    #[test]
    fn record_values_are_read_the_same_way() {
        use vrl::value::Value;
        let t = at("2024-05-01T10:00:00Z");
        assert_eq!(time_of_value(&Value::Timestamp(t), UTC), Ok(t));
        assert_eq!(
            time_of_value(&Value::Integer(1_714_557_600_000), UTC),
            Ok(t)
        );
        assert_eq!(
            time_of_value(&Value::from_f64_or_zero(1_714_557_600_000.5), UTC)
                .map(|t| t.timestamp_millis()),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            time_of_value(&Value::from("2024-05-01 15:30:00.000+0530"), UTC),
            Ok(t)
        );
        let err = time_of_value(&Value::Boolean(true), UTC).expect_err("boolean");
        assert!(err.contains("boolean is not a time"), "{err}");
        let bytes = Value::Bytes(vec![0xff, 0xfe].into());
        assert!(time_of_value(&bytes, UTC).is_err());
        // Dates: as written, or the date of the instant in the zone.
        let may1 = NaiveDate::from_ymd_opt(2024, 5, 1).expect("date");
        assert_eq!(
            date_of_value(&Value::from("2024-05-01"), NEW_YORK),
            Ok(may1)
        );
        assert_eq!(
            date_of_value(&Value::from("2024-05-02T02:00:00Z"), NEW_YORK),
            Ok(may1)
        );
        assert_eq!(date_of_value(&Value::Timestamp(t), UTC), Ok(may1));
        // The basic form is the date as written, whatever the zone.
        assert_eq!(date_of_value(&Value::from("20240501"), NEW_YORK), Ok(may1));
        let err = date_of_value(&Value::from("1714557600"), UTC).expect_err("seconds");
        assert!(err.contains("look like epoch seconds"), "{err}");
        // Numbers are epoch milliseconds, as in every sink.
        assert_eq!(
            date_of_value(&Value::Integer(1_714_557_600_000), NEW_YORK),
            Ok(may1)
        );
    }
}
