use crate::record::Record;
use crate::record::exact::{Segment, text_of};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_common::keys::{DEFAULT_MAX_PARALLELISM, key_group, stable_hash};
use std::collections::{BTreeMap, HashMap};
use vrl::value::Value;

/// An operator's state as it is snapshotted: per key group, its keys and
/// their values.
pub type GroupedState = BTreeMap<u32, Vec<(String, serde_json::Value)>>;

/// The key of a record under `fields`: the JSON of each field's value, each
/// followed by a NUL; an exact number is its digits, so ids beyond 2^63 are
/// keys of their own. The exchange routes by the same bytes, so a key's group
/// is the one its subtask owns. An error when the record is not an object,
/// or a key field is absent (`is missing`) or null (`is null`).
pub fn key_of(record: &Record, fields: &[String]) -> Result<String, String> {
    let Value::Object(map) = &record.value else {
        return Err("a keyed step needs an object record".into());
    };
    let mut key = String::new();
    for field in fields {
        match map.get(field.as_str()) {
            None => return Err(format!("key field `{field}` is missing")),
            Some(Value::Null) => return Err(format!("key field `{field}` is null")),
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

/// What changed in an operator's keyed state since its previous snapshot:
/// keys set or changed, with their values now, and keys removed, by key group.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDelta {
    pub puts: GroupedState,
    pub deletes: BTreeMap<u32, Vec<String>>,
}

/// An operator's keyed state at a barrier: all of it, or only what changed
/// since its previous snapshot, which is cheaper the less changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateSnapshot {
    Full(GroupedState),
    Delta(StateDelta),
}

#[cfg(test)]
impl StateSnapshot {
    /// The whole state of a full snapshot; `None` for a delta.
    pub fn into_full(self) -> Option<GroupedState> {
        match self {
            Self::Full(all) => Some(all),
            Self::Delta(_) => None,
        }
    }
}

/// Keyed state being put back together from a full snapshot and the deltas
/// after it: per key group, per key, its value.
#[derive(Debug, Default)]
pub struct Restoring {
    groups: BTreeMap<u32, BTreeMap<String, serde_json::Value>>,
}

impl Restoring {
    /// Lays `snapshot` over what is there, keeping only the groups `keep` takes.
    pub fn apply(&mut self, snapshot: StateSnapshot, keep: impl Fn(u32) -> bool) {
        let (puts, deletes) = match snapshot {
            StateSnapshot::Full(all) => (all, BTreeMap::new()),
            StateSnapshot::Delta(delta) => (delta.puts, delta.deletes),
        };
        for (group, keys) in deletes.into_iter().filter(|(g, _)| keep(*g)) {
            if let Some(entries) = self.groups.get_mut(&group) {
                for key in keys {
                    entries.remove(&key);
                }
            }
        }
        for (group, entries) in puts.into_iter().filter(|(g, _)| keep(*g)) {
            self.groups.entry(group).or_default().extend(entries);
        }
    }

    pub fn into_grouped(self) -> GroupedState {
        self.groups
            .into_iter()
            .map(|(g, entries)| (g, entries.into_iter().collect()))
            .collect()
    }
}

/// What [`KeyedState::retain`] does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    Keep,
    /// Kept, and changed by the closure.
    Changed,
    Drop,
}

#[derive(Debug)]
struct Entry<V> {
    group: u32,
    value: V,
    /// Changed since the previous snapshot.
    changed: bool,
}

/// Values by key, each remembered with its key group, and what changed
/// since the previous snapshot so the next one can hold only that.
#[derive(Debug)]
pub struct KeyedState<V> {
    entries: HashMap<String, Entry<V>>,
    /// Removed since the previous snapshot, with their groups.
    removed: Vec<(u32, String)>,
}

impl<V> Default for KeyedState<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            removed: Vec::new(),
        }
    }
}

