//! Record-at-a-time operators chained inside one subtask.

mod vrl_op;

pub use vrl_op::VrlOperator;

use crate::record::{Failure, Record};
use sluice_common::spec::TransformSpec;
use sluice_common::vrl_program::VrlProgram;

/// The operators of one stage, applied in order.
pub struct Chain {
    ops: Vec<VrlOperator>,
}

impl Chain {
    /// Compiles each VRL program once for this task.
    pub fn build(transforms: &[&TransformSpec]) -> Result<Self, String> {
        let mut ops = Vec::new();
        for t in transforms {
            match t {
                TransformSpec::Remap(src) => ops.push(VrlOperator::remap(
                    VrlProgram::compile(src).map_err(|e| e.to_string())?,
                )),
                TransformSpec::Filter(src) => ops.push(VrlOperator::filter(
                    VrlProgram::compile(src).map_err(|e| e.to_string())?,
                )),
                TransformSpec::KeyBy(_) => {}
            }
        }
        Ok(Self { ops })
    }

    pub fn process(
        &mut self,
        mut records: Vec<Record>,
        failures: &mut Vec<Failure>,
    ) -> Vec<Record> {
        for op in &mut self.ops {
            records = op.process(records, failures);
        }
        records
    }
}
