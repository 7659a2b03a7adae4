//! A record as a row of the sink's INSERT: each column's value converted and
//! encoded for its bound marker, with what Cassandra would refuse of a
//! primary key found before anything is sent.

use super::batches::Row;
use super::convert::to_cql;
use crate::record::Record;
use crate::record::exact::Segment;
use chrono_tz::Tz;
use scylla::frame::response::result::ColumnSpec;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::CellWriter;
use scylla::value::MaybeUnset;
use sluice_common::cassandra::{ColumnKind, CqlType};
use vrl::value::Value;

/// Cassandra's limit on each primary key column's value.
const MAX_KEY_BYTES: usize = 65_535;
/// A row this large cannot be sent: Cassandra refuses requests over
/// `native_transport_max_frame_size` and mutations over half its commit log
/// segment, both 16 MiB by default.
const MAX_ROW_BYTES: usize = 15 << 20;

/// A column of the INSERT, in the order of its bound markers.
pub struct Column {
    pub name: String,
    /// As `system_schema` writes it, for errors.
    pub type_text: String,
    pub ty: CqlType,
    pub kind: ColumnKind,
    /// Dotted path of the record field this column takes its value from.
    pub field: Vec<String>,
}

impl Column {
    fn is_primary_key(&self) -> bool {
        matches!(self.kind, ColumnKind::PartitionKey | ColumnKind::Clustering)
    }

    /// The path of the column's field, as exact numbers name their places.
    fn segments(&self) -> Vec<Segment> {
        self.field.iter().cloned().map(Segment::Field).collect()
    }
}

/// Turns records into rows of the table's INSERT.
pub struct RowBuilder {
    pub columns: Vec<Column>,
    /// The partition key is one column, which then may not be empty.
    pub single_partition_key: bool,
    /// The job's zone, for zone-less times.
    pub timezone: Tz,
}

