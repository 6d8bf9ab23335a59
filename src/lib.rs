//! rstscope reads packet captures and tells, for every TCP connection, why it failed before
//! or while the HTTP response arrived.
//!
//! The pipeline, one module per stage, data flowing downstream only:
//! [`capture`] (bytes -> timestamped frames) -> [`decode`] (frames -> IP/TCP views) ->
//! [`stats`] (per-input counts).
#![forbid(unsafe_code)]

pub mod capture;
pub mod decode;
pub mod error;
pub mod flow;
pub mod pipeline;
pub mod report;
pub mod stats;
pub mod timefmt;
