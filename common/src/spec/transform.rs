use super::reader::{self, Obj, Problems};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformSpec {
    /// A VRL program that rewrites each record.
    Remap(String),
    /// A VRL program whose boolean result keeps (`true`) or drops the record.
    Filter(String),
    /// Routes records with equal values of these fields to the same subtask of the next stage.
    KeyBy(Vec<String>),
}

const KINDS: &[&str] = &["remap", "filter", "key_by"];

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
    for (i, item) in items.iter().enumerate() {
        match TransformSpec::read(&format!("{path}[{i}]"), item, p) {
            Some(t) => out.push(t),
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
                check_vrl(&path, program, p)?;
                Some(if kind == "remap" {
                    Self::Remap(program.clone())
                } else {
                    Self::Filter(program.clone())
                })
            }
            _ => reader::string_list(&path, body, p).map(Self::KeyBy),
        }
    }
}

#[cfg(feature = "vrl")]
fn check_vrl(path: &str, program: &str, p: &mut Problems) -> Option<()> {
    match crate::vrl_program::VrlProgram::compile(program) {
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
fn check_vrl(_path: &str, _program: &str, _p: &mut Problems) -> Option<()> {
    Some(())
}
