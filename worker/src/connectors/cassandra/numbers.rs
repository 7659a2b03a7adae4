//! Numbers for CQL number columns, exactly or not at all: integers from
//! JSON integers, whole floats or digit text of any length (JSON integers
//! beyond 64 bits reach records as their digits), decimals from their
//! digits, and nothing rounded on the way to an integer or decimal column.

use num_bigint::BigInt;
use scylla::value::{CqlDecimal, CqlVarint};
use std::borrow::Cow;
use std::str::FromStr;
use vrl::value::Value;

/// Largest float every integer up to which is exact (2^53).
const EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// A record value as the decimal digits of an integer (`-?[0-9]+`).
fn integer_digits(v: &Value) -> Result<Cow<'_, str>, String> {
    match v {
        Value::Integer(i) => Ok(Cow::Owned(i.to_string())),
        Value::Float(f) => {
            let f = f.into_inner();
            if f.fract() != 0.0 || !f.is_finite() {
                Err("is not a whole number".into())
            } else if f.abs() > EXACT_FLOAT_INT {
                Err("is a float too large to be an exact integer (send it as an integer or as text)".into())
            } else {
                Ok(Cow::Owned((f as i64).to_string()))
            }
        }
        Value::Bytes(_) | Value::String(_) => {
            let text = v.to_str().ok_or("is text that is not UTF-8")?.trim();
            let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err("is not an integer".into());
            }
            Ok(Cow::Owned(text.trim_start_matches('+').to_string()))
        }
        _ => Err("is not an integer".into()),
    }
}

/// An integer that fits `T` (`int`, `bigint`, `smallint`, `tinyint`).
pub fn fixed<T: FromStr + TryFrom<i64> + std::fmt::Display + Copy>(
    v: &Value,
    (min, max): (T, T),
) -> Result<T, String> {
    let digits = integer_digits(v)?;
    digits
        .parse::<T>()
        .map_err(|_| format!("is out of range ({min} to {max})"))
}

/// An integer of any size (`varint`).
pub fn varint(v: &Value) -> Result<CqlVarint, String> {
    let digits = integer_digits(v)?;
    let n = BigInt::from_str(&digits).map_err(|e| format!("is not an integer: {e}"))?;
    Ok(CqlVarint::from_signed_bytes_be(n.to_signed_bytes_be()))
}

/// A decimal with all its digits (`decimal`): from integers, from text such
/// as `-12.3400` or `1.5e-7`, and from floats as the shortest decimal that
/// reads back as the same float (`0.1` stays `0.1`).
pub fn decimal(v: &Value) -> Result<CqlDecimal, String> {
    let text: Cow<'_, str> = match v {
        Value::Integer(i) => Cow::Owned(i.to_string()),
        Value::Float(f) if f.is_finite() => Cow::Owned(f.to_string()),
        Value::Bytes(_) | Value::String(_) => {
            Cow::Borrowed(v.to_str().ok_or("is text that is not UTF-8")?.trim())
        }
        _ => return Err("is not a decimal number".into()),
    };
    parse_decimal(&text)
}