impl RowBuilder {
    /// Record number `index` of a flush as a row, with `specs` the INSERT's
    /// bound markers (one per column); or why it cannot be one, naming the
    /// column: a value that does not convert, a key Cassandra refuses, a row
    /// too large to send.
    pub fn row(
        &self,
        index: usize,
        record: &Record,
        specs: &[ColumnSpec<'_>],
    ) -> Result<Row, String> {
        let mut values = Vec::with_capacity(self.columns.len());
        let mut partition = Vec::new();
        let mut size = 0;
        for (c, spec) in self.columns.iter().zip(specs) {
            let value = match lookup(&record.value, &c.field) {
                None | Some(Value::Null) if c.is_primary_key() => {
                    return Err(format!(
                        "primary key column `{}` has no value (field `{}`)",
                        c.name,
                        c.field.join(".")
                    ));
                }
                None | Some(Value::Null) => {
                    values.push(MaybeUnset::Unset);
                    continue;
                }
                Some(v) => {
                    let exact = record.exact.as_deref().and_then(|e| e.under(&c.segments()));
                    to_cql(&c.ty, v, self.timezone, exact.as_ref())
                        .map_err(|e| format!("column `{}` ({}): {e}", c.name, c.type_text))?
                }
            };
            let mut encoded = Vec::new();
            value
                .serialize(spec.typ(), CellWriter::new_without_size(&mut encoded))
                .map_err(|e| format!("column `{}` ({}): {e}", c.name, c.type_text))?;
            size += encoded.len() + 4;
            if c.is_primary_key() {
                self.check_key(c, &encoded)?;
            }
            if c.kind == ColumnKind::PartitionKey {
                partition.extend((encoded.len() as u32).to_be_bytes());
                partition.extend(&encoded);
            }
            values.push(MaybeUnset::Set(value));
        }
        if size > MAX_ROW_BYTES {
            return Err(format!(
                "the row is {size} bytes; Cassandra takes no request or mutation over 16 MiB by default"
            ));
        }
        Ok(Row {
            record: index,
            values,
            partition,
            size,
        })
    }

    /// What Cassandra refuses of a primary key column: over 65,535 bytes,
    /// or empty as the table's only partition key column (an empty string is
    /// fine in a composite partition key and in a clustering column).
    fn check_key(&self, c: &Column, encoded: &[u8]) -> Result<(), String> {
        if encoded.len() > MAX_KEY_BYTES {
            return Err(format!(
                "primary key column `{}` is {} bytes; Cassandra keys hold at most 65,535 bytes per column",
                c.name,
                encoded.len()
            ));
        }
        if encoded.is_empty() && c.kind == ColumnKind::PartitionKey && self.single_partition_key {
            return Err(format!(
                "partition key column `{}` is empty; Cassandra refuses an empty partition key \
                 when it is the table's only partition key column",
                c.name
            ));
        }
        Ok(())
    }
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for part in path {
        match v {
            Value::Object(map) => v = map.get(part.as_str())?,
            _ => return None,
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use scylla::frame::response::result::{ColumnType, NativeType, TableSpec};

    fn column(name: &str, kind: ColumnKind, ty: CqlType) -> Column {
        Column {
            name: name.into(),
            type_text: ty.to_string(),
            ty,
            kind,
            field: vec![name.into()],
        }
    }

    fn spec(name: &str, native: NativeType) -> ColumnSpec<'static> {
        ColumnSpec::owned(
            name.into(),
            ColumnType::Native(native),
            TableSpec::owned("ks".into(), "t".into()),
        )
    }

    fn record(json: serde_json::Value) -> Record {
        Record::new(
            Value::from(json),
            Origin {
                topic: "in".into(),
                partition: 0,
                offset: 0,
            },
        )
    }

    /// Seed 003's `user_data.users`: one text partition key column.
    fn users() -> (RowBuilder, Vec<ColumnSpec<'static>>) {
        let builder = RowBuilder {
            columns: vec![
                column("user_id", ColumnKind::PartitionKey, CqlType::Text),
                column("name", ColumnKind::Regular, CqlType::Text),
            ],
            single_partition_key: true,
            timezone: chrono_tz::UTC,
        };
        (
            builder,
            vec![
                spec("user_id", NativeType::Text),
                spec("name", NativeType::Text),
            ],
        )
    }

    /// Case 005's variant: `PRIMARY KEY ((tenant, user_id), seq)`.
    fn tenants() -> (RowBuilder, Vec<ColumnSpec<'static>>) {
        let builder = RowBuilder {
            columns: vec![
                column("tenant", ColumnKind::PartitionKey, CqlType::Text),
                column("user_id", ColumnKind::PartitionKey, CqlType::Text),
                column("seq", ColumnKind::Clustering, CqlType::Text),
            ],
            single_partition_key: false,
            timezone: chrono_tz::UTC,
        };
        let specs = ["tenant", "user_id", "seq"].map(|n| spec(n, NativeType::Text));
        (builder, specs.to_vec())
    }

    #[test]
    fn an_empty_single_partition_key_is_refused_naming_the_column() {
        let (b, specs) = users();
        let e = b
            .row(
                0,
                &record(serde_json::json!({"user_id": "", "name": "x"})),
                &specs,
            )
            .expect_err("empty key");
        assert!(
            e.starts_with("partition key column `user_id` is empty"),
            "{e}"
        );
    }

    #[test]
    fn empty_parts_of_a_composite_key_and_empty_clustering_values_are_written() {
        let (b, specs) = tenants();
        let row = b
            .row(
                3,
                &record(serde_json::json!({"tenant": "t1", "user_id": "", "seq": ""})),
                &specs,
            )
            .expect("empty parts are fine");
        assert_eq!(row.record, 3);
        assert_eq!(
            row.partition,
            [&[0, 0, 0, 2][..], b"t1", &[0, 0, 0, 0]].concat()
        );
    }

    #[test]
    fn a_key_column_over_65535_bytes_is_refused_naming_the_column() {
        let long = "X".repeat(70_000);
        let (b, specs) = users();
        let e = b
            .row(0, &record(serde_json::json!({"user_id": long})), &specs)
            .expect_err("long key");
        assert!(
            e.starts_with(
                "primary key column `user_id` is 70000 bytes; Cassandra keys hold at most 65,535"
            ),
            "{e}"
        );
        let (b, specs) = tenants();
        for field in ["user_id", "seq"] {
            let mut v = serde_json::json!({"tenant": "t", "user_id": "u", "seq": "s"});
            v[field] = serde_json::Value::from(long.clone());
            let e = b.row(0, &record(v), &specs).expect_err("long component");
            assert!(
                e.starts_with(&format!("primary key column `{field}` is 70000 bytes")),
                "{e}"
            );
        }
        // 65,535 bytes is allowed, and so is a long regular column.
        let (b, specs) = users();
        let most = "X".repeat(65_535);
        assert!(
            b.row(
                0,
                &record(serde_json::json!({"user_id": most, "name": long})),
                &specs
            )
            .is_ok()
        );
    }

    #[test]
    fn missing_keys_and_values_that_do_not_convert_name_their_column() {
        let (b, specs) = users();
        let e = b
            .row(0, &record(serde_json::json!({"name": "x"})), &specs)
            .expect_err("no key");
        assert_eq!(
            e,
            "primary key column `user_id` has no value (field `user_id`)"
        );
        let e = b
            .row(
                0,
                &record(serde_json::json!({"user_id": "u", "name": [1, null]})),
                &specs,
            )
            .map(|r| r.values.len());
        assert_eq!(e, Ok(2), "text takes arrays as JSON");
        let builder = RowBuilder {
            columns: vec![column("id", ColumnKind::PartitionKey, CqlType::Int)],
            single_partition_key: true,
            timezone: chrono_tz::UTC,
        };
        let e = builder
            .row(
                0,
                &record(serde_json::json!({"id": 3_000_000_000u64})),
                &[spec("id", NativeType::Int)],
            )
            .expect_err("beyond int");
        assert_eq!(
            e,
            "column `id` (int): 3000000000 is out of range (-2147483648 to 2147483647)"
        );
    }

    #[test]
    fn absent_regular_columns_are_left_unset_and_sizes_are_counted() {
        let (b, specs) = users();
        let row = b
            .row(0, &record(serde_json::json!({"user_id": "abc"})), &specs)
            .expect("row");
        assert!(matches!(row.values[1], MaybeUnset::Unset));
        assert_eq!(row.size, 3 + 4);
    }

    #[test]
    fn a_text_column_takes_the_exact_numbers_under_its_field() {
        let (value, exact) = crate::record::json::decode(
            br#"{"id":"a","payload":{"doc":{"order_id":18446744073709551616,"n":1}},"order_id":18446744073709551617}"#,
        )
        .expect("json");
        let mut r = record(serde_json::Value::Null);
        r.value = value;
        r.exact = exact;
        let mut doc = column("doc", ColumnKind::Regular, CqlType::Text);
        doc.field = vec!["payload".into(), "doc".into()];
        let builder = RowBuilder {
            columns: vec![
                column("id", ColumnKind::PartitionKey, CqlType::Text),
                doc,
                column("order_id", ColumnKind::Regular, CqlType::Text),
            ],
            single_partition_key: true,
            timezone: chrono_tz::UTC,
        };
        let specs = ["id", "doc", "order_id"].map(|n| spec(n, NativeType::Text));
        let row = builder.row(0, &r, &specs).expect("row");
        let written: Vec<Option<String>> = row
            .values
            .iter()
            .map(|v| match v {
                MaybeUnset::Set(scylla::value::CqlValue::Text(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            written,
            [
                Some("a".to_string()),
                Some(r#"{"n":1,"order_id":18446744073709551616}"#.to_string()),
                Some("18446744073709551617".to_string()),
            ]
        );
    }
}
