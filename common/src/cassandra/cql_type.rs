//! CQL types as `system_schema` spells them (`frozen<map<text, list<int>>>`,
//! `tuple<int, text>`, `vector<float, 3>`, a user-defined type's name),
//! parsed into the types Sluice writes. `counter` and custom types (quoted
//! Java class names) are not among them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A column type Sluice can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CqlType {
    Ascii,
    /// `text` and its alias `varchar`.
    Text,
    Int,
    BigInt,
    SmallInt,
    TinyInt,
    Varint,
    Decimal,
    Float,
    Double,
    Boolean,
    Uuid,
    Timeuuid,
    Timestamp,
    Date,
    Time,
    Duration,
    Inet,
    Blob,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
    Tuple(Vec<CqlType>),
    Udt(Arc<UserType>),
    /// Cassandra 5's fixed-length vector: element type and dimension.
    Vector(Box<CqlType>, u16),
    /// Written whole; the value is that of the inner type.
    Frozen(Box<CqlType>),
}

/// A user-defined type of a keyspace: its fields in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserType {
    pub keyspace: String,
    pub name: String,
    pub fields: Vec<(String, CqlType)>,
}

/// Why a type cannot be written, for the message that refuses the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl CqlType {
    /// The type without `frozen<...>` around it.
    pub fn unfrozen(&self) -> &CqlType {
        match self {
            Self::Frozen(inner) => inner.unfrozen(),
            other => other,
        }
    }

    /// Parses a type as `system_schema.columns.type` writes it; `types` are
    /// the user-defined types of the table's keyspace.
    pub fn parse(text: &str, types: &UserTypes) -> Result<Self, Unsupported> {
        let mut p = Parser {
            s: text,
            pos: 0,
            types,
            depth: 0,
        };
        let ty = p.ty()?;
        p.skip_space();
        if p.pos != text.len() {
            return Err(Unsupported(format!(
                "cannot read type `{text}` past `{}`",
                &text[..p.pos]
            )));
        }
        Ok(ty)
    }
}

impl fmt::Display for CqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, items: &[CqlType]| {
            let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
            f.write_str(&parts.join(", "))
        };
        match self {
            Self::Ascii => f.write_str("ascii"),
            Self::Text => f.write_str("text"),
            Self::Int => f.write_str("int"),
            Self::BigInt => f.write_str("bigint"),
            Self::SmallInt => f.write_str("smallint"),
            Self::TinyInt => f.write_str("tinyint"),
            Self::Varint => f.write_str("varint"),
            Self::Decimal => f.write_str("decimal"),
            Self::Float => f.write_str("float"),
            Self::Double => f.write_str("double"),
            Self::Boolean => f.write_str("boolean"),
            Self::Uuid => f.write_str("uuid"),
            Self::Timeuuid => f.write_str("timeuuid"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Date => f.write_str("date"),
            Self::Time => f.write_str("time"),
            Self::Duration => f.write_str("duration"),
            Self::Inet => f.write_str("inet"),
            Self::Blob => f.write_str("blob"),
            Self::List(t) => write!(f, "list<{t}>"),
            Self::Set(t) => write!(f, "set<{t}>"),
            Self::Map(k, v) => write!(f, "map<{k}, {v}>"),
            Self::Tuple(items) => {
                f.write_str("tuple<")?;
                list(f, items)?;
                f.write_str(">")
            }
            Self::Udt(u) => f.write_str(&u.name),
            Self::Vector(t, n) => write!(f, "vector<{t}, {n}>"),
            Self::Frozen(t) => write!(f, "frozen<{t}>"),
        }
    }
}

