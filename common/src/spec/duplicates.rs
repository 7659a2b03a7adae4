//! Keys written twice in one map of a job spec. YAML and JSON parsers keep
//! the last value and drop the first without a word, so a setting the user
//! wrote would be silently ignored; each duplicate is refused at its path.

use super::reader::join_path;
use crate::error::SpecProblem;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

/// Each key that appears more than once in one map of `text` (YAML or
/// JSON), at its field path (`source.kafka.topic`, `transforms[1].remap`).
/// Empty for text that does not parse: its syntax is reported elsewhere.
pub(crate) fn duplicate_keys(text: &str) -> Vec<SpecProblem> {
    let found = RefCell::new(Vec::new());
    let walk = Walk {
        path: String::new(),
        found: &found,
    };
    match walk.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(()) => found.into_inner(),
        Err(_) => Vec::new(),
    }
}

/// Walks one value of the tree at `path`, noting duplicate keys in `found`.
struct Walk<'a> {
    path: String,
    found: &'a RefCell<Vec<SpecProblem>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): the spec reader refuses it; nothing to walk.
        let (IgnoredAny, _) = data.variant::<IgnoredAny>()?;
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let item = Walk {
                path: format!("{}[{index}]", self.path),
                found: self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = join_path(&self.path, &key);
            map.next_value_seed(Walk {
                path: path.clone(),
                found: self.found,
            })?;
            if !seen.insert(key) {
                self.found.borrow_mut().push(SpecProblem {
                    path,
                    message: "is written more than once in its map; only one value can hold".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_keys;

    fn paths(text: &str) -> Vec<String> {
        duplicate_keys(text).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn keys_written_twice_are_found_at_their_paths_in_yaml_and_json() {
        let yaml = "name: a\nsource:\n  kafka: { topic: t, topic: u }\n\
                    transforms:\n  - remap: '.x = 1'\n    remap: '.y = 2'\nname: b\n";
        assert_eq!(
            paths(yaml),
            vec!["source.kafka.topic", "transforms[0].remap", "name"]
        );
        let json = r#"{"jobId": "a", "sink": {"s3DeliveryUnit": {"region": "x", "region": "y"}}}"#;
        assert_eq!(paths(json), vec!["sink.s3DeliveryUnit.region"]);
    }

    #[test]
    fn distinct_keys_and_unparsable_text_find_nothing() {
        assert!(paths("a: 1\nb: { a: 1 }\nc: [ { a: 1 }, { a: 2 } ]\nd: 1e400\n").is_empty());
        assert!(paths("{ not yaml: [").is_empty());
    }
}
