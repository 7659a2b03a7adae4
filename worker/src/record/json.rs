//! Records as JSON: Kafka messages decoded into values, values written back,
//! numbers kept exactly both ways (see [`super::exact`]).

use super::exact::{ExactNumbers, Number, Segment, classify, text_of};
use bytes::Bytes;
use serde_json::value::RawValue;
use vrl::value::{ObjectMap, Value};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Significant digits every double holds exactly: a literal with no more
/// is kept as VRL's integer or float without a second look.
const SAFE_DIGITS: usize = 15;

/// The message without a UTF-8 byte order mark, which JSON does not allow.
pub fn without_bom(bytes: &Bytes) -> Bytes {
    if bytes.starts_with(BOM) {
        bytes.slice(BOM.len()..)
    } else {
        bytes.clone()
    }
}

/// Decodes one message. A UTF-8 byte order mark is skipped; the error says
/// what is wrong (not UTF-8 and where, empty, not JSON and where).
pub fn decode(bytes: &[u8]) -> Result<(Value, Option<Box<ExactNumbers>>), String> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8: invalid byte 0x{:02X} at byte {}",
            bytes.get(e.valid_up_to()).copied().unwrap_or_default(),
            e.valid_up_to()
        )
    })?;
    if text.trim().is_empty() {
        return Err(if text.is_empty() {
            "not JSON: the message is empty".into()
        } else {
            "not JSON: the message holds only whitespace".into()
        });
    }
    if !has_long_numbers(text.as_bytes()) {
        return serde_json::from_str::<Value>(text)
            .map(|v| (v, None))
            .map_err(|e| format!("not JSON: {e}"));
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut exact = ExactNumbers::default();
    let value = exact_value(raw, &mut Vec::new(), &mut exact)?;
    Ok((value, (!exact.is_empty()).then(|| Box::new(exact))))
}

/// Whether a number literal outside strings has more significant digits
/// than a double surely holds, or a three-digit exponent.
fn has_long_numbers(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => i = string_end(text, i + 1),
            b'-' | b'0'..=b'9' => {
                let (mut digits, mut exponent_digits, mut in_exponent) = (0, 0, false);
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    match text[i] {
                        b'e' | b'E' => in_exponent = true,
                        b'0'..=b'9' if in_exponent => exponent_digits += 1,
                        b'0'..=b'9' => digits += 1,
                        _ => {}
                    }
                    i += 1;
                }
                if digits > SAFE_DIGITS || exponent_digits > 2 {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// The index after the quote that closes the string whose text starts at
/// `from`, or the text's length if none does. Strings are most of a typical
/// record, so they are skipped a vector at a time rather than byte by byte.
fn string_end(text: &[u8], mut from: usize) -> usize {
    while let Some(at) = text
        .get(from..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        if text[from + at] == b'"' {
            return from + at + 1;
        }
        from += at + 2;
    }
    text.len()
}

/// The slow path, for messages with long numbers: each value is taken as
/// its raw text, so a number's literal is at hand when no type holds it.
fn exact_value(
    raw: &RawValue,
    path: &mut Vec<Segment>,
    exact: &mut ExactNumbers,
) -> Result<Value, String> {
    let text = raw.get();
    let not_json = |e: serde_json::Error| format!("not JSON: {e}");
    match text.as_bytes().first() {
        Some(b'{') => {
            let mut fields = parse_fields(text)?;
            // A later duplicate replaces an earlier one, as in the fast path.
            let mut seen = std::collections::HashSet::new();
            fields.reverse();
            fields.retain(|(key, _)| seen.insert(key.clone()));
            fields.reverse();
            let mut map = ObjectMap::new();
            for (key, item) in fields {
                path.push(Segment::Field(key.clone()));
                let value = exact_value(item, path, exact);
                path.pop();
                map.insert(key.into(), value?);
            }
            Ok(Value::Object(map))
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(not_json)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(Segment::Index(i));
                let value = exact_value(item, path, exact);
                path.pop();
                out.push(value?);
            }
            Ok(Value::Array(out))
        }
        Some(b'-' | b'0'..=b'9') => match classify(text).map_err(|e| format!("not JSON: {e}"))? {
            Number::Integer(i) => Ok(Value::Integer(i)),
            Number::Float(f) => Ok(Value::from_f64_or_zero(f)),
            Number::Exact => {
                let literal = Bytes::copy_from_slice(text.as_bytes());
                exact.push(path.clone(), literal.clone());
                Ok(Value::Bytes(literal))
            }
        },
        _ => serde_json::from_str::<Value>(text).map_err(not_json),
    }
}

/// An object's fields in order, each value as raw text.
fn parse_fields(text: &str) -> Result<Vec<(String, &RawValue)>, String> {
    struct Fields<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Fields<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Fields<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut access: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut fields = Vec::new();
                    while let Some((k, v)) = access.next_entry::<String, &'de RawValue>()? {
                        fields.push((k, v));
                    }
                    Ok(Fields(fields))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Fields<'_>>(text)
        .map(|f| f.0)
        .map_err(|e| format!("not JSON: {e}"))
}

