//! Lists, sets, maps, vectors, tuples and user-defined types from JSON
//! arrays and objects, each element converted as its type says.
//!
//! Nulls: a tuple's elements and a user-defined type's fields may be null
//! (JSON `null` or, for fields, absent). A list, set, map value or vector
//! element may not, in every kind of collection, frozen or not: Cassandra
//! stores no null there, and dropping the element would change the data, so
//! the record is refused naming the element.
//!
//! Keys and elements: map keys that convert to one key of the map's type
//! (`"1"` and `"01"` for `map<int, text>`) are refused naming both, since
//! Cassandra would keep only one of their values. Set elements that convert
//! to one element are one element, as a set holds each value once: the first
//! is sent.

use super::convert::{describe, to_cql};
use crate::record::ExactNumbers;
use crate::record::exact::Segment;
use chrono_tz::Tz;
use num_bigint::BigInt;
use scylla::value::CqlValue;
use sluice_common::cassandra::{CqlType, UserType};
use std::collections::{HashMap, HashSet};
use vrl::value::Value;

/// The exact numbers under `segment` of the value `exact` belongs to.
fn inside(exact: Option<&ExactNumbers>, segment: Segment) -> Option<ExactNumbers> {
    exact.and_then(|e| e.under(&[segment]))
}

/// The elements of a list, set or vector: none may be null.
pub(super) fn elements(
    item: &CqlType,
    v: &Value,
    zone: Tz,
    exact: Option<&ExactNumbers>,
) -> Result<Vec<CqlValue>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{} is not an array", describe(v)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, element)| match element {
            Value::Null => Err(format!("element {i} is null: {NO_NULL_INSIDE}")),
            _ => {
                let exact = inside(exact, Segment::Index(i));
                to_cql(item, element, zone, exact.as_ref()).map_err(|e| format!("element {i}: {e}"))
            }
        })
        .collect()
}

const NO_NULL_INSIDE: &str =
    "Cassandra collections hold no null (leave the element out, or the whole field)";

/// A set's elements, each value once: the first of those that are one
/// value of the set's type (`1` and `"01"` in a `set<int>`).
pub(super) fn distinct(elements: Vec<CqlValue>) -> Vec<CqlValue> {
    let mut seen = HashSet::with_capacity(elements.len());
    elements
        .into_iter()
        .filter(|e| seen.insert(identity(e)))
        .collect()
}

/// A JSON object; keys convert from their text. Two keys that convert to
/// one key of the map's type are refused naming both: Cassandra would keep
/// only one of their values.
pub(super) fn map(
    key: &CqlType,
    value: &CqlType,
    v: &Value,
    zone: Tz,
    exact: Option<&ExactNumbers>,
) -> Result<CqlValue, String> {
    let Value::Object(entries) = v else {
        return Err(format!("{} is not an object", describe(v)));
    };
    let mut out = Vec::with_capacity(entries.len());
    // Text keys are the object's own, which differ already.
    let text_keys = matches!(key, CqlType::Text | CqlType::Ascii);
    let mut keys: HashMap<String, &str> = HashMap::new();
    for (k, item) in entries {
        let key_value = to_cql(key, &Value::from(k.as_str()), zone, None)
            .map_err(|e| format!("key `{k}`: {e}"))?;
        if !text_keys && let Some(first) = keys.insert(identity(&key_value), k.as_str()) {
            return Err(format!(
                "keys `{first}` and `{k}` are the same {key} key; a map holds one value per key, \
                 so one of their values would be lost"
            ));
        }
        if matches!(item, Value::Null) {
            return Err(format!("the value of key `{k}` is null: {NO_NULL_INSIDE}"));
        }
        let exact = inside(exact, Segment::Field(k.to_string()));
        let item = to_cql(value, item, zone, exact.as_ref())
            .map_err(|e| format!("the value of key `{k}`: {e}"))?;
        out.push((key_value, item));
    }
    Ok(CqlValue::Map(out))
}

/// What Cassandra tells a map's keys and a set's elements apart by: their
/// value, so a decimal is its number whatever its scale (`1.0` is `1.00`),
/// and a float is itself (`-0.0` is not `0.0`; every NaN is one).
fn identity(v: &CqlValue) -> String {
    match v {
        CqlValue::Decimal(d) => {
            let (bytes, scale) = d.as_signed_be_bytes_slice_and_exponent();
            let digits = BigInt::from_signed_bytes_be(bytes).to_string();
            let significant = digits.trim_end_matches('0');
            if significant.is_empty() || significant == "-" {
                return "Decimal(0)".into();
            }
            let zeros = (digits.len() - significant.len()) as i64;
            format!("Decimal({significant}e{})", zeros - i64::from(scale))
        }
        other => format!("{other:?}"),
    }
}