/// The user-defined types of one keyspace as `system_schema.types` holds
/// them (field names and type texts), resolved into [`UserType`]s on use.
#[derive(Debug, Clone, Default)]
pub struct UserTypes {
    keyspace: String,
    declared: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl UserTypes {
    /// `declared`: type name -> (field names, field type texts).
    pub fn new(keyspace: &str, declared: HashMap<String, (Vec<String>, Vec<String>)>) -> Self {
        Self {
            keyspace: keyspace.to_string(),
            declared,
        }
    }

    fn resolve(&self, name: &str, depth: usize) -> Result<Arc<UserType>, Unsupported> {
        let Some((names, types)) = self.declared.get(name) else {
            return Err(Unsupported(format!(
                "unknown type `{name}` (not a CQL type, nor a user-defined type of keyspace {})",
                self.keyspace
            )));
        };
        let mut fields = Vec::with_capacity(names.len());
        for (field, text) in names.iter().zip(types) {
            let mut p = Parser {
                s: text,
                pos: 0,
                types: self,
                depth: depth + 1,
            };
            let ty = p
                .ty()
                .map_err(|e| Unsupported(format!("field `{field}` of type `{name}`: {}", e.0)))?;
            fields.push((field.clone(), ty));
        }
        Ok(Arc::new(UserType {
            keyspace: self.keyspace.clone(),
            name: name.to_string(),
            fields,
        }))
    }
}

/// User-defined types nest only so deep in any real schema; deeper means a
/// cycle that Cassandra would not have allowed.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    types: &'a UserTypes,
    depth: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.s[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), Unsupported> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Unsupported(format!(
                "cannot read type `{}`: expected `{c}` at `{}`",
                self.s,
                &self.s[self.pos..]
            )))
        }
    }

    /// A name, or a `"quoted"` one (case-sensitive user-defined types).
    fn name(&mut self) -> String {
        self.skip_space();
        let rest = &self.s[self.pos..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let (name, consumed) = match quoted.find('"') {
                Some(end) => (&quoted[..end], end + 2),
                None => (quoted, rest.len()),
            };
            self.pos += consumed;
            return name.to_string();
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '$'))
            .unwrap_or(rest.len());
        self.pos += len;
        rest[..len].to_string()
    }

    fn ty(&mut self) -> Result<CqlType, Unsupported> {
        if self.depth > MAX_DEPTH {
            return Err(Unsupported(format!("type `{}` nests too deep", self.s)));
        }
        self.skip_space();
        if self.s[self.pos..].starts_with('\'') {
            return Err(Unsupported(format!(
                "`{}` is a custom type, which Sluice cannot write",
                self.s
            )));
        }
        let quoted = self.s[self.pos..].starts_with('"');
        let name = self.name();
        if name.is_empty() {
            return Err(Unsupported(format!(
                "cannot read type `{}` at `{}`",
                self.s,
                &self.s[self.pos..]
            )));
        }
        if quoted {
            return self.user_type(&name);
        }
        let lower = name.to_ascii_lowercase();
        let generic = match lower.as_str() {
            "frozen" | "list" | "set" | "map" | "tuple" | "vector" => {
                self.expect('<')?;
                Some(lower.as_str())
            }
            _ => None,
        };
        let ty = match generic {
            Some("frozen") => CqlType::Frozen(Box::new(self.ty()?)),
            Some("list") => CqlType::List(Box::new(self.ty()?)),
            Some("set") => CqlType::Set(Box::new(self.ty()?)),
            Some("map") => {
                let key = self.ty()?;
                self.expect(',')?;
                CqlType::Map(Box::new(key), Box::new(self.ty()?))
            }
            Some("tuple") => {
                let mut items = vec![self.ty()?];
                while self.eat(',') {
                    items.push(self.ty()?);
                }
                CqlType::Tuple(items)
            }
            Some(_) => {
                let item = self.ty()?;
                self.expect(',')?;
                let n = self.name();
                let dimension = n.parse::<u16>().map_err(|_| {
                    Unsupported(format!("`{}`: `{n}` is not a vector dimension", self.s))
                })?;
                CqlType::Vector(Box::new(item), dimension)
            }
            None => return self.simple(&name, &lower),
        };
        self.expect('>')?;
        Ok(ty)
    }

    fn simple(&mut self, name: &str, lower: &str) -> Result<CqlType, Unsupported> {
        Ok(match lower {
            "ascii" => CqlType::Ascii,
            "text" | "varchar" => CqlType::Text,
            "int" => CqlType::Int,
            "bigint" => CqlType::BigInt,
            "smallint" => CqlType::SmallInt,
            "tinyint" => CqlType::TinyInt,
            "varint" => CqlType::Varint,
            "decimal" => CqlType::Decimal,
            "float" => CqlType::Float,
            "double" => CqlType::Double,
            "boolean" => CqlType::Boolean,
            "uuid" => CqlType::Uuid,
            "timeuuid" => CqlType::Timeuuid,
            "timestamp" => CqlType::Timestamp,
            "date" => CqlType::Date,
            "time" => CqlType::Time,
            "duration" => CqlType::Duration,
            "inet" => CqlType::Inet,
            "blob" => CqlType::Blob,
            "counter" => {
                return Err(Unsupported(
                    "`counter` changes only through `UPDATE ... SET c = c + n`, which a sink \
                     of upserts cannot do"
                        .into(),
                ));
            }
            _ => return self.user_type(name),
        })
    }

    fn user_type(&mut self, name: &str) -> Result<CqlType, Unsupported> {
        // Written with its keyspace at times: the type is always the table's keyspace's.
        let name = name.rsplit('.').next().unwrap_or(name);
        Ok(CqlType::Udt(self.types.resolve(name, self.depth)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> UserTypes {
        let mut declared = HashMap::new();
        declared.insert(
            "address".to_string(),
            (
                vec!["street".into(), "zip".into(), "tags".into()],
                vec!["text".into(), "int".into(), "frozen<set<text>>".into()],
            ),
        );
        declared.insert(
            "person".to_string(),
            (
                vec!["name".into(), "home".into()],
                vec!["text".into(), "frozen<address>".into()],
            ),
        );
        declared.insert(
            "Mixed".to_string(),
            (vec!["x".into()], vec!["counter".into()]),
        );
        declared.insert(
            "loop".to_string(),
            (vec!["me".into()], vec!["frozen<loop>".into()]),
        );
        UserTypes::new("ks", declared)
    }

    fn parse(text: &str) -> Result<CqlType, Unsupported> {
        CqlType::parse(text, &types())
    }

    #[test]
    fn parses_every_writable_type_and_prints_it_back() {
        for text in [
            "ascii",
            "text",
            "int",
            "bigint",
            "smallint",
            "tinyint",
            "varint",
            "decimal",
            "float",
            "double",
            "boolean",
            "uuid",
            "timeuuid",
            "timestamp",
            "date",
            "time",
            "duration",
            "inet",
            "blob",
            "list<int>",
            "set<text>",
            "map<text, frozen<list<int>>>",
            "frozen<tuple<int, text, frozen<map<uuid, double>>>>",
            "vector<float, 3>",
            "frozen<list<frozen<address>>>",
        ] {
            let ty = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ty.to_string(), text);
        }
        assert_eq!(parse("varchar"), Ok(CqlType::Text));
        assert_eq!(
            parse("map<text,int>"),
            Ok(CqlType::Map(
                Box::new(CqlType::Text),
                Box::new(CqlType::Int)
            ))
        );
        assert_eq!(
            parse("vector<float,3>"),
            Ok(CqlType::Vector(Box::new(CqlType::Float), 3))
        );
    }

    #[test]
    fn resolves_user_defined_types_with_their_fields_nested() {
        let Ok(CqlType::Frozen(inner)) = parse("frozen<person>") else {
            panic!("frozen udt");
        };
        let CqlType::Udt(person) = *inner else {
            panic!("udt");
        };
        assert_eq!(person.keyspace, "ks");
        assert_eq!(person.name, "person");
        assert_eq!(person.fields[0], ("name".into(), CqlType::Text));
        let CqlType::Frozen(home) = &person.fields[1].1 else {
            panic!("frozen address");
        };
        let CqlType::Udt(address) = home.as_ref() else {
            panic!("address");
        };
        assert_eq!(
            address.fields[2].1,
            CqlType::Frozen(Box::new(CqlType::Set(Box::new(CqlType::Text))))
        );
        assert!(parse("ks.address").is_ok(), "keyspace-qualified name");
    }

    #[test]
    fn counter_custom_and_unknown_types_are_unsupported_with_the_reason() {
        let e = parse("counter").expect_err("counter");
        assert!(e.0.contains("UPDATE"), "{e}");
        let e = parse("'org.apache.cassandra.db.marshal.DynamicCompositeType(s=>UTF8Type)'")
            .expect_err("custom");
        assert!(e.0.contains("custom type"), "{e}");
        let e = parse("list<geometry>").expect_err("unknown");
        assert!(e.0.contains("unknown type `geometry`"), "{e}");
        let e = parse("frozen<\"Mixed\">").expect_err("udt with a counter field");
        assert!(e.0.contains("field `x` of type `Mixed`"), "{e}");
        let e = parse("frozen<loop>").expect_err("a cycle");
        assert!(e.0.contains("too deep"), "{e}");
        let e = parse("map<text>").expect_err("one type argument");
        assert!(e.0.contains("expected `,`"), "{e}");
        let e = parse("vector<float, many>").expect_err("dimension");
        assert!(e.0.contains("not a vector dimension"), "{e}");
        assert!(parse("list<int> junk").is_err());
    }
}