/// Writes `value` as JSON, the exact numbers `exact` names as numbers.
pub fn write(out: &mut Vec<u8>, value: &Value, exact: Option<&ExactNumbers>) {
    match exact {
        Some(exact) if !exact.is_empty() => write_exact(out, value, &mut Vec::new(), exact),
        // Writing to a Vec cannot fail, and every VRL value is serialisable.
        _ => {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

pub fn to_vec(value: &Value, exact: Option<&ExactNumbers>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value, exact);
    out
}

fn write_exact(out: &mut Vec<u8>, value: &Value, path: &mut Vec<Segment>, exact: &ExactNumbers) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, key.as_str());
                out.push(b':');
                path.push(Segment::Field(key.as_str().to_string()));
                write_exact(out, item, path, exact);
                path.pop();
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                path.push(Segment::Index(i));
                write_exact(out, item, path, exact);
                path.pop();
            }
            out.push(b']');
        }
        leaf if text_of(leaf).is_some_and(|t| exact.is_number_at(path, t)) => {
            out.extend_from_slice(text_of(leaf).unwrap_or_default());
        }
        leaf => {
            let _ = serde_json::to_writer(&mut *out, leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_string(value: &Value, exact: Option<&ExactNumbers>) -> String {
        String::from_utf8(to_vec(value, exact)).expect("UTF-8")
    }

    fn round_trip(input: &str) -> String {
        let (value, exact) = decode(input.as_bytes()).expect("decodes");
        to_string(&value, exact.as_deref())
    }

    #[test]
    fn numbers_pass_exactly_whatever_their_size() {
        for input in [
            r#"{"event_id":18446744073709551615,"n":2}"#,
            r#"{"event_id":-9223372036854775809,"ts":1714557600000}"#,
            r#"{"a":[1,123456789012345678901234567890,{"b":3.141592653589793238462643}]}"#,
            r#"{"big":9223372036854775807,"small":0.1}"#,
        ] {
            assert_eq!(round_trip(input), input);
        }
        let (a, _) = decode(b"{\"id\":18446744073709551614}").expect("decodes");
        let (b, _) = decode(b"{\"id\":18446744073709551615}").expect("decodes");
        assert_ne!(a, b, "two ids stay two ids");
    }

    #[test]
    fn long_literals_inside_strings_are_strings() {
        let input = r#"{"n":1,"s":"12345678901234567890"}"#;
        let (value, exact) = decode(input.as_bytes()).expect("decodes");
        assert!(exact.is_none());
        assert_eq!(to_string(&value, None), input);
    }

    #[test]
    fn escapes_decide_where_a_string_ends() {
        let inside = r#"{"s":"a \"12345678901234567890\" b","n":1}"#;
        assert!(!has_long_numbers(inside.as_bytes()));
        let after = r#"{"s":"ends in a backslash \\","n":12345678901234567890}"#;
        assert!(has_long_numbers(after.as_bytes()));
        let (value, exact) = decode(after.as_bytes()).expect("decodes");
        assert_eq!(
            to_string(&value, exact.as_deref()),
            r#"{"n":12345678901234567890,"s":"ends in a backslash \\"}"#
        );
        assert!(!has_long_numbers(
            br#"{"unterminated":"12345678901234567890"#
        ));
        assert!(!has_long_numbers(br#"{"s":"trailing escape \"#));
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        let err = |b: &[u8]| decode(b).expect_err("refused");
        assert!(err(b"").contains("empty"));
        assert!(err(b"   \n").contains("whitespace"));
        assert!(err(b"{\"id\":4,\"name\":\"\xff\xfe\"}").contains("not UTF-8"));
        assert!(err(b"{\"id\":13,\"v\":1e400}").contains("out of range"));
        assert!(err(b"{\"id\":005}").starts_with("not JSON"));
        assert!(err(b"{\"id\":7}{\"id\":7.5}").starts_with("not JSON"));
        let (bom, _) = decode(b"\xEF\xBB\xBF{\"id\":3}").expect("BOM skipped");
        assert_eq!(to_string(&bom, None), r#"{"id":3}"#);
        let (dup, _) = decode(br#"{"id":10,"id":11}"#).expect("duplicate keys");
        assert_eq!(to_string(&dup, None), r#"{"id":11}"#);
        let (dup, exact) =
            decode(br#"{"id":10,"id":18446744073709551615}"#).expect("duplicate keys");
        assert_eq!(
            to_string(&dup, exact.as_deref()),
            r#"{"id":18446744073709551615}"#
        );
    }
}
