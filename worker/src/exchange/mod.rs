//! Records and barriers between the subtasks of consecutive stages. Inside a
//! worker they go through a bounded channel; across workers through one gRPC
//! stream per (sender, receiver) pair, over one cached channel per peer.

mod inbox;
mod peers;
mod router;
mod server;
mod value_codec;
mod wire;

pub use inbox::{AlignedInput, Event, InboxKey, Inboxes};
pub use peers::Peers;
pub use router::{Route, Router};
pub use server::ExchangeServer;

/// Encoded record bytes per exchange frame: records are batched up to this.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Largest exchange frame a worker takes: one record alone may be as large
/// as the largest Kafka message it was read from, which librdkafka bounds
/// by `receive.message.max.bytes` (100 MB by default).
pub const MAX_RECEIVED_FRAME_BYTES: usize = 256 << 20;

/// Batches a receiving subtask queues per sender before that sender waits.
pub const INBOX_CAPACITY: usize = 8;
