//! CQL column types as `system_schema.columns` spells them, and conversion of
//! record values into them.

use chrono::{DateTime, NaiveDate, Utc};
use scylla::value::{CqlDate, CqlTimestamp, CqlTimeuuid, CqlValue};
use vrl::value::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Ascii,
    Int,
    BigInt,
    SmallInt,
    TinyInt,
    Float,
    Double,
    Boolean,
    Uuid,
    Timeuuid,
    Timestamp,
    Date,
    List(Box<ColumnType>),
    Set(Box<ColumnType>),
    Map(Box<ColumnType>, Box<ColumnType>),
}

impl ColumnType {
    /// Parses `map<text, frozen<list<int>>>` and the like; `None` for types the
    /// sink does not write.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(inner) = strip(s, "frozen") {
            return Self::parse(inner);
        }
        if let Some(inner) = strip(s, "list") {
            return Some(Self::List(Box::new(Self::parse(inner)?)));
        }
        if let Some(inner) = strip(s, "set") {
            return Some(Self::Set(Box::new(Self::parse(inner)?)));
        }
        if let Some(inner) = strip(s, "map") {
            let (k, v) = split_top_level(inner)?;
            return Some(Self::Map(
                Box::new(Self::parse(k)?),
                Box::new(Self::parse(v)?),
            ));
        }
        Some(match s {
            "text" | "varchar" => Self::Text,
            "ascii" => Self::Ascii,
            "int" => Self::Int,
            "bigint" => Self::BigInt,
            "smallint" => Self::SmallInt,
            "tinyint" => Self::TinyInt,
            "float" => Self::Float,
            "double" => Self::Double,
            "boolean" => Self::Boolean,
            "uuid" => Self::Uuid,
            "timeuuid" => Self::Timeuuid,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            _ => return None,
        })
    }

    /// Converts a record value; the error says what was found and why it does not fit.
    pub fn convert(&self, v: &Value) -> Result<CqlValue, String> {
        let fail = |why: &str| Err(format!("cannot convert {}{why}", describe(v)));
        match self {
            Self::Text | Self::Ascii => {
                let s = match v {
                    Value::Object(_) | Value::Array(_) => {
                        serde_json::to_string(v).map_err(|e| e.to_string())?
                    }
                    Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    other => other.to_string_lossy().into_owned(),
                };
                Ok(if *self == Self::Text {
                    CqlValue::Text(s)
                } else {
                    CqlValue::Ascii(s)
                })
            }
            Self::Int => int(v)
                .and_then(|i| i32::try_from(i).ok())
                .map(CqlValue::Int)
                .map_or_else(|| fail(""), Ok),
            Self::BigInt => int(v).map(CqlValue::BigInt).map_or_else(|| fail(""), Ok),
            Self::SmallInt => int(v)
                .and_then(|i| i16::try_from(i).ok())
                .map(CqlValue::SmallInt)
                .map_or_else(|| fail(""), Ok),
            Self::TinyInt => int(v)
                .and_then(|i| i8::try_from(i).ok())
                .map(CqlValue::TinyInt)
                .map_or_else(|| fail(""), Ok),
            Self::Double => float(v).map(CqlValue::Double).map_or_else(|| fail(""), Ok),
            Self::Float => float(v)
                .map(|f| CqlValue::Float(f as f32))
                .map_or_else(|| fail(""), Ok),
            Self::Boolean => match v {
                Value::Boolean(b) => Ok(CqlValue::Boolean(*b)),
                _ => match v.to_str_lossy().as_deref() {
                    Some("true") => Ok(CqlValue::Boolean(true)),
                    Some("false") => Ok(CqlValue::Boolean(false)),
                    _ => fail(""),
                },
            },
            Self::Uuid | Self::Timeuuid => {
                let Some(s) = v.to_str_lossy() else {
                    return fail("");
                };
                let u = match uuid::Uuid::parse_str(s.trim()) {
                    Ok(u) => u,
                    Err(e) => return fail(&format!(": {e}")),
                };
                Ok(if *self == Self::Uuid {
                    CqlValue::Uuid(u)
                } else {
                    CqlValue::Timeuuid(CqlTimeuuid::from(u))
                })
            }
            Self::Timestamp => match timestamp(v) {
                Some(t) => Ok(CqlValue::Timestamp(CqlTimestamp(t.timestamp_millis()))),
                None => fail(" (expected RFC 3339 text or epoch milliseconds)"),
            },
            Self::Date => {
                let date = match v {
                    Value::Timestamp(t) => Some(t.date_naive()),
                    _ => v.to_str_lossy().and_then(|s| {
                        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                            .ok()
                            .or_else(|| timestamp(v).map(|t| t.date_naive()))
                    }),
                };
                match date {
                    Some(d) => Ok(CqlValue::Date(CqlDate::from(d))),
                    None => fail(" (expected YYYY-MM-DD)"),
                }
            }
            Self::List(inner) | Self::Set(inner) => {
                let Value::Array(items) = v else {
                    return fail("");
                };
                let items = items
                    .iter()
                    .map(|i| inner.convert(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if matches!(self, Self::List(_)) {
                    CqlValue::List(items)
                } else {
                    CqlValue::Set(items)
                })
            }
            Self::Map(kt, vt) => {
                let Value::Object(map) = v else {
                    return fail("");
                };
                let mut entries = Vec::with_capacity(map.len());
                for (k, item) in map {
                    if matches!(item, Value::Null) {
                        continue;
                    }
                    let key = kt.convert(&Value::from(k.as_str()))?;
                    entries.push((key, vt.convert(item)?));
                }
                Ok(CqlValue::Map(entries))
            }
        }
    }
}

