//! CQL `duration` values from text: ISO 8601 (`P1DT2H`, `P1Y2M`, `PT1.5S`,
//! `P2W`) and Cassandra's own form (`1h30m`, `2d`, `1y2mo`, `500ms`), each
//! with an optional leading `-`.

use scylla::value::CqlDuration;

const EXPECTED: &str = "expected a duration such as `P1DT2H30M`, `PT0.5S`, `1h30m` or `-2d`";

/// The units of a duration, added up as CQL keeps them: months, days and
/// nanoseconds, which do not convert into one another.
#[derive(Default)]
struct Parts {
    months: i64,
    days: i64,
    nanos: i64,
}

impl Parts {
    fn add(&mut self, unit: &str, n: i64, fraction_nanos: i64) -> Option<()> {
        let (field, scale) = match unit {
            "y" => (&mut self.months, 12),
            "mo" => (&mut self.months, 1),
            "w" => (&mut self.days, 7),
            "d" => (&mut self.days, 1),
            "h" => (&mut self.nanos, 3_600_000_000_000),
            "m" => (&mut self.nanos, 60_000_000_000),
            "s" => (&mut self.nanos, 1_000_000_000),
            "ms" => (&mut self.nanos, 1_000_000),
            "us" | "µs" => (&mut self.nanos, 1_000),
            "ns" => (&mut self.nanos, 1),
            _ => return None,
        };
        *field = field
            .checked_add(n.checked_mul(scale)?)?
            .checked_add(fraction_nanos)?;
        Some(())
    }
}

/// Parses `text` as a duration; the error says which forms are read.
pub fn parse(text: &str) -> Result<CqlDuration, String> {
    let s = text.trim();
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let parts = match body.strip_prefix(['P', 'p']) {
        Some(iso) => iso_8601(iso),
        None => cassandra(body),
    }
    .ok_or_else(|| format!("`{s}` is not a duration ({EXPECTED})"))?;
    let sign = if negative { -1 } else { 1 };
    let range = || format!("`{s}` is out of range for a duration");
    Ok(CqlDuration {
        months: i32::try_from(parts.months * sign).map_err(|_| range())?,
        days: i32::try_from(parts.days * sign).map_err(|_| range())?,
        nanoseconds: parts.nanos.checked_mul(sign).ok_or_else(range)?,
    })
}

/// `[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`, after the `P`.
fn iso_8601(s: &str) -> Option<Parts> {
    let (date, time) = match s.split_once(['T', 't']) {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return None,
        None => (s, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut parts = Parts::default();
    for (n, unit) in numbered(date)? {
        let unit = match unit.to_ascii_uppercase().as_str() {
            "Y" => "y",
            "M" => "mo",
            "W" => "w",
            "D" => "d",
            _ => return None,
        };
        parts.add(unit, whole(n)?, 0)?;
    }
    for (n, unit) in numbered(time.unwrap_or(""))? {
        match unit.to_ascii_uppercase().as_str() {
            "H" => parts.add("h", whole(n)?, 0)?,
            "M" => parts.add("m", whole(n)?, 0)?,
            "S" => {
                let (secs, fraction) = n.split_once(['.', ',']).unwrap_or((n, ""));
                if fraction.len() > 9 {
                    return None;
                }
                let nanos = if fraction.is_empty() {
                    0
                } else {
                    format!("{fraction:0<9}").parse().ok()?
                };
                parts.add("s", whole(secs)?, nanos)?;
            }
            _ => return None,
        }
    }
    Some(parts)
}

/// Cassandra's `1y2mo3w4d5h6m7s8ms9us10ns`: each number followed by its unit.
fn cassandra(s: &str) -> Option<Parts> {
    let mut parts = Parts::default();
    let pairs = numbered(s)?;
    if pairs.is_empty() {
        return None;
    }
    for (n, unit) in pairs {
        parts.add(&unit.to_ascii_lowercase(), whole(n)?, 0)?;
    }
    Some(parts)
}

/// Splits `12h30m` into `[("12", "h"), ("30", "m")]`; `None` when a unit
/// lacks its number or the text ends with a number.
fn numbered(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .unwrap_or(rest.len());
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| number_end + i);
        if number_end == 0 || unit_end == number_end {
            return None;
        }
        out.push((&rest[..number_end], &rest[number_end..unit_end]));
        rest = &rest[unit_end..];
    }
    Some(out)
}

fn whole(n: &str) -> Option<i64> {
    if n.bytes().all(|b| b.is_ascii_digit()) {
        n.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(months: i32, days: i32, nanoseconds: i64) -> CqlDuration {
        CqlDuration {
            months,
            days,
            nanoseconds,
        }
    }

    const HOUR: i64 = 3_600_000_000_000;
    const MINUTE: i64 = 60_000_000_000;
    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn reads_iso_8601() {
        assert_eq!(parse("P1DT2H"), Ok(d(0, 1, 2 * HOUR)));
        assert_eq!(
            parse("P1Y2M3W4DT5H6M7.5S"),
            Ok(d(14, 25, 5 * HOUR + 6 * MINUTE + 7 * SECOND + 500_000_000))
        );
        assert_eq!(parse("PT0.000000001S"), Ok(d(0, 0, 1)));
        assert_eq!(parse("P2W"), Ok(d(0, 14, 0)));
        assert_eq!(parse("-P1M"), Ok(d(-1, 0, 0)));
        assert_eq!(parse("pt90m"), Ok(d(0, 0, 90 * MINUTE)));
    }

    #[test]
    fn reads_cassandras_form() {
        assert_eq!(parse("1h30m"), Ok(d(0, 0, HOUR + 30 * MINUTE)));
        assert_eq!(parse("1y2mo3w4d"), Ok(d(14, 25, 0)));
        assert_eq!(
            parse("5s8ms9us10ns"),
            Ok(d(0, 0, 5 * SECOND + 8_000_000 + 9_000 + 10))
        );
        assert_eq!(parse("3µs"), Ok(d(0, 0, 3_000)));
        assert_eq!(parse("-2d"), Ok(d(0, -2, 0)));
        assert_eq!(parse("1H"), Ok(d(0, 0, HOUR)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "P",
            "PT",
            "P1H",
            "1.5h",
            "h",
            "10",
            "1x",
            "P1DT2",
            "PT1.0000000001S",
            "P1D2",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("expected a duration such as"), "{bad}: {err}");
        }
        let err = parse("99999999999y").expect_err("months beyond i32");
        assert!(err.contains("out of range"), "{err}");
    }
}
