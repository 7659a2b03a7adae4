//! Record values into CQL values of a column's type. Every conversion is
//! exact, or changes the value only as the column's type documents it
//! (rounding to a float, milliseconds of a timestamp), or is refused with the
//! reason, which makes the record a dead letter naming its column.

use super::collections::{distinct, elements, map, tuple, user_type};
use super::{duration, numbers};
use crate::record::ExactNumbers;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use chrono_tz::Tz;
use scylla::value::{CqlDate, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue};
use sluice_common::cassandra::CqlType;
use sluice_common::time::{date_of_value, is_leap_second, parse_time_of_day, time_of_value};
use vrl::value::Value;

/// Base64 with or without its `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Converts `v` into a value of `ty`; zone-less times are in `zone` (the
/// job's), and `exact` holds the exact numbers inside `v` (paths from `v`),
/// written as numbers where `v` becomes JSON text. The error says what was
/// found and why it does not fit.
pub fn to_cql(
    ty: &CqlType,
    v: &Value,
    zone: Tz,
    exact: Option<&ExactNumbers>,
) -> Result<CqlValue, String> {
    let found = |why: String| format!("{} {why}", describe(v));
    match ty {
        CqlType::Frozen(inner) => to_cql(inner, v, zone, exact),
        CqlType::Text => text(v, exact).map(CqlValue::Text).map_err(found),
        CqlType::Ascii => {
            let s = text(v, exact).map_err(found)?;
            match s.char_indices().find(|(_, c)| !c.is_ascii()) {
                Some((at, c)) => Err(found(format!(
                    "is not ASCII (`{c}` at byte {at}), which an ascii column requires"
                ))),
                None => Ok(CqlValue::Ascii(s)),
            }
        }
        CqlType::Int => numbers::fixed(v, (i32::MIN, i32::MAX))
            .map(CqlValue::Int)
            .map_err(found),
        CqlType::BigInt => numbers::fixed(v, (i64::MIN, i64::MAX))
            .map(CqlValue::BigInt)
            .map_err(found),
        CqlType::SmallInt => numbers::fixed(v, (i16::MIN, i16::MAX))
            .map(CqlValue::SmallInt)
            .map_err(found),
        CqlType::TinyInt => numbers::fixed(v, (i8::MIN, i8::MAX))
            .map(CqlValue::TinyInt)
            .map_err(found),
        CqlType::Varint => numbers::varint(v).map(CqlValue::Varint).map_err(found),
        CqlType::Decimal => numbers::decimal(v).map(CqlValue::Decimal).map_err(found),
        CqlType::Double => numbers::double(v).map(CqlValue::Double).map_err(found),
        CqlType::Float => numbers::float(v).map(CqlValue::Float).map_err(found),
        CqlType::Boolean => boolean(v).map(CqlValue::Boolean).map_err(found),
        CqlType::Uuid => uuid(v).map(CqlValue::Uuid).map_err(found),
        CqlType::Timeuuid => {
            let u = uuid(v).map_err(found)?;
            match u.get_version_num() {
                1 => Ok(CqlValue::Timeuuid(CqlTimeuuid::from(u))),
                n => Err(found(format!(
                    "is a version {n} UUID; a timeuuid column takes version 1 (time-based) UUIDs"
                ))),
            }
        }
        // Cassandra keeps milliseconds: a finer fraction is cut toward the past.
        CqlType::Timestamp => {
            time_of_value(v, zone).map(|t| CqlValue::Timestamp(CqlTimestamp(t.timestamp_millis())))
        }
        CqlType::Date => date_of_value(v, zone).map(|d| CqlValue::Date(CqlDate::from(d))),
        CqlType::Time => time_of_day(v, zone).map(CqlValue::Time).map_err(found),
        CqlType::Duration => match v.to_str() {
            Some(s) => duration::parse(s).map(CqlValue::Duration),
            None => Err(found(
                "is not a duration (expected text such as `P1DT2H` or `1h30m`)".into(),
            )),
        },
        CqlType::Inet => v
            .to_str()
            .and_then(|s| s.trim().parse().ok())
            .map(CqlValue::Inet)
            .ok_or_else(|| found("is not an IPv4 or IPv6 address".into())),
        CqlType::Blob => blob(v).map(CqlValue::Blob).map_err(found),
        CqlType::List(item) => elements(item, v, zone, exact).map(CqlValue::List),
        CqlType::Set(item) => elements(item, v, zone, exact)
            .map(distinct)
            .map(CqlValue::Set),
        CqlType::Vector(item, n) => {
            let items = elements(item, v, zone, exact)?;
            if items.len() != usize::from(*n) {
                return Err(found(format!(
                    "has {} elements; a vector<{item}, {n}> has exactly {n}",
                    items.len()
                )));
            }
            Ok(CqlValue::Vector(items))
        }
        CqlType::Map(key, value) => map(key, value, v, zone, exact),
        CqlType::Tuple(types) => tuple(types, v, zone, exact),
        CqlType::Udt(udt) => user_type(udt, v, zone, exact),
    }
}

