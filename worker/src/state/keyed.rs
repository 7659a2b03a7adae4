use crate::record::Record;
use crate::record::exact::{Segment, text_of};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_common::keys::{DEFAULT_MAX_PARALLELISM, key_group, stable_hash};
use std::collections::{BTreeMap, HashMap};
use vrl::value::Value;

/// An operator's state as it is snapshotted: per key group, its keys and
/// their values.
pub type GroupedState = BTreeMap<u32, Vec<(String, serde_json::Value)>>;

/// The key of a record under `fields`: the JSON of each field's value, each
/// followed by a NUL; an exact number is its digits, so ids beyond 2^63 are
/// keys of their own. The exchange routes by the same bytes, so a key's group
/// is the one its subtask owns.
pub fn key_of(record: &Record, fields: &[String]) -> Result<String, String> {
    let Value::Object(map) = &record.value else {
        return Err("a keyed step needs an object record".into());
    };
    let mut key = String::new();
    for field in fields {
        match map.get(field.as_str()) {
            None | Some(Value::Null) => return Err(format!("key field `{field}` is missing")),
            Some(v) => {
                let exact = record
                    .exact
                    .as_deref()
                    .zip(text_of(v))
                    .filter(|(e, t)| e.is_number_at(&[Segment::Field(field.clone())], t));
                match exact {
                    Some((_, digits)) => key.push_str(&String::from_utf8_lossy(digits)),
                    None => key.push_str(&serde_json::to_string(v).map_err(|e| e.to_string())?),
                }
                key.push('\0');
            }
        }
    }
    Ok(key)
}

pub fn group_of(key: &str) -> u32 {
    key_group(stable_hash(key.as_bytes()), DEFAULT_MAX_PARALLELISM)
}

/// Values by key, each remembered with its key group.
#[derive(Debug)]
pub struct KeyedState<V> {
    entries: HashMap<String, (u32, V)>,
}

impl<V> Default for KeyedState<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V: Serialize + DeserializeOwned + Default> KeyedState<V> {
    pub fn get_mut_or_default(&mut self, key: &str) -> &mut V {
        if !self.entries.contains_key(key) {
            self.entries
                .insert(key.to_string(), (group_of(key), V::default()));
        }
        &mut self.entries.get_mut(key).expect("inserted above").1
    }

    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.entries.retain(|_, (_, v)| keep(v));
        // A map mostly emptied (by expiry) gives its memory back.
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            self.entries.shrink_to_fit();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn snapshot(&self) -> GroupedState {
        let mut out = GroupedState::new();
        for (key, (group, value)) in &self.entries {
            let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
            out.entry(*group).or_default().push((key.clone(), value));
        }
        out
    }

    /// Adds the entries of `state` (restored snapshots may come in several parts).
    pub fn restore(&mut self, state: GroupedState) -> Result<(), String> {
        for (group, entries) in state {
            for (key, value) in entries {
                let value = serde_json::from_value(value)
                    .map_err(|e| format!("state of key {key:?} in group {group}: {e}"))?;
                self.entries.insert(key, (group, value));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_restores_into_another_instance() {
        let mut a = KeyedState::<Vec<i64>>::default();
        a.get_mut_or_default("k1").push(3);
        a.get_mut_or_default("k2").push(9);
        a.get_mut_or_default("k1").push(4);
        let snap = a.snapshot();
        let mut b = KeyedState::<Vec<i64>>::default();
        b.restore(snap).expect("restores");
        assert_eq!(b.get("k1"), Some(&vec![3, 4]));
        assert_eq!(b.get("k2"), Some(&vec![9]));
    }

    fn record(json: &[u8]) -> Record {
        let (value, exact) = crate::record::json::decode(json).expect("decodes");
        let mut r = Record::new(
            value,
            crate::record::Origin {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
        );
        r.exact = exact;
        r
    }

    #[test]
    fn keys_name_missing_fields() {
        let r = record(br#"{"a": 1}"#);
        assert_eq!(key_of(&r, &["a".into()]).as_deref(), Ok("1\0"));
        let err = key_of(&r, &["b".into()]).unwrap_err();
        assert!(err.contains("`b`"), "{err}");
    }

    #[test]
    fn ids_beyond_i64_are_keys_of_their_own_and_not_their_strings() {
        let key = |json: &[u8]| key_of(&record(json), &["id".into()]).expect("key");
        let a = key(br#"{"id": 18446744073709551614}"#);
        let b = key(br#"{"id": 18446744073709551615}"#);
        let s = key(br#"{"id": "18446744073709551615"}"#);
        assert_eq!(b, "18446744073709551615\0");
        assert_ne!(a, b);
        assert_ne!(b, s, "a number and a string of the same digits differ");
    }
}
