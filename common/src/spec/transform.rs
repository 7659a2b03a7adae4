use super::reader::{self, Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformSpec {
    /// A VRL program that rewrites each record.
    Remap(String),
    /// A VRL program whose boolean result keeps (`true`) or drops the record.
    Filter(String),
    /// Routes records with equal values of these fields to the same subtask of the next stage.
    KeyBy(Vec<String>),
    /// Pairs numbers of one key that sum to a total (keyed state).
    PairSum(PairSumSpec),
    /// Passes the first record of each key and drops repeats seen within a TTL (keyed state).
    Dedup(DedupSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairSumSpec {
    /// The field holding the number.
    pub field: String,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DedupSpec {
    /// Fields that make two records the same; empty: the key of the key_by.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// How long a key is remembered after it was last seen.
    #[serde(serialize_with = "super::serialize_duration")]
    pub ttl: Duration,
}

impl TransformSpec {
    /// Keeps state per key, so it runs on the key of the `key_by` before it.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Self::PairSum(_) | Self::Dedup(_))
    }
}

const KINDS: &[&str] = &["remap", "filter", "key_by", "pair_sum", "dedup"];
const DEFAULT_PAIR_TOTAL: u64 = 12;
const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(3600);

pub(crate) fn read_list(path: &str, v: &Value, p: &mut Problems) -> Option<Vec<TransformSpec>> {
    let Value::Array(items) = v else {
        p.push(
            path,
            format!(
                "expected a list of transforms, found {}",
                reader::type_name(v)
            ),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    // Whether records here are still keyed as the last key_by routed them.
    let mut keyed = false;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match TransformSpec::read(&item_path, item, p) {
            Some(t) => {
                if t.is_keyed() && !keyed {
                    p.push(
                        &item_path,
                        "needs a key_by right before it (its state is kept per key of that key_by); \
                         put remap and filter steps before the key_by",
                    );
                    ok = false;
                }
                keyed = matches!(t, TransformSpec::KeyBy(_)) || (keyed && t.is_keyed());
                out.push(t);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl TransformSpec {
    fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (kind, body, path) = Obj::variant(path, v, KINDS, p)?;
        match kind {
            "remap" | "filter" => {
                let Value::String(program) = body else {
                    p.push(
                        &path,
                        format!(
                            "expected a VRL program as a string, found {}",
                            reader::type_name(body)
                        ),
                    );
                    return None;
                };
                check_vrl(&path, program, kind == "filter", p)?;
                Some(if kind == "remap" {
                    Self::Remap(program.clone())
                } else {
                    Self::Filter(program.clone())
                })
            }
            "pair_sum" => {
                let mut obj = Obj::new(&path, body, p)?;
                let field = obj.string("field", p);
                let total = obj
                    .opt_u64("total", 0..=(i64::MAX as u64), p)
                    .unwrap_or(DEFAULT_PAIR_TOTAL);
                obj.finish(p);
                Some(Self::PairSum(PairSumSpec {
                    field: field?,
                    total,
                }))
            }
            "dedup" => {
                let mut obj = Obj::new(&path, body, p)?;
                let fields = match obj.get("fields") {
                    Some(v) => reader::string_list(&obj.path_of("fields"), v, p),
                    None => Some(Vec::new()),
                };
                let ttl = obj.opt_duration("ttl", p).unwrap_or(DEFAULT_DEDUP_TTL);
                obj.finish(p);
                Some(Self::Dedup(DedupSpec {
                    fields: fields?,
                    ttl,
                }))
            }
            _ => reader::string_list(&path, body, p).map(Self::KeyBy),
        }
    }
}

#[cfg(feature = "vrl")]
fn check_vrl(path: &str, program: &str, condition: bool, p: &mut Problems) -> Option<()> {
    let compiled = if condition {
        crate::vrl_program::VrlProgram::compile_condition(program)
    } else {
        crate::vrl_program::VrlProgram::compile(program)
    };
    match compiled {
        Ok(_) => Some(()),
        Err(e) => {
            for message in e.messages {
                p.push(path, message);
            }
            None
        }
    }
}

#[cfg(not(feature = "vrl"))]
fn check_vrl(_path: &str, _program: &str, _condition: bool, _p: &mut Problems) -> Option<()> {
    Some(())
}