/// A JSON array with one element per tuple element; elements may be null.
pub(super) fn tuple(
    types: &[CqlType],
    v: &Value,
    zone: Tz,
    exact: Option<&ExactNumbers>,
) -> Result<CqlValue, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "{} is not an array (a tuple is written as one)",
            describe(v)
        ));
    };
    if items.len() != types.len() {
        return Err(format!(
            "{} has {} elements; the tuple has {}",
            describe(v),
            items.len(),
            types.len()
        ));
    }
    types
        .iter()
        .zip(items)
        .enumerate()
        .map(|(i, (ty, item))| match item {
            Value::Null => Ok(None),
            _ => {
                let exact = inside(exact, Segment::Index(i));
                to_cql(ty, item, zone, exact.as_ref())
                    .map(Some)
                    .map_err(|e| format!("element {i}: {e}"))
            }
        })
        .collect::<Result<_, _>>()
        .map(CqlValue::Tuple)
}

/// A JSON object by field name; absent and null fields are null, a name
/// the type does not have is refused rather than dropped.
pub(super) fn user_type(
    udt: &UserType,
    v: &Value,
    zone: Tz,
    exact: Option<&ExactNumbers>,
) -> Result<CqlValue, String> {
    let Value::Object(given) = v else {
        return Err(format!(
            "{} is not an object (type `{}` is written as one)",
            describe(v),
            udt.name
        ));
    };
    if let Some(unknown) = given
        .keys()
        .find(|k| !udt.fields.iter().any(|(name, _)| name == k.as_str()))
    {
        let names: Vec<&str> = udt.fields.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "has field `{unknown}`, which type `{}` does not have (its fields: {})",
            udt.name,
            names.join(", ")
        ));
    }
    let mut fields = Vec::with_capacity(udt.fields.len());
    for (name, ty) in &udt.fields {
        let value = match given.get(name.as_str()) {
            None | Some(Value::Null) => None,
            Some(field) => {
                let exact = inside(exact, Segment::Field(name.clone()));
                Some(
                    to_cql(ty, field, zone, exact.as_ref())
                        .map_err(|e| format!("field `{name}`: {e}"))?,
                )
            }
        };
        fields.push((name.clone(), value));
    }
    Ok(CqlValue::UserDefinedType {
        keyspace: udt.keyspace.clone(),
        name: udt.name.clone(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::super::convert::tests::{err, json, ok};
    use super::*;

    #[test]
    fn a_null_inside_any_collection_is_refused_naming_the_element() {
        for (t, v, element) in [
            ("list<text>", r#"["a",null,"b"]"#, "element 1 is null"),
            ("set<text>", r#"["x",null]"#, "element 1 is null"),
            ("list<int>", "[1,null,3]", "element 1 is null"),
            ("list<text>", "[null]", "element 0 is null"),
            (
                "frozen<list<uuid>>",
                r#"["d2177dd0-eaa2-11de-a572-001b779c76e3",null]"#,
                "element 1 is null",
            ),
            (
                "map<text, text>",
                r#"{"k":"v","gone":null}"#,
                "the value of key `gone` is null",
            ),
            (
                "frozen<map<text, frozen<list<int>>>>",
                r#"{"k":[1,null]}"#,
                "the value of key `k`: element 1 is null",
            ),
            ("vector<float, 2>", "[1.0,null]", "element 1 is null"),
        ] {
            let e = err(t, &json(v));
            assert!(e.starts_with(element), "{t} {v}: {e}");
            assert!(e.contains("hold no null"), "{t} {v}: {e}");
        }
        // The text `<null>` is data like any other.
        assert_eq!(
            ok("list<text>", &json(r#"["<null>"]"#)),
            CqlValue::List(vec![CqlValue::Text("<null>".into())])
        );
    }

    #[test]
    fn collections_tuples_and_user_types_convert_whole() {
        assert_eq!(
            ok("set<int>", &json(r#"[1,"2"]"#)),
            CqlValue::Set(vec![CqlValue::Int(1), CqlValue::Int(2)])
        );
        assert_eq!(
            ok("map<int, boolean>", &json(r#"{"7":true}"#)),
            CqlValue::Map(vec![(CqlValue::Int(7), CqlValue::Boolean(true))])
        );
        assert!(err("map<int, text>", &json(r#"{"x":"y"}"#)).starts_with("key `x`"));
        assert_eq!(
            ok(
                "frozen<tuple<int, text, boolean>>",
                &json(r#"[1,null,true]"#)
            ),
            CqlValue::Tuple(vec![
                Some(CqlValue::Int(1)),
                None,
                Some(CqlValue::Boolean(true))
            ])
        );
        assert!(err("tuple<int, text>", &json("[1]")).contains("has 1 elements; the tuple has 2"));
        assert!(err("tuple<int, text>", &json(r#"["x","y"]"#)).starts_with("element 0:"));
        assert_eq!(
            ok("frozen<address>", &json(r#"{"street":"Main","zip":null}"#)),
            CqlValue::UserDefinedType {
                keyspace: "ks".into(),
                name: "address".into(),
                fields: vec![
                    ("street".into(), Some(CqlValue::Text("Main".into()))),
                    ("zip".into(), None)
                ],
            }
        );
        let e = err("frozen<address>", &json(r#"{"street":"Main","zipp":1}"#));
        assert!(
            e.contains(
                "has field `zipp`, which type `address` does not have (its fields: street, zip)"
            ),
            "{e}"
        );
        let e = err("frozen<address>", &json(r#"{"zip":"x"}"#));
        assert!(e.starts_with("field `zip`: \"x\" is not an integer"), "{e}");
        assert_eq!(
            ok("vector<float, 2>", &json("[0.5, 1]")),
            CqlValue::Vector(vec![CqlValue::Float(0.5), CqlValue::Float(1.0)])
        );
        assert!(err("vector<float, 3>", &json("[0.5, 1]")).contains("has exactly 3"));
        assert!(err("list<int>", &json(r#"{"a":1}"#)).contains("is not an array"));
    }

    #[test]
    fn map_keys_that_convert_to_one_key_are_refused_naming_both() {
        for (t, v, first, second) in [
            ("map<int, text>", r#"{"1":"a","01":"b"}"#, "01", "1"),
            ("map<bigint, text>", r#"{"+5":"a","5":"b"}"#, "+5", "5"),
            (
                "map<timestamp, text>",
                r#"{"2024-05-01T10:00:00Z":"a","2024-05-01T12:00:00+02:00":"b"}"#,
                "2024-05-01T10:00:00Z",
                "2024-05-01T12:00:00+02:00",
            ),
            (
                "map<timestamp, text>",
                r#"{"1714557600000":"a","2024-05-01T10:00:00.000400Z":"b"}"#,
                "1714557600000",
                "2024-05-01T10:00:00.000400Z",
            ),
            (
                "map<decimal, text>",
                r#"{"1.0":"a","1.00":"b"}"#,
                "1.0",
                "1.00",
            ),
            ("map<decimal, text>", r#"{"10":"a","1e1":"b"}"#, "10", "1e1"),
            (
                "map<decimal, text>",
                r#"{"-0.00":"a","0":"b"}"#,
                "-0.00",
                "0",
            ),
            (
                "map<date, int>",
                r#"{"2024-05-01":1,"20240501":2}"#,
                "2024-05-01",
                "20240501",
            ),
            (
                "map<uuid, int>",
                r#"{"D2177DD0-EAA2-11DE-A572-001B779C76E3":1,"d2177dd0-eaa2-11de-a572-001b779c76e3":2}"#,
                "D2177DD0-EAA2-11DE-A572-001B779C76E3",
                "d2177dd0-eaa2-11de-a572-001b779c76e3",
            ),
            (
                "map<boolean, int>",
                r#"{"TRUE":1,"true":2}"#,
                "TRUE",
                "true",
            ),
            ("map<blob, int>", r#"{"0xcafe":1,"yv4":2}"#, "0xcafe", "yv4"),
        ] {
            let e = err(t, &json(v));
            let key = t
                .trim_start_matches("map<")
                .split(',')
                .next()
                .unwrap_or_default();
            assert_eq!(
                e,
                format!(
                    "keys `{first}` and `{second}` are the same {key} key; a map holds one value \
                     per key, so one of their values would be lost"
                ),
                "{t} {v}"
            );
        }
        let e = err(
            "frozen<map<text, frozen<map<int, text>>>>",
            &json(r#"{"k":{"1":"a","01":"b"}}"#),
        );
        assert!(
            e.starts_with("the value of key `k`: keys `01` and `1`"),
            "{e}"
        );
        // Distinct values stay distinct: -0.0 is not 0.0, 1.5 not 1.50's neighbour.
        assert!(matches!(
            ok("map<float, int>", &json(r#"{"0":1,"-0":2}"#)),
            CqlValue::Map(m) if m.len() == 2
        ));
        assert!(matches!(
            ok("map<decimal, int>", &json(r#"{"1.5":1,"1.05":2}"#)),
            CqlValue::Map(m) if m.len() == 2
        ));
    }

    #[test]
    fn set_elements_that_convert_to_one_element_are_one() {
        assert_eq!(
            ok("set<int>", &json(r#"["1","01",2,"+2"]"#)),
            CqlValue::Set(vec![CqlValue::Int(1), CqlValue::Int(2)])
        );
        let CqlValue::Set(decimals) = ok("frozen<set<decimal>>", &json(r#"["1.0","1.00","2"]"#))
        else {
            panic!("not a set");
        };
        assert_eq!(decimals.len(), 2);
        assert_eq!(
            decimals[0],
            ok("decimal", &Value::from("1.0")),
            "the first is kept"
        );
        assert!(matches!(
            ok("set<double>", &json(r#"["0","-0"]"#)),
            CqlValue::Set(s) if s.len() == 2
        ));
        // A list keeps every element.
        assert!(matches!(
            ok("list<int>", &json(r#"["1","01"]"#)),
            CqlValue::List(l) if l.len() == 2
        ));
    }
}