/// Text as it is; a timestamp as RFC 3339; numbers, booleans, objects and
/// arrays as JSON writes them: integers and exact numbers with their digits,
/// other numbers as the shortest text that reads back as the same double
/// (`1.50` is `1.5`, `1E+2` is `100.0`, `1e21` is `1e+21`), object keys in
/// sorted order. Text that is not UTF-8, anywhere in the value, is refused
/// rather than replaced, as is a number JSON cannot write (infinity) inside
/// an object or array.
fn text(v: &Value, exact: Option<&ExactNumbers>) -> Result<String, String> {
    match v {
        Value::Bytes(_) | Value::String(_) => v
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| "is not UTF-8 text".into()),
        Value::Timestamp(t) => Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Float(f) if !f.is_finite() => Ok(f.to_string()),
        Value::Object(_) | Value::Array(_) => {
            if let Some(why) = not_json(v, &mut Vec::new()) {
                return Err(why);
            }
            String::from_utf8(crate::record::json::to_vec(v, exact))
                .map_err(|_| "is not UTF-8 text".into())
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
            serde_json::to_string(v).map_err(|e| e.to_string())
        }
        other => Ok(other.to_string_lossy().into_owned()),
    }
}

/// What inside an object or array JSON cannot write as it is: text that is
/// not UTF-8, an infinite number. Names where it is (`path`, from `v`).
fn not_json(v: &Value, path: &mut Vec<String>) -> Option<String> {
    let at = |path: &[String]| match path {
        [] => String::new(),
        _ => format!(" at `{}`", path.join(".")),
    };
    match v {
        Value::Bytes(b) if std::str::from_utf8(b).is_err() => {
            Some(format!("holds text that is not UTF-8{}", at(path)))
        }
        Value::Float(f) if !f.is_finite() => {
            Some(format!("holds {f}{}, which JSON cannot write", at(path)))
        }
        Value::Object(fields) => fields.iter().find_map(|(k, item)| {
            path.push(k.to_string());
            let why = not_json(item, path);
            path.pop();
            why
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(i.to_string());
            let why = not_json(item, path);
            path.pop();
            why
        }),
        _ => None,
    }
}

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Boolean(b) => Ok(*b),
        _ => match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            _ => Err("is not a boolean (true or false)".into()),
        },
    }
}

fn uuid(v: &Value) -> Result<uuid::Uuid, String> {
    let s = v.to_str().ok_or("is not a UUID")?;
    uuid::Uuid::parse_str(s.trim()).map_err(|e| format!("is not a UUID: {e}"))
}

/// `HH:MM[:SS[.fffffffff]]` text, an integer of nanoseconds since midnight
/// (as CQL reads integers for `time`), or a timestamp's time of day in `zone`.
/// Nothing is cut: more than 9 fraction digits and leap seconds are refused.
fn time_of_day(v: &Value, zone: Tz) -> Result<CqlTime, String> {
    let expected = "(expected `HH:MM[:SS[.fffffffff]]`, or nanoseconds since midnight)";
    let time = match v {
        Value::Integer(nanos) if (0..86_400_000_000_000).contains(nanos) => {
            return Ok(CqlTime(*nanos));
        }
        Value::Timestamp(t) => {
            let time = t.with_timezone(&zone).time();
            if is_leap_second(time) {
                return Err(
                    "is in a leap second (23:59:60), which a time of day cannot hold".into(),
                );
            }
            time
        }
        _ => {
            let s = v
                .to_str()
                .ok_or_else(|| format!("is not a time of day {expected}"))?;
            parse_time_of_day(s).map_err(|why| format!("is not a time of day: {why} {expected}"))?
        }
    };
    CqlTime::try_from(time).map_err(|e| format!("is not a time of day: {e}"))
}

