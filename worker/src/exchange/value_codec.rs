//! Record values on the wire as the `Value` protobuf message of
//! `exchange.proto`, written straight from VRL values and read straight into
//! them: lossless (timestamps stay timestamps, bytes stay bytes, exact
//! numbers stay numbers), and without an intermediate message tree.

use crate::record::ExactNumbers;
use crate::record::exact::{Segment, text_of};
use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use prost::encoding::{
    WireType, decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint,
};
use vrl::value::{KeyString, ObjectMap, Value};

const NULL: u32 = 1;
const BOOLEAN: u32 = 2;
const INTEGER: u32 = 3;
const FLOAT: u32 = 4;
const BYTES: u32 = 5;
const TIMESTAMP: u32 = 6;
const ARRAY: u32 = 7;
const OBJECT: u32 = 8;
const REGEX: u32 = 9;
const NUMBER: u32 = 10;
const STRING: u32 = 11;
/// Nesting a received value may have: well beyond what JSON decoding lets in.
const MAX_DEPTH: usize = 256;

/// Appends `value` as a `Value` message.
pub fn encode(value: &Value, exact: Option<&ExactNumbers>, out: &mut Vec<u8>) {
    let exact = exact.filter(|e| !e.is_empty());
    let mut path = Vec::new();
    encode_value(value, exact, &mut path, out);
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn timestamp_parts(t: &DateTime<Utc>) -> (i64, u32) {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

/// Length of `value`'s message body.
fn value_len(value: &Value, exact: Option<&ExactNumbers>, path: &mut Vec<Segment>) -> usize {
    let delimited = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    match value {
        Value::Null | Value::Boolean(_) => 2,
        Value::Integer(i) => 1 + encoded_len_varint(zigzag(*i)),
        Value::Float(_) => 9,
        Value::Bytes(b) => delimited(b.len()),
        Value::String(s) => delimited(s.len()),
        Value::Regex(r) => delimited(r.as_str().len()),
        Value::Timestamp(t) => delimited(timestamp_len(t)),
        Value::Array(items) => {
            let mut len = 0;
            for (i, item) in items.iter().enumerate() {
                let inner = with_segment(path, exact.map(|_| Segment::Index(i)), |p| {
                    value_len(item, exact, p)
                });
                len += delimited(inner);
            }
            delimited(len)
        }
        Value::Object(map) => delimited(object_len(map, exact, path)),
    }
}

fn timestamp_len(t: &DateTime<Utc>) -> usize {
    let (seconds, nanos) = timestamp_parts(t);
    1 + encoded_len_varint(seconds as u64) + 1 + encoded_len_varint(u64::from(nanos))
}

fn object_len(map: &ObjectMap, exact: Option<&ExactNumbers>, path: &mut Vec<Segment>) -> usize {
    let delimited = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    let mut len = 0;
    for (key, item) in map {
        let inner = with_segment(
            path,
            exact.map(|_| Segment::Field(key.as_str().into())),
            |p| value_len(item, exact, p),
        );
        len += delimited(delimited(key.len()) + delimited(inner));
    }
    len
}

/// Runs `f` with `segment` pushed onto `path`, when exact numbers are tracked.
fn with_segment<T>(
    path: &mut Vec<Segment>,
    segment: Option<Segment>,
    f: impl FnOnce(&mut Vec<Segment>) -> T,
) -> T {
    match segment {
        Some(s) => {
            path.push(s);
            let out = f(path);
            path.pop();
            out
        }
        None => f(path),
    }
}

fn put_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn encode_value(
    value: &Value,
    exact: Option<&ExactNumbers>,
    path: &mut Vec<Segment>,
    out: &mut Vec<u8>,
) {
    match value {
        Value::Null => {
            encode_key(NULL, WireType::Varint, out);
            out.push(1);
        }
        Value::Boolean(b) => {
            encode_key(BOOLEAN, WireType::Varint, out);
            out.push(u8::from(*b));
        }
        Value::Integer(i) => {
            encode_key(INTEGER, WireType::Varint, out);
            encode_varint(zigzag(*i), out);
        }
        Value::Float(f) => {
            encode_key(FLOAT, WireType::SixtyFourBit, out);
            out.extend_from_slice(&f.into_inner().to_le_bytes());
        }
        v if text_of(v).is_some_and(|t| exact.is_some_and(|e| e.is_number_at(path, t))) => {
            put_delimited(NUMBER, text_of(v).unwrap_or_default(), out);
        }
        Value::Bytes(b) => put_delimited(BYTES, b, out),
        Value::String(s) => put_delimited(STRING, s.as_bytes(), out),
        Value::Regex(r) => put_delimited(REGEX, r.as_str().as_bytes(), out),
        Value::Timestamp(t) => {
            let (seconds, nanos) = timestamp_parts(t);
            encode_key(TIMESTAMP, WireType::LengthDelimited, out);
            encode_varint(timestamp_len(t) as u64, out);
            encode_key(1, WireType::Varint, out);
            encode_varint(seconds as u64, out);
            encode_key(2, WireType::Varint, out);
            encode_varint(u64::from(nanos), out);
        }
        Value::Array(items) => {
            let mut body = 0;
            let mut lens = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = with_segment(path, exact.map(|_| Segment::Index(i)), |p| {
                    value_len(item, exact, p)
                });
                body += 1 + encoded_len_varint(len as u64) + len;
                lens.push(len);
            }
            encode_key(ARRAY, WireType::LengthDelimited, out);
            encode_varint(body as u64, out);
            for (i, (item, len)) in items.iter().zip(lens).enumerate() {
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(len as u64, out);
                with_segment(path, exact.map(|_| Segment::Index(i)), |p| {
                    encode_value(item, exact, p, out)
                });
            }
        }
        Value::Object(map) => {
            encode_key(OBJECT, WireType::LengthDelimited, out);
            encode_varint(object_len(map, exact, path) as u64, out);
            for (key, item) in map {
                let segment = exact.map(|_| Segment::Field(key.as_str().into()));
                with_segment(path, segment, |p| {
                    let inner = value_len(item, exact, p);
                    let field = 1
                        + encoded_len_varint(key.len() as u64)
                        + key.len()
                        + 1
                        + encoded_len_varint(inner as u64)
                        + inner;
                    encode_key(1, WireType::LengthDelimited, out);
                    encode_varint(field as u64, out);
                    put_delimited(1, key.as_bytes(), out);
                    encode_key(2, WireType::LengthDelimited, out);
                    encode_varint(inner as u64, out);
                    encode_value(item, exact, p, out);
                });
            }
        }
    }
}

/// Reads one `Value` message; exact numbers are noted in `exact`.
pub fn decode(mut buf: &[u8], exact: &mut ExactNumbers) -> Result<Value, String> {
    decode_value(&mut buf, exact, &mut Vec::new(), 0)
}

fn take<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = decode_varint(buf).map_err(|e| e.to_string())? as usize;
    if len > buf.len() {
        return Err(format!(
            "a field of {len} bytes runs past the end of its message"
        ));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn decode_value(
    buf: &mut &[u8],
    exact: &mut ExactNumbers,
    path: &mut Vec<Segment>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("value nested deeper than {MAX_DEPTH}"));
    }
    let (tag, _) = decode_key(buf).map_err(|e| e.to_string())?;
    let varint = |buf: &mut &[u8]| decode_varint(buf).map_err(|e| e.to_string());
    Ok(match tag {
        NULL => {
            varint(buf)?;
            Value::Null
        }
        BOOLEAN => Value::Boolean(varint(buf)? != 0),
        INTEGER => Value::Integer(unzigzag(varint(buf)?)),
        FLOAT => {
            if buf.len() < 8 {
                return Err("a double runs past the end of its message".into());
            }
            let f = buf.get_f64_le();
            Value::from_f64_or_zero(f)
        }
        BYTES => Value::Bytes(Bytes::copy_from_slice(take(buf)?)),
        STRING => {
            let text = std::str::from_utf8(take(buf)?).map_err(|e| e.to_string())?;
            Value::from(text)
        }
        NUMBER => {
            let literal = Bytes::copy_from_slice(take(buf)?);
            exact.push(path.clone(), literal.clone());
            Value::Bytes(literal)
        }
        REGEX => {
            let text = std::str::from_utf8(take(buf)?).map_err(|e| e.to_string())?;
            let regex = regex::Regex::new(text).map_err(|e| e.to_string())?;
            Value::Regex(regex.into())
        }
        TIMESTAMP => {
            let mut body = take(buf)?;
            let (mut seconds, mut nanos) = (0i64, 0u32);
            while !body.is_empty() {
                match decode_key(&mut body).map_err(|e| e.to_string())?.0 {
                    1 => seconds = varint(&mut body)? as i64,
                    _ => nanos = varint(&mut body)? as u32,
                }
            }
            Value::Timestamp(
                DateTime::from_timestamp(seconds, nanos)
                    .ok_or_else(|| format!("timestamp {seconds}.{nanos} out of range"))?,
            )
        }
        ARRAY => {
            let mut body = take(buf)?;
            let mut items = Vec::new();
            while !body.is_empty() {
                decode_key(&mut body).map_err(|e| e.to_string())?;
                let mut item = take(&mut body)?;
                path.push(Segment::Index(items.len()));
                let value = decode_value(&mut item, exact, path, depth + 1);
                path.pop();
                items.push(value?);
            }
            Value::Array(items)
        }
        OBJECT => {
            let mut body = take(buf)?;
            let mut map = ObjectMap::new();
            while !body.is_empty() {
                decode_key(&mut body).map_err(|e| e.to_string())?;
                let mut field = take(&mut body)?;
                let (mut key, mut item) = (None, None);
                while !field.is_empty() {
                    match decode_key(&mut field).map_err(|e| e.to_string())?.0 {
                        1 => key = Some(take(&mut field)?),
                        _ => item = Some(take(&mut field)?),
                    }
                }
                let key = std::str::from_utf8(key.unwrap_or_default())
                    .map_err(|e| e.to_string())?
                    .to_string();
                let mut item = item.ok_or_else(|| format!("field `{key}` has no value"))?;
                path.push(Segment::Field(key.clone()));
                let value = decode_value(&mut item, exact, path, depth + 1);
                path.pop();
                map.insert(KeyString::from(key), value?);
            }
            Value::Object(map)
        }
        other => return Err(format!("unknown value kind {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::json;

    fn round_trip(value: &Value, exact: Option<&ExactNumbers>) -> (Value, ExactNumbers) {
        let mut out = Vec::new();
        encode(value, exact, &mut out);
        let mut back = ExactNumbers::default();
        let decoded = decode(&out, &mut back).expect("decodes");
        (decoded, back)
    }

    #[test]
    fn every_kind_of_value_arrives_as_it_was_sent() {
        let mut map = ObjectMap::new();
        map.insert("null".into(), Value::Null);
        map.insert("t".into(), Value::Boolean(true));
        map.insert("f".into(), Value::Boolean(false));
        map.insert("min".into(), Value::Integer(i64::MIN));
        map.insert("max".into(), Value::Integer(i64::MAX));
        map.insert("neg".into(), Value::Integer(-3));
        map.insert("pi".into(), Value::from_f64_or_zero(std::f64::consts::PI));
        map.insert(
            "bytes".into(),
            Value::Bytes(Bytes::from_static(b"\xff\x00raw")),
        );
        map.insert("empty".into(), Value::Bytes(Bytes::new()));
        map.insert("text".into(), Value::from("héllo"));
        map.insert(
            "ts".into(),
            Value::Timestamp("2024-12-31T23:30:00.123456789Z".parse().expect("time")),
        );
        map.insert(
            "old".into(),
            Value::Timestamp("1900-01-01T00:00:00Z".parse().expect("time")),
        );
        map.insert(
            "re".into(),
            Value::Regex(regex::Regex::new("a+b").expect("regex").into()),
        );
        map.insert(
            "nested".into(),
            Value::Array(vec![
                Value::Array(vec![]),
                Value::Object(ObjectMap::new()),
                Value::Integer(1),
            ]),
        );
        let value = Value::Object(map);
        let (back, exact) = round_trip(&value, None);
        assert_eq!(back, value);
        assert!(exact.is_empty());
        // VRL's equality takes text and bytes as one; the wire keeps them apart.
        let Value::Object(back) = back else {
            panic!("object")
        };
        assert!(matches!(back["text"], Value::String(_)));
        assert!(matches!(back["bytes"], Value::Bytes(_)));
    }

    #[test]
    fn exact_numbers_stay_numbers() {
        let input = br#"{"id":18446744073709551615,"list":[1,123456789012345678901234567890],"s":"18446744073709551615"}"#;
        let (value, exact) = json::decode(input).expect("decodes");
        let (back, back_exact) = round_trip(&value, exact.as_deref());
        assert_eq!(back, value);
        assert_eq!(json::to_vec(&back, Some(&back_exact)), input.to_vec());
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let value = Value::from(serde_json::json!({"a": [1, 2, {"b": "c"}]}));
        let mut out = Vec::new();
        encode(&value, None, &mut out);
        for cut in 0..out.len() {
            let _ = decode(&out[..cut], &mut ExactNumbers::default());
        }
        assert!(decode(&[0xff, 0xff], &mut ExactNumbers::default()).is_err());
    }
}
