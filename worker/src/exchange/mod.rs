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

/// Encoded record bytes per exchange frame, far below gRPC's message limit.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Batches a receiving subtask queues per sender before that sender waits.
pub const INBOX_CAPACITY: usize = 8;
