mod column_type;
mod sink;

pub use column_type::ColumnType;
pub use sink::CassandraSink;
