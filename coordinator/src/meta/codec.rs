//! How the parts of the coordinator's state that are not plain data are
//! written into the Raft log and its snapshots.

/// A job spec as its JSON, parsed back through the spec reader.
pub mod spec {
    use serde::{Deserialize, Deserializer, Serializer};
    use sluice_common::JobSpec;

    pub fn serialize<S: Serializer>(spec: &JobSpec, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&spec.to_json())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobSpec, D::Error> {
        let text = String::deserialize(d)?;
        JobSpec::parse_resolved(&text).map_err(serde::de::Error::custom)
    }
}

/// [`spec`] for a boxed spec.
pub mod boxed_spec {
    use serde::{Deserializer, Serializer};
    use sluice_common::JobSpec;

    pub fn serialize<S: Serializer>(spec: &JobSpec, s: S) -> Result<S::Ok, S::Error> {
        super::spec::serialize(spec, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<JobSpec>, D::Error> {
        super::spec::deserialize(d).map(Box::new)
    }
}

/// Protobuf enums by their wire number.
macro_rules! proto_enum {
    ($module:ident, $ty:ty) => {
        pub mod $module {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i32(*v as i32)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let n = i32::deserialize(d)?;
                <$ty>::try_from(n)
                    .map_err(|_| serde::de::Error::custom(format!("unknown state {n}")))
            }
        }
    };
}

proto_enum!(job_state, sluice_proto::JobState);
proto_enum!(task_state, sluice_proto::TaskState);
