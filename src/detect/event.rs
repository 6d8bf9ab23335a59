//! Protocol events: what the detectors found in a connection's byte streams.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use crate::flow::Side;

/// A protocol event at a capture time, from one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtoEvent {
    pub ts_ns: i64,
    pub from: Side,
    #[serde(flatten)]
    pub kind: ProtoKind,
}

/// What was seen. HTTP/2 error codes and TLS alert descriptions are kept as numbers here;
/// reports name them (RFC 9113 §7, RFC 8446 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProtoKind {
    TlsClientHello {
        /// The record's legacy version and the versions offered in supported_versions.
        legacy_version: u16,
        versions: Vec<u16>,
        sni: Option<String>,
        alpn: Vec<String>,
        cipher_suites: u16,
        extensions: u16,
    },
    TlsServerHello {
        /// The negotiated version: from supported_versions when present (TLS 1.3).
        version: u16,
        cipher: u16,
        /// The ALPN protocol chosen, visible only up to TLS 1.2 (encrypted in TLS 1.3).
        alpn: Option<String>,
        hello_retry_request: bool,
    },
    TlsChangeCipherSpec,
    TlsAlert {
        /// Level and description, when the alert was sent in plaintext.
        level: Option<u8>,
        description: Option<u8>,
        /// An alert-typed record after encryption started (or an application-data record
        /// short enough to be one): its content is not readable.
        encrypted: bool,
        record_len: u16,
    },
    /// The first application-data record from this side.
    TlsFirstApplicationData,
    HttpRequest {
        /// Shared with the request's [`super::Exchange`].
        method: Cow<'static, str>,
        target: Arc<str>,
        version: &'static str,
    },
    /// The first byte of a response.
    HttpResponseStart,
    /// The end of a response's header block.
    HttpResponseHead {
        status: u16,
        version: &'static str,
        connection_close: bool,
        /// `Keep-Alive: timeout=N`: the server's idle timeout, in seconds.
        keep_alive_timeout: Option<u32>,
        content_length: Option<u64>,
        chunked: bool,
        upgrade: Option<String>,
    },
    /// A message body (request or response) ended where its framing said it would.
    HttpBodyEnd {
        bytes: u64,
    },
    /// Bytes where an HTTP/1 message head was expected that do not parse as one.
    HttpInvalid {
        first_bytes: String,
    },
    /// The HTTP/2 client connection preface.
    H2Preface,
    H2Settings {
        ack: bool,
    },
    H2Headers {
        stream_id: u32,
        end_stream: bool,
        /// From HPACK, when the header block could be decoded.
        method: Option<String>,
        path: Option<String>,
        authority: Option<String>,
        status: Option<u16>,
        grpc_status: Option<u32>,
        grpc_message: Option<String>,
    },
    /// A DATA frame that ends its stream.
    H2DataEnd {
        stream_id: u32,
    },
    H2RstStream {
        stream_id: u32,
        error_code: u32,
    },
    H2GoAway {
        last_stream_id: u32,
        error_code: u32,
        debug_data: String,
    },
    /// The HTTP/2 frames of this side stopped making sense (a length past the maximum frame
    /// size, a frame type in the wrong place, an HPACK block that does not decode).
    H2ProtocolError {
        detail: String,
    },
    /// The first bytes of a side that fit no protocol we know, escaped for display.
    Unrecognized {
        first_bytes: String,
    },
}

/// Where a parser puts the events it finds, in order, each with its capture time.
pub trait Events {
    fn push(&mut self, event: (i64, ProtoKind));
}

/// Events gathered to be looked at before they join a timeline (and by tests).
impl Events for Vec<(i64, ProtoKind)> {
    fn push(&mut self, event: (i64, ProtoKind)) {
        Vec::push(self, event);
    }
}

/// Up to `max` bytes, printable ASCII kept and everything else escaped (`\r`, `\n`, `\xNN`),
/// so that "the server answered with 'HTTP/1.1 400 Bad Request'" can be shown.
pub fn escape_bytes(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}
