//! JSON numbers that neither a 64-bit integer nor a double holds exactly
//! (ids beyond ±2^63, decimals with more digits than a double keeps). VRL
//! has no type for them, so a record carries each as a string of its exact
//! digits, and remembers here where those strings are numbers: every sink
//! and the exchange write them back as the same number, never rounded.

use bytes::Bytes;
use vrl::value::Value;

/// One step of a path into a record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// Where in a record value an exact number is, and its JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExactNumbers {
    entries: Vec<(Vec<Segment>, Bytes)>,
}

impl ExactNumbers {
    pub fn push(&mut self, path: Vec<Segment>, text: Bytes) {
        self.entries.push((path, text));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the string `text` at `path` is one of the exact numbers.
    pub fn is_number_at(&self, path: &[Segment], text: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(p, t)| p.as_slice() == path && t.as_ref() == text)
    }

    /// The entries inside the value at `prefix`, with their paths from that
    /// value: what a sink writing only that value needs. `None` when there
    /// are none.
    pub fn under(&self, prefix: &[Segment]) -> Option<ExactNumbers> {
        let entries: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(path, text)| Some((path.strip_prefix(prefix)?.to_vec(), text.clone())))
            .collect();
        (!entries.is_empty()).then_some(ExactNumbers { entries })
    }

    /// Keeps the entries `value` still holds unchanged, after a program
    /// rewrote the record: a number it moved or changed is a plain string now.
    pub fn retain_in(&mut self, value: &Value) {
        self.entries
            .retain(|(path, text)| lookup(value, path).and_then(text_of) == Some(text.as_ref()));
    }
}

/// The bytes of a string value, whichever of VRL's two string kinds it is.
pub fn text_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::Bytes(b) => Some(b),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn lookup<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut v = value;
    for segment in path {
        v = match (v, segment) {
            (Value::Object(map), Segment::Field(f)) => map.get(f.as_str())?,
            (Value::Array(items), Segment::Index(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// How a JSON number literal is kept: as an integer or a double when one of
/// those holds it exactly, else as its exact text.
#[derive(Debug, PartialEq)]
pub enum Number {
    Integer(i64),
    Float(f64),
    Exact,
}

/// Classifies a JSON number literal; an error for one beyond a double's range
/// (`1e400`), which no sink could write as a number.
pub fn classify(literal: &str) -> Result<Number, String> {
    let integral = !literal.contains(['.', 'e', 'E']);
    if integral {
        return Ok(match literal.parse::<i64>() {
            Ok(i) => Number::Integer(i),
            Err(_) => Number::Exact,
        });
    }
    let f: f64 = literal
        .parse()
        .map_err(|e| format!("number {literal} is not valid: {e}"))?;
    if !f.is_finite() {
        return Err(format!("number {literal} is out of range of a double"));
    }
    let mut buffer = ryu::Buffer::new();
    if decimal(buffer.format_finite(f)) == decimal(literal) {
        Ok(Number::Float(f))
    } else {
        Ok(Number::Exact)
    }
}

/// A decimal literal as (negative, significant digits, exponent of the last
/// digit), so that `1.50`, `15e-1` and `1.5` compare equal.
fn decimal(text: &str) -> (bool, String, i64) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = whole.chars().chain(fraction.chars()).collect();
    let mut exponent = exponent - fraction.len() as i64;
    let trailing = digits.len() - digits.trim_end_matches('0').len();
    digits.truncate(digits.len() - trailing);
    exponent += trailing as i64;
    let digits = digits.trim_start_matches('0').to_string();
    if digits.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, digits, exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_i64_and_long_decimals_are_kept_exactly() {
        assert_eq!(
            classify("9223372036854775807"),
            Ok(Number::Integer(i64::MAX))
        );
        assert_eq!(
            classify("-9223372036854775808"),
            Ok(Number::Integer(i64::MIN))
        );
        for exact in [
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "123456789012345678901234567890",
            "3.141592653589793238462643",
            "9007199254740993.0",
        ] {
            assert_eq!(classify(exact), Ok(Number::Exact), "{exact}");
        }
        for (text, f) in [
            ("0.1", 0.1),
            ("1.50", 1.5),
            ("15e-1", 1.5),
            ("-2.5E3", -2500.0),
        ] {
            assert_eq!(classify(text), Ok(Number::Float(f)), "{text}");
        }
        assert!(classify("1e400").is_err());
    }

    #[test]
    fn the_exact_numbers_under_a_path_are_found_from_there() {
        let field = |f: &str| Segment::Field(f.into());
        let mut exact = ExactNumbers::default();
        let big = Bytes::from_static(b"18446744073709551616");
        exact.push(vec![field("doc"), field("order_id")], big.clone());
        exact.push(
            vec![field("doc"), field("lines"), Segment::Index(1)],
            big.clone(),
        );
        exact.push(vec![field("other")], big.clone());
        let doc = exact.under(&[field("doc")]).expect("two under doc");
        assert!(doc.is_number_at(&[field("order_id")], &big));
        assert!(doc.is_number_at(&[field("lines"), Segment::Index(1)], &big));
        assert!(!doc.is_number_at(&[field("other")], &big));
        let line = doc
            .under(&[field("lines"), Segment::Index(1)])
            .expect("the line itself");
        assert!(line.is_number_at(&[], &big));
        assert!(exact.under(&[field("none")]).is_none());
        assert_eq!(exact.under(&[]), Some(exact.clone()));
    }

    #[test]
    fn an_exact_number_a_program_moved_is_a_plain_string() {
        let mut exact = ExactNumbers::default();
        let id = Segment::Field("id".into());
        exact.push(
            vec![id.clone()],
            Bytes::from_static(b"18446744073709551615"),
        );
        let kept = Value::from(serde_json::json!({"id": "18446744073709551615"}));
        exact.retain_in(&kept);
        assert!(exact.is_number_at(std::slice::from_ref(&id), b"18446744073709551615"));
        let moved = Value::from(serde_json::json!({"other": "18446744073709551615"}));
        exact.retain_in(&moved);
        assert!(exact.is_empty());
    }
}