fn strip<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.strip_prefix(name)?
        .trim_start()
        .strip_prefix('<')?
        .strip_suffix('>')
}

fn split_top_level(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(f.into_inner() as i64),
        _ => v.to_str_lossy()?.trim().parse().ok(),
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(f.into_inner()),
        Value::Integer(i) => Some(*i as f64),
        _ => v.to_str_lossy()?.trim().parse().ok(),
    }
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Timestamp(t) => Some(*t),
        Value::Integer(ms) => DateTime::from_timestamp_millis(*ms),
        _ => {
            let s = v.to_str_lossy()?;
            DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

fn describe(v: &Value) -> String {
    let shown = match v {
        Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
        other => other.to_string(),
    };
    let shown: String = shown.chars().take(80).collect();
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_types() {
        assert_eq!(
            ColumnType::parse("map<text, frozen<list<int>>>"),
            Some(ColumnType::Map(
                Box::new(ColumnType::Text),
                Box::new(ColumnType::List(Box::new(ColumnType::Int)))
            ))
        );
        assert_eq!(ColumnType::parse("inet"), None);
    }

    #[test]
    fn converts_seed_values() {
        let ts = ColumnType::Timestamp
            .convert(&Value::from("2024-05-01T10:00:00.250Z"))
            .expect("rfc3339");
        assert_eq!(ts, CqlValue::Timestamp(CqlTimestamp(1_714_557_600_250)));
        let date = ColumnType::Date
            .convert(&Value::from("2024-05-01"))
            .expect("date");
        assert_eq!(
            date,
            CqlValue::Date(CqlDate::from(
                NaiveDate::from_ymd_opt(2024, 5, 1).expect("valid")
            ))
        );
        let err = ColumnType::Uuid
            .convert(&Value::from("not-a-uuid"))
            .expect_err("bad uuid");
        assert!(err.contains("not-a-uuid"), "{err}");
        let err = ColumnType::Int
            .convert(&Value::from(1i64 << 40))
            .expect_err("overflow");
        assert!(err.contains("1099511627776"), "{err}");
    }
}