/// `0x`-prefixed hex (CQL's blob literal), or else base64.
fn blob(v: &Value) -> Result<Vec<u8>, String> {
    let s = v
        .to_str()
        .ok_or("is not text of base64 or 0x-prefixed hex")?
        .trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return hex::decode(hex).map_err(|e| format!("is not 0x-prefixed hex: {e}"));
    }
    BASE64
        .decode(s)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|e| format!("is neither base64 nor 0x-prefixed hex: {e}"))
}

/// A value as an error shows it: JSON, at most 80 characters.
pub(super) fn describe(v: &Value) -> String {
    let shown = match v {
        Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
        other => other.to_string(),
    };
    if shown.chars().count() > 80 {
        format!("{}…", shown.chars().take(80).collect::<String>())
    } else {
        shown
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::exact::Segment;
    use sluice_common::cassandra::UserTypes;
    use std::collections::HashMap;

    const UTC: Tz = chrono_tz::UTC;

    pub(crate) fn ty(text: &str) -> CqlType {
        let mut declared = HashMap::new();
        declared.insert(
            "address".to_string(),
            (
                vec!["street".into(), "zip".into()],
                vec!["text".into(), "int".into()],
            ),
        );
        CqlType::parse(text, &UserTypes::new("ks", declared)).expect("type")
    }

    pub(crate) fn json(text: &str) -> Value {
        Value::from(serde_json::from_str::<serde_json::Value>(text).expect("json"))
    }

    pub(crate) fn ok(t: &str, v: &Value) -> CqlValue {
        to_cql(&ty(t), v, UTC, None).unwrap_or_else(|e| panic!("{t} {v}: {e}"))
    }

    pub(crate) fn err(t: &str, v: &Value) -> String {
        to_cql(&ty(t), v, UTC, None).expect_err(&format!("{t} {v} must not convert"))
    }

    #[test]
    fn text_is_kept_and_ascii_refuses_other_characters() {
        assert_eq!(ok("text", &Value::from("DÉ")), CqlValue::Text("DÉ".into()));
        assert_eq!(ok("text", &Value::Integer(7)), CqlValue::Text("7".into()));
        assert_eq!(
            ok("text", &json(r#"{"a":[1,null]}"#)),
            CqlValue::Text(r#"{"a":[1,null]}"#.into())
        );
        assert_eq!(
            ok("ascii", &Value::from("plain")),
            CqlValue::Ascii("plain".into())
        );
        let e = err("ascii", &Value::from("DÉ"));
        assert!(e.contains("is not ASCII (`É` at byte 1)"), "{e}");
        let e = err("text", &Value::Bytes(vec![0x61, 0xff].into()));
        assert!(e.contains("is not UTF-8 text"), "{e}");
    }

    #[test]
    fn uuids_and_time_uuids_of_version_1_only() {
        let v4 = "6f1e2d3c-0000-4000-8000-000000000001";
        let v1 = "d2177dd0-eaa2-11de-a572-001b779c76e3";
        assert!(matches!(ok("uuid", &Value::from(v4)), CqlValue::Uuid(_)));
        assert!(matches!(
            ok("timeuuid", &Value::from(v1)),
            CqlValue::Timeuuid(_)
        ));
        let e = err("timeuuid", &Value::from(v4));
        assert!(e.contains("is a version 4 UUID"), "{e}");
        assert!(err("uuid", &Value::from("nope")).contains("is not a UUID"));
    }

    #[test]
    fn times_dates_and_times_of_day() {
        let ms = 1_714_557_600_000;
        for v in [
            Value::from("2024-05-01 15:30:00.000+0530"),
            Value::from("2024-05-01T10:00:00+0000"),
            Value::Integer(ms),
            Value::from_f64_or_zero(1_714_557_600_000.75),
        ] {
            assert_eq!(
                ok("timestamp", &v),
                CqlValue::Timestamp(CqlTimestamp(ms)),
                "{v}"
            );
        }
        let e = err("timestamp", &Value::from("01/05/2024"));
        assert!(e.contains("expected RFC 3339"), "{e}");
        let may1 = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).expect("date");
        assert_eq!(
            ok("date", &Value::from("2024-05-01")),
            CqlValue::Date(CqlDate::from(may1))
        );
        assert_eq!(
            ok("date", &Value::from("2024-05-01T23:00:00-01:00")),
            CqlValue::Date(CqlDate::from(may1.succ_opt().expect("next")))
        );
        assert_eq!(
            ok("time", &Value::from("10:00:00.5")),
            CqlValue::Time(CqlTime(36_000_500_000_000))
        );
        assert_eq!(
            ok("time", &Value::from("00:01")),
            CqlValue::Time(CqlTime(60_000_000_000))
        );
        assert_eq!(ok("time", &Value::Integer(5)), CqlValue::Time(CqlTime(5)));
        assert!(err("time", &Value::from("25:00")).contains("is not a time of day"));
        assert!(err("time", &Value::Integer(86_400_000_000_000)).contains("is not a time of day"));
    }

    #[test]
    fn a_time_of_day_is_never_cut_to_fit() {
        assert_eq!(
            ok("time", &Value::from("23:59:59.999999999")),
            CqlValue::Time(CqlTime(86_399_999_999_999))
        );
        let e = err("time", &Value::from("10:00:00.1234567891"));
        assert!(
            e.contains("a fraction of a second has 1 to 9 digits"),
            "{e}"
        );
        for leap in ["23:59:60", "23:59:60.25"] {
            let e = err("time", &Value::from(leap));
            assert!(e.contains("leap second"), "{leap}: {e}");
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("leap second")
            .and_utc();
        let e = err("time", &Value::Timestamp(leap));
        assert!(e.contains("leap second"), "{e}");
    }

    #[test]
    fn durations_inets_and_blobs_from_their_text_forms() {
        assert!(matches!(
            ok("duration", &Value::from("P1DT2H")),
            CqlValue::Duration(_)
        ));
        assert!(matches!(
            ok("duration", &Value::from("1h30m")),
            CqlValue::Duration(_)
        ));
        assert!(err("duration", &Value::Integer(5)).contains("is not a duration"));
        assert_eq!(
            ok("inet", &Value::from("10.0.0.1")),
            CqlValue::Inet("10.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            ok("inet", &Value::from("::1")),
            CqlValue::Inet("::1".parse().expect("ip"))
        );
        assert!(err("inet", &Value::from("10.0.0.256")).contains("is not an IPv4 or IPv6 address"));
        assert_eq!(
            ok("blob", &Value::from("0xCAfe00")),
            CqlValue::Blob(vec![0xca, 0xfe, 0])
        );
        assert_eq!(
            ok("blob", &Value::from("yv4A")),
            CqlValue::Blob(vec![0xca, 0xfe, 0])
        );
        assert_eq!(
            ok("blob", &Value::from("aGk")),
            CqlValue::Blob(b"hi".to_vec())
        );
        assert_eq!(ok("blob", &Value::from("")), CqlValue::Blob(vec![]));
        assert!(err("blob", &Value::from("0xabc")).contains("0x-prefixed hex"));
        assert!(err("blob", &Value::from("not base64!")).contains("neither base64"));
    }

    #[test]
    fn out_of_range_numbers_are_refused_with_the_range() {
        assert_eq!(
            ok("smallint", &Value::from("-32768")),
            CqlValue::SmallInt(i16::MIN)
        );
        assert_eq!(ok("tinyint", &Value::Integer(127)), CqlValue::TinyInt(127));
        let e = err("tinyint", &Value::Integer(300));
        assert_eq!(e, "300 is out of range (-128 to 127)");
        let e = err("int", &Value::from("2147483648"));
        assert!(
            e.contains("out of range (-2147483648 to 2147483647)"),
            "{e}"
        );
        assert!(matches!(
            ok("varint", &Value::from("123456789012345678901234567890")),
            CqlValue::Varint(_)
        ));
        assert!(matches!(
            ok("decimal", &Value::from("0.1")),
            CqlValue::Decimal(_)
        ));
        assert_eq!(ok("boolean", &Value::from("TRUE")), CqlValue::Boolean(true));
        assert!(err("boolean", &Value::Integer(1)).contains("is not a boolean"));
    }

    /// A record decoded as the Kafka source decodes it: exact numbers and all.
    fn decoded(text: &str) -> (Value, Option<Box<ExactNumbers>>) {
        crate::record::json::decode(text.as_bytes()).expect("json")
    }

    fn ok_exact(t: &str, v: &Value, exact: Option<&ExactNumbers>) -> CqlValue {
        to_cql(&ty(t), v, UTC, exact).unwrap_or_else(|e| panic!("{t} {v}: {e}"))
    }

    #[test]
    fn text_takes_json_with_its_exact_numbers_as_numbers() {
        let (doc, exact) = decoded(
            r#"{"order_id":18446744073709551616,"n":1.50,"z":[1,123456789012345678901234567890],"a":"18446744073709551616"}"#,
        );
        assert!(exact.is_some());
        // Keys sorted; exact numbers as numbers, a string of digits a string.
        assert_eq!(
            ok_exact("text", &doc, exact.as_deref()),
            CqlValue::Text(
                r#"{"a":"18446744073709551616","n":1.5,"order_id":18446744073709551616,"z":[1,123456789012345678901234567890]}"#
                    .into()
            )
        );
        // Inside collections, tuples and user types too.
        let (v, exact) = decoded(r#"[{"id":99999999999999999999},{"id":1}]"#);
        assert_eq!(
            ok_exact("list<text>", &v, exact.as_deref()),
            CqlValue::List(vec![
                CqlValue::Text(r#"{"id":99999999999999999999}"#.into()),
                CqlValue::Text(r#"{"id":1}"#.into()),
            ])
        );
        let (v, exact) = decoded(r#"{"k":{"id":99999999999999999999}}"#);
        assert_eq!(
            ok_exact("map<text, text>", &v, exact.as_deref()),
            CqlValue::Map(vec![(
                CqlValue::Text("k".into()),
                CqlValue::Text(r#"{"id":99999999999999999999}"#.into())
            )])
        );
        let (v, exact) = decoded(r#"[1,[99999999999999999999]]"#);
        assert_eq!(
            ok_exact("tuple<int, text>", &v, exact.as_deref()),
            CqlValue::Tuple(vec![
                Some(CqlValue::Int(1)),
                Some(CqlValue::Text("[99999999999999999999]".into()))
            ])
        );
        let (v, exact) = decoded(r#"{"street":[99999999999999999999],"zip":1}"#);
        let CqlValue::UserDefinedType { fields, .. } = ok_exact("address", &v, exact.as_deref())
        else {
            panic!("not a user type");
        };
        assert_eq!(
            fields[0].1,
            Some(CqlValue::Text("[99999999999999999999]".into()))
        );
    }

    #[test]
    fn numbers_into_text_are_written_as_json_writes_them() {
        for (json_number, text) in [
            ("7", "7"),
            ("-0", "-0.0"),
            ("1.50", "1.5"),
            ("1E+2", "100.0"),
            ("1e21", "1e+21"),
            ("0.1", "0.1"),
            ("1e-7", "1e-7"),
            ("18446744073709551616", "18446744073709551616"),
            ("3.141592653589793238462643", "3.141592653589793238462643"),
            ("true", "true"),
        ] {
            let (v, exact) = decoded(&format!(r#"{{"n":{json_number}}}"#));
            let Value::Object(fields) = &v else {
                panic!("object");
            };
            let n = fields.get("n").expect("n");
            let exact = exact.and_then(|e| e.under(&[Segment::Field("n".into())]));
            assert_eq!(
                ok_exact("text", n, exact.as_ref()),
                CqlValue::Text(text.into()),
                "{json_number}"
            );
        }
    }

    #[test]
    fn text_refuses_json_it_cannot_write_as_it_is() {
        let mut fields = vrl::value::ObjectMap::new();
        fields.insert("ok".into(), Value::from("fine"));
        fields.insert(
            "raw".into(),
            Value::Array(vec![Value::Bytes(vec![0x61, 0xff].into())]),
        );
        let e = err("text", &Value::Object(fields));
        assert!(e.contains("holds text that is not UTF-8 at `raw.0`"), "{e}");
        let e = err(
            "text",
            &Value::Array(vec![Value::from_f64_or_zero(f64::INFINITY)]),
        );
        assert!(
            e.contains("holds inf at `0`, which JSON cannot write"),
            "{e}"
        );
    }
}