/// `[+-]digits[.digits][e[+-]digits]` as unscaled digits and a scale.
fn parse_decimal(text: &str) -> Result<CqlDecimal, String> {
    let bad = || "is not a decimal number".to_string();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (sign, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let scale = i32::try_from(fraction.len() as i64 - exponent)
        .map_err(|_| "has an exponent out of range for decimal".to_string())?;
    let unscaled = BigInt::from_str(&format!("{sign}{digits}")).map_err(|_| bad())?;
    Ok(CqlDecimal::from_signed_be_bytes_and_exponent(
        unscaled.to_signed_bytes_be(),
        scale,
    ))
}

/// A floating-point number (`double`): the nearest double to the value
/// (integers beyond 2^53 and numbers with more digits than a double keeps are
/// rounded to it). Text may name infinity or NaN (`inf`, `-Infinity`,
/// `NaN`); a number beyond a double's range, or too small to be told from
/// zero, is refused rather than made infinite or zero.
pub fn double(v: &Value) -> Result<f64, String> {
    let (f, written) = nearest(v)?;
    if let Some(text) = written {
        fits("double", f, &text, f64::MAX, f64::from_bits(1))?;
    }
    Ok(f)
}

/// A 32-bit floating-point number (`float`): the nearest float to the value
/// (integers beyond 2^24 round), refused, as for [`double`], when beyond a
/// float's range or too small to be told from zero.
pub fn float(v: &Value) -> Result<f32, String> {
    let (f, written) = nearest(v)?;
    let narrow = f as f32;
    if let Some(text) = written {
        let (max, min) = (f64::from(f32::MAX), f64::from(f32::from_bits(1)));
        fits("float", f64::from(narrow), &text, max, min)?;
    }
    Ok(narrow)
}

/// The nearest double to the number `v` holds or writes, with the number as
/// written (`None` for text naming infinity or NaN, which are what they say).
fn nearest(v: &Value) -> Result<(f64, Option<Cow<'_, str>>), String> {
    match v {
        Value::Float(f) => Ok((f.into_inner(), Some(Cow::Owned(f.to_string())))),
        Value::Integer(i) => Ok((*i as f64, Some(Cow::Owned(i.to_string())))),
        Value::Bytes(_) | Value::String(_) => {
            let text = v.to_str().ok_or("is text that is not UTF-8")?.trim();
            let f: f64 = text.parse().map_err(|_| "is not a number".to_string())?;
            let word = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
            let named = matches!(word.as_str(), "inf" | "infinity" | "nan");
            Ok((f, (!named).then_some(Cow::Borrowed(text))))
        }
        _ => Err("is not a number".into()),
    }
}

/// Refuses `read`, the nearest value of a type to the number written `text`,
/// when it became infinite or zero although the number is neither.
fn fits(ty: &str, read: f64, text: &str, max: f64, min: f64) -> Result<(), String> {
    if read.is_infinite() {
        return Err(format!("is out of range for {ty} (±{max:e})"));
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    if read == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(format!(
            "is too small for {ty}: it would be 0 (the smallest {ty} above 0 is {min:e})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(d: &CqlDecimal) -> (BigInt, i32) {
        let (bytes, scale) = d.as_signed_be_bytes_slice_and_exponent();
        (BigInt::from_signed_bytes_be(bytes), scale)
    }

    fn big(v: &CqlVarint) -> BigInt {
        BigInt::from_signed_bytes_be(v.as_signed_bytes_be_slice())
    }

    #[test]
    fn fixed_integers_take_their_whole_range_and_refuse_beyond() {
        assert_eq!(
            fixed(&Value::Integer(i64::from(i32::MAX)), (i32::MIN, i32::MAX)),
            Ok(i32::MAX)
        );
        assert_eq!(fixed(&Value::Integer(-128), (i8::MIN, i8::MAX)), Ok(-128i8));
        assert_eq!(
            fixed(&Value::from(" 32767 "), (i16::MIN, i16::MAX)),
            Ok(32767i16)
        );
        assert_eq!(fixed(&Value::from("+5"), (i16::MIN, i16::MAX)), Ok(5i16));
        assert_eq!(
            fixed(&Value::from_f64_or_zero(42.0), (i32::MIN, i32::MAX)),
            Ok(42)
        );
        let err = fixed(&Value::Integer(128), (i8::MIN, i8::MAX)).expect_err("tinyint");
        assert_eq!(err, "is out of range (-128 to 127)");
        let err = fixed(&Value::Integer(-32769), (i16::MIN, i16::MAX)).expect_err("smallint");
        assert_eq!(err, "is out of range (-32768 to 32767)");
        let err =
            fixed(&Value::from("9223372036854775808"), (i64::MIN, i64::MAX)).expect_err("bigint");
        assert!(err.contains("out of range"), "{err}");
        let err = fixed(&Value::from_f64_or_zero(1.5), (i32::MIN, i32::MAX)).expect_err("1.5");
        assert_eq!(err, "is not a whole number");
        let err = fixed(&Value::from_f64_or_zero(1e19), (i64::MIN, i64::MAX)).expect_err("1e19");
        assert!(err.contains("too large to be an exact integer"), "{err}");
        for bad in ["", "1e3", "12a", "0x10", "- 1"] {
            assert!(
                fixed(&Value::from(bad), (i32::MIN, i32::MAX)).is_err(),
                "{bad}"
            );
        }
        assert!(fixed(&Value::Boolean(true), (i32::MIN, i32::MAX)).is_err());
    }

    #[test]
    fn varints_keep_every_digit() {
        let n = "-123456789012345678901234567890123456789";
        assert_eq!(
            big(&varint(&Value::from(n)).expect("varint")).to_string(),
            n
        );
        assert_eq!(
            big(&varint(&Value::from("18446744073709551615")).expect("u64 max")).to_string(),
            "18446744073709551615"
        );
        assert_eq!(
            big(&varint(&Value::Integer(-1)).expect("-1")).to_string(),
            "-1"
        );
        assert_eq!(
            big(&varint(&Value::Integer(0)).expect("0")).to_string(),
            "0"
        );
        assert!(varint(&Value::from("1.5")).is_err());
    }

    #[test]
    fn decimals_keep_every_digit_and_their_scale() {
        let d = decimal(&Value::from("123456789012345678901234567890.000000001")).expect("long");
        assert_eq!(
            digits(&d),
            (
                BigInt::from_str("123456789012345678901234567890000000001").expect("n"),
                9
            )
        );
        assert_eq!(
            digits(&decimal(&Value::from("-12.3400")).expect("scale 4")),
            (BigInt::from(-123400), 4)
        );
        assert_eq!(
            digits(&decimal(&Value::from("1.5e-7")).expect("exponent")),
            (BigInt::from(15), 8)
        );
        assert_eq!(
            digits(&decimal(&Value::from("2E+3")).expect("exponent")),
            (BigInt::from(2), -3)
        );
        assert_eq!(
            digits(&decimal(&Value::from(".5")).expect(".5")),
            (BigInt::from(5), 1)
        );
        assert_eq!(
            digits(&decimal(&Value::Integer(i64::MIN)).expect("integer")),
            (BigInt::from(i64::MIN), 0)
        );
        // The shortest text that reads back as the same float: what was written.
        assert_eq!(
            digits(&decimal(&Value::from_f64_or_zero(0.1)).expect("0.1")),
            (BigInt::from(1), 1)
        );
        for bad in ["", "1.2.3", "e5", "1e", "abc", "1,5", "--1"] {
            assert!(decimal(&Value::from(bad)).is_err(), "{bad}");
        }
        assert!(decimal(&Value::from("1e99999999999")).is_err());
    }

    #[test]
    fn floats_from_numbers_and_text_within_range() {
        assert_eq!(double(&Value::Integer(3)), Ok(3.0));
        assert_eq!(double(&Value::from("-2.5e3")), Ok(-2500.0));
        assert_eq!(float(&Value::from_f64_or_zero(0.5)), Ok(0.5));
        let err = float(&Value::from_f64_or_zero(1e39)).expect_err("beyond f32");
        assert!(err.contains("out of range for float"), "{err}");
        assert!(double(&Value::from("many")).is_err());
    }

    #[test]
    fn no_number_becomes_infinite_or_zero_on_the_way() {
        for text in ["1e400", "-1e400", "1.8e308"] {
            let err = double(&Value::from(text)).expect_err(text);
            assert!(err.contains("out of range for double"), "{text}: {err}");
            let err = float(&Value::from(text)).expect_err(text);
            assert!(err.contains("out of range for float"), "{text}: {err}");
        }
        for text in ["1e-400", "-2.5e-330"] {
            let err = double(&Value::from(text)).expect_err(text);
            assert!(
                err.contains("too small for double: it would be 0"),
                "{text}: {err}"
            );
        }
        for v in [
            Value::from("1e39"),
            Value::from("-3.5e38"),
            Value::from_f64_or_zero(1e300),
        ] {
            let err = float(&v).expect_err("beyond f32");
            assert!(err.contains("out of range for float"), "{v}: {err}");
        }
        for v in [
            Value::from("1e-50"),
            Value::from_f64_or_zero(-1e-46),
            Value::from("1e-320"),
        ] {
            let err = float(&v).expect_err("below f32");
            assert!(
                err.contains("too small for float: it would be 0"),
                "{v}: {err}"
            );
        }
        // Zero, infinity and NaN written as such are what they say.
        for zero in ["0", "-0.0", "0e10", "0.000"] {
            assert_eq!(double(&Value::from(zero)).map(f64::abs), Ok(0.0), "{zero}");
            assert_eq!(float(&Value::from(zero)).map(f32::abs), Ok(0.0), "{zero}");
        }
        assert_eq!(double(&Value::from("-inf")), Ok(f64::NEG_INFINITY));
        assert_eq!(float(&Value::from("Infinity")), Ok(f32::INFINITY));
        assert!(double(&Value::from("NaN")).is_ok_and(f64::is_nan));
        // Rounding to the nearest value of the type is what the type does.
        assert_eq!(double(&Value::from("4.9e-324")), Ok(f64::from_bits(1)));
        assert_eq!(float(&Value::from("1e-45")), Ok(f32::from_bits(1)));
        assert_eq!(float(&Value::Integer(16_777_217)), Ok(16_777_216.0));
        assert_eq!(
            double(&Value::from("3.141592653589793238462643")),
            Ok(std::f64::consts::PI)
        );
    }
}