impl<V: Serialize + DeserializeOwned + Default> KeyedState<V> {
    /// The value of `key` to change, created empty if absent.
    pub fn get_mut_or_default(&mut self, key: &str) -> &mut V {
        if !self.entries.contains_key(key) {
            self.entries.insert(
                key.to_string(),
                Entry {
                    group: group_of(key),
                    value: V::default(),
                    changed: true,
                },
            );
        }
        let entry = self.entries.get_mut(key).expect("inserted above");
        entry.changed = true;
        &mut entry.value
    }

    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|e| &e.value)
    }

    pub fn remove(&mut self, key: &str) {
        if let Some((key, entry)) = self.entries.remove_entry(key) {
            self.removed.push((entry.group, key));
        }
    }

    /// Runs `decide` on every value: it may change it, and says so, or drop it.
    pub fn retain(&mut self, mut decide: impl FnMut(&mut V) -> Retain) {
        let removed = &mut self.removed;
        self.entries
            .retain(|key, entry| match decide(&mut entry.value) {
                Retain::Keep => true,
                Retain::Changed => {
                    entry.changed = true;
                    true
                }
                Retain::Drop => {
                    removed.push((entry.group, key.clone()));
                    false
                }
            });
        // A map mostly emptied (by expiry) gives its memory back.
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            self.entries.shrink_to_fit();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The whole state (`full`), or what changed since the previous snapshot;
    /// either way the next delta starts from now.
    pub fn snapshot(&mut self, full: bool) -> StateSnapshot {
        let value = |v: &V| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
        let removed = std::mem::take(&mut self.removed);
        if full {
            let mut all = GroupedState::new();
            for (key, entry) in &mut self.entries {
                entry.changed = false;
                all.entry(entry.group)
                    .or_default()
                    .push((key.clone(), value(&entry.value)));
            }
            return StateSnapshot::Full(all);
        }
        let mut delta = StateDelta::default();
        for (group, key) in removed {
            delta.deletes.entry(group).or_default().push(key);
        }
        for (key, entry) in self.entries.iter_mut().filter(|(_, e)| e.changed) {
            entry.changed = false;
            delta
                .puts
                .entry(entry.group)
                .or_default()
                .push((key.clone(), value(&entry.value)));
        }
        StateSnapshot::Delta(delta)
    }

    /// Adds the entries of `state` (restored snapshots may come in several parts).
    pub fn restore(&mut self, state: GroupedState) -> Result<(), String> {
        for (group, entries) in state {
            for (key, value) in entries {
                let value = serde_json::from_value(value)
                    .map_err(|e| format!("state of key {key:?} in group {group}: {e}"))?;
                self.entries.insert(
                    key,
                    Entry {
                        group,
                        value,
                        changed: false,
                    },
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored(snapshots: Vec<StateSnapshot>) -> KeyedState<Vec<i64>> {
        let mut r = Restoring::default();
        for s in snapshots {
            r.apply(s, |_| true);
        }
        let mut b = KeyedState::<Vec<i64>>::default();
        b.restore(r.into_grouped()).expect("restores");
        b
    }

    #[test]
    fn snapshot_restores_into_another_instance() {
        let mut a = KeyedState::<Vec<i64>>::default();
        a.get_mut_or_default("k1").push(3);
        a.get_mut_or_default("k2").push(9);
        a.get_mut_or_default("k1").push(4);
        let b = restored(vec![a.snapshot(true)]);
        assert_eq!(b.get("k1"), Some(&vec![3, 4]));
        assert_eq!(b.get("k2"), Some(&vec![9]));
    }

    #[test]
    fn deltas_hold_only_what_changed_and_restore_the_same_state() {
        let mut a = KeyedState::<Vec<i64>>::default();
        for k in 0..100 {
            a.get_mut_or_default(&format!("k{k}")).push(k);
        }
        let full = a.snapshot(true);
        let StateSnapshot::Delta(nothing) = a.snapshot(false) else {
            panic!("a delta")
        };
        assert_eq!(nothing, StateDelta::default(), "nothing changed");
        a.get_mut_or_default("k1").push(-1);
        a.remove("k2");
        a.retain(|v| {
            if v[0] == 3 {
                Retain::Drop
            } else {
                Retain::Keep
            }
        });
        a.get_mut_or_default("k3").push(33);
        let first = a.snapshot(false);
        let StateSnapshot::Delta(d) = &first else {
            panic!("a delta")
        };
        let puts: usize = d.puts.values().map(Vec::len).sum();
        let deletes: usize = d.deletes.values().map(Vec::len).sum();
        assert_eq!((puts, deletes), (2, 2), "k1 and k3 set, k2 and k3 removed");
        a.retain(|v| {
            if v[0] == 5 {
                v.push(55);
                Retain::Changed
            } else {
                Retain::Keep
            }
        });
        let second = a.snapshot(false);
        let b = restored(vec![full, first, second]);
        assert_eq!(b.len(), 99);
        assert_eq!(b.get("k1"), Some(&vec![1, -1]));
        assert_eq!(b.get("k2"), None);
        assert_eq!(b.get("k3"), Some(&vec![33]));
        assert_eq!(b.get("k5"), Some(&vec![5, 55]));
        assert_eq!(b.get("k7"), Some(&vec![7]));
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
        assert_eq!(err, "key field `b` is missing");
    }

    #[test]
    fn a_null_key_field_is_called_null_not_missing() {
        let r = record(br#"{"a": 1, "b": null}"#);
        let err = key_of(&r, &["a".into(), "b".into()]).unwrap_err();
        assert_eq!(err, "key field `b` is null");
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
