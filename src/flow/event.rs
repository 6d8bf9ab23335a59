//! The timeline of a connection: what happened on the wire, when, sent by whom.

use serde::Serialize;

use super::reassembly::GapCause;

/// Which side of the connection sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Syn {
        retransmission: bool,
    },
    SynAck {
        retransmission: bool,
    },
    /// The client's ACK of the SYN-ACK.
    HandshakeComplete,
    /// The first payload byte of this side.
    FirstData,
    Fin,
    Rst {
        /// Whether the RST's sequence number fell where the receiver would accept it
        /// (RFC 5961 §3); unknown when this side's stream position is unknown.
        in_window: Option<bool>,
        ttl: u8,
        /// The TTL (hop limit) of this side's other segments: a different value means the RST
        /// probably came from a middlebox, not from the endpoint.
        usual_ttl: Option<u8>,
    },
    /// Missing bytes of this side's stream.
    Gap {
        offset: u64,
        len: u64,
        cause: GapCause,
    },
    /// A retransmission whose bytes differ from the first copy.
    DifferingRetransmission {
        offset: i64,
        len: u32,
    },
    /// No packet either way for this long before this event's time.
    Idle {
        duration_ns: i64,
    },
    /// The capture ended with the connection still open.
    CaptureEnd,
    /// No packet for longer than the idle timeout: the record was closed.
    IdleTimeout,
    /// Closed early because the live-connection cap was reached.
    Evicted,
}

/// An event at a capture time, from a side (None for events of the connection as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Event {
    pub ts_ns: i64,
    pub from: Option<Side>,
    #[serde(flatten)]
    pub kind: EventKind,
}
