//! Stage 3: TCP segments -> connections with in-order byte streams and timelines.
//!
//! Input: decoded [`crate::decode::TcpPacket`]s in capture order. Output: one
//! [`ConnectionRecord`] per connection instance, with its roles, handshake, both streams'
//! counters, close, and a timeline of [`Event`]s; the in-order bytes of both streams go to a
//! [`StreamHandler`] as they become contiguous.
//!
//! Invariants: a connection's packets are handled in capture order on one thread (the
//! [`key::FlowKey`] decides its shard); nothing reads the clock, only capture timestamps;
//! memory is bounded by the live connections, each holding at most
//! [`FlowConfig::max_buffered_per_direction`] out-of-order bytes per direction.

pub mod connection;
pub mod event;
pub mod key;
pub mod reassembly;
pub mod seq;
pub mod table;

pub use connection::{
    ConnectionRecord, EndReason, FlowConfig, HalfRecord, Handshake, RoleBasis, StreamHandler,
};
pub use event::{Event, EventKind, Side};
pub use key::{Endpoint, FlowKey};
pub use reassembly::{Chunk, GapCause, Reassembler, StreamCounters};
pub use table::{FlowTable, TableCounters};
