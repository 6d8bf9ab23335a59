//! rstscope reads packet captures and tells, for every TCP connection, why it failed before
//! or while the HTTP response arrived.
//!
//! The pipeline, one module per stage, data flowing downstream only:
//! [`capture`] (bytes -> timestamped frames) -> [`decode`] (frames -> IP/TCP views) ->
//! [`flow`] (segments -> connections with in-order streams and timelines) -> [`detect`]
//! (streams -> TLS, HTTP/1 and HTTP/2 events) -> [`report`] (what people and machines read).
//! [`pipeline`] runs the stages over an input, on one thread or sharded; [`stats`] counts
//! what an input holds from the first two stages alone.
#![forbid(unsafe_code)]

pub mod capture;
pub mod classify;
pub mod decode;
pub mod detect;
pub mod error;
pub mod flow;
pub mod pipeline;
pub mod report;
pub mod stats;
pub mod timefmt;
