//! Stage 4: in-order byte streams -> protocol events.
//!
//! Input: the chunks (data and gaps) of a connection's two streams, from the connection
//! engine, each with its capture time. Output: [`ProtoEvent`]s on the connection's timeline,
//! the HTTP/1 exchanges, TLS and HTTP/2 counters, and the first bytes of each side.
//!
//! Protocols are recognised by content, never by port: a client that starts with the HTTP/2
//! preface speaks h2, with a TLS handshake record TLS, with a request line HTTP/1; a server
//! that starts with a TLS record, a status line or a SETTINGS frame likewise. Each side is
//! followed by its own parser, so "TLS ClientHello answered by `HTTP/1.1 400`" is two
//! recognised sides, not an error.
//!
//! Invariants: detectors keep only what they still need (a message head, a frame header, a
//! handshake message, each capped); payload is counted, never copied; after a gap a parser
//! that lost its framing stops rather than guess.

// Input bytes never panic this stage: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod event;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod tls;

use serde::Serialize;

pub use event::{Events, ProtoEvent, ProtoKind, escape_bytes};
pub use http1::{Exchange, Framing};
pub use http2::H2Counters;
pub use tls::TlsCounters;

use crate::flow::connection::HTTP_METHODS;
use crate::flow::{Chunk, Side, StreamHandler};
use http1::{Http1, Switch};
use http2::{DEFAULT_MAX_FRAME_SIZE, H2Direction, PREFACE};
use tls::TlsDirection;

/// Protocol events kept per connection; later ones are counted only.
const MAX_EVENTS: usize = 256;
/// Bytes of each side kept as they came, for display.
const FIRST_BYTES: usize = 64;
/// Server bytes searched for the text of a TLS port's 400 to plain HTTP.
const MARKER_SCAN: usize = 2048;

/// What a side turned out to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// No bytes from this side.
    #[default]
    None,
    Tls,
    Http1,
    H2,
    /// Bytes that fit no protocol we know.
    Unknown,
}

enum Parser {
    /// Not enough bytes yet to tell: the first ones, with the time they came.
    Undecided(Vec<u8>, i64),
    Tls(Box<TlsDirection>),
    Http1,
    H2(Box<H2Direction>),
    Opaque,
}

/// The detectors of one connection: a [`StreamHandler`] for the connection engine.
pub struct Detector {
    parsers: [Parser; 2],
    http1: Option<Box<Http1>>,
    pub events: Vec<ProtoEvent>,
    pub events_dropped: u32,
    first_bytes: [FirstBytes; 2],
    protocol: [Protocol; 2],
    /// The server's first bytes hold the text TLS servers put in their 400 to a plain HTTP
    /// request (nginx: "The plain HTTP request was sent to HTTPS port", Go: "Client sent an
    /// HTTP request to an HTTPS server").
    plain_to_https_marker: bool,
    /// Server bytes scanned for that text so far.
    server_scanned: usize,
    /// The server chose TLS 1.3: its records after the ServerHello, and the client's after its
    /// next flight, are encrypted.
    tls13: bool,
    /// Where the TLS and HTTP/2 parsers put their events before they join `events` (after a
    /// look for the ServerHello): kept empty between chunks, and reused so that each chunk
    /// does not allocate its own.
    scratch: Vec<(i64, ProtoKind)>,
    /// An HTTP/1 parser kept from an earlier connection (see [`StreamHandler::reuse`]), for
    /// when this one turns out to speak HTTP/1.
    spare_http1: Option<Box<Http1>>,
}

/// Protocol events a reused [`Detector`] keeps room for: what an HTTP/1 exchange or a TLS
/// handshake makes. A longer list is freed rather than kept.
const REUSED_EVENTS: usize = 8;

impl Default for Detector {
    fn default() -> Self {
        Detector {
            parsers: [
                Parser::Undecided(Vec::new(), 0),
                Parser::Undecided(Vec::new(), 0),
            ],
            http1: None,
            events: Vec::new(),
            events_dropped: 0,
            first_bytes: [FirstBytes::default(); 2],
            protocol: [Protocol::None; 2],
            plain_to_https_marker: false,
            server_scanned: 0,
            tls13: false,
            scratch: Vec::new(),
            spare_http1: None,
        }
    }
}

/// The first [`FIRST_BYTES`] bytes a side sent, kept inline: every connection has them, and
/// a heap buffer each would cost two allocations per connection.
#[derive(Clone, Copy)]
struct FirstBytes {
    bytes: [u8; FIRST_BYTES],
    len: usize,
}

impl Default for FirstBytes {
    fn default() -> Self {
        FirstBytes {
            bytes: [0; FIRST_BYTES],
            len: 0,
        }
    }
}

impl FirstBytes {
    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn extend(&mut self, more: &[u8]) {
        let n = (FIRST_BYTES - self.len).min(more.len());
        if let (Some(to), Some(from)) = (self.bytes.get_mut(self.len..self.len + n), more.get(..n))
        {
            to.copy_from_slice(from);
            self.len += n;
        }
    }
}

/// A side's protocol events, as a parser's [`Events`]: at most [`MAX_EVENTS`] kept per
/// connection, later ones only counted.
struct Timeline<'a> {
    events: &'a mut Vec<ProtoEvent>,
    dropped: &'a mut u32,
    from: Side,
}

impl Events for Timeline<'_> {
    fn push(&mut self, (ts_ns, kind): (i64, ProtoKind)) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(ProtoEvent {
                ts_ns,
                from: self.from,
                kind,
            });
        } else {
            *self.dropped += 1;
        }
    }
}

/// A side's entry of a `[client, server]` pair (matched, not indexed: no bounds to check).
fn of<T>(pair: &[T; 2], side: Side) -> &T {
    let [client, server] = pair;
    match side {
        Side::Client => client,
        Side::Server => server,
    }
}

/// [`of`], mutably.
fn of_mut<T>(pair: &mut [T; 2], side: Side) -> &mut T {
    let [client, server] = pair;
    match side {
        Side::Client => client,
        Side::Server => server,
    }
}

/// What the first bytes of a side say it speaks; None while more bytes could change that.
fn recognise(side: Side, b: &[u8], peer: Protocol) -> Option<Protocol> {
    const METHODS: [&[u8]; 9] = HTTP_METHODS;
    let prefix_of = |full: &[u8]| b.len() < full.len() && full.starts_with(b);
    match side {
        Side::Client => {
            if b.starts_with(PREFACE) {
                Some(Protocol::H2)
            } else if prefix_of(PREFACE)
                || METHODS.iter().any(|m| prefix_of(m))
                || (b.len() < 3 && b.first() == Some(&0x16))
            {
                None
            } else if matches!(b, [0x16, 3, _, ..]) {
                Some(Protocol::Tls)
            } else if METHODS.iter().any(|m| b.starts_with(m)) {
                Some(Protocol::Http1)
            } else {
                Some(Protocol::Unknown)
            }
        }
        Side::Server => {
            if b.starts_with(b"HTTP/") {
                Some(Protocol::Http1)
            } else if prefix_of(b"HTTP/")
                || (b.len() < 3 && matches!(b.first(), Some(0x15 | 0x16)))
                || (b.len() < 9 && (peer == Protocol::H2 || b.first() == Some(&0)))
            {
                None
            } else if matches!(b, [0x15 | 0x16, 3, _, ..]) {
                Some(Protocol::Tls)
            } else if peer == Protocol::H2 || matches!(b, [_, _, _, 4, _, 0, 0, 0, 0, ..]) {
                // After a client preface, or starting with a SETTINGS frame (type 4 after the
                // 3-byte length, then flags) on stream 0.
                Some(Protocol::H2)
            } else {
                Some(Protocol::Unknown)
            }
        }
    }
}

impl Detector {
    fn push(&mut self, ts_ns: i64, from: Side, kind: ProtoKind) {
        self.timeline(from).push((ts_ns, kind));
    }

    /// The events of `from`, where a parser can put them directly.
    fn timeline(&mut self, from: Side) -> Timeline<'_> {
        Timeline {
            events: &mut self.events,
            dropped: &mut self.events_dropped,
            from,
        }
    }

    /// What each side speaks: [client, server].
    pub fn protocols(&self) -> [Protocol; 2] {
        self.protocol
    }

    /// The first bytes of a side, escaped for display.
    pub fn first_bytes(&self, side: Side) -> String {
        escape_bytes(of(&self.first_bytes, side).as_slice(), FIRST_BYTES)
    }

    /// The HTTP/1 exchanges, in order.
    pub fn exchanges(&self) -> &[Exchange] {
        self.http1.as_ref().map_or(&[], |h| h.exchanges.as_slice())
    }

    pub fn tls_counters(&self, side: Side) -> Option<TlsCounters> {
        match of(&self.parsers, side) {
            Parser::Tls(t) => Some(t.counters),
            _ => None,
        }
    }

    pub fn h2_counters(&self, side: Side) -> Option<H2Counters> {
        match of(&self.parsers, side) {
            Parser::H2(h) => Some(h.counters()),
            _ => None,
        }
    }

    /// The server closed its side: a response body delimited by the close ends here.
    pub fn server_closed(&mut self, ts_ns: i64) {
        if let Some(h) = self.http1.as_mut() {
            let mut timeline = Timeline {
                events: &mut self.events,
                dropped: &mut self.events_dropped,
                from: Side::Server,
            };
            h.server_closed(ts_ns, &mut timeline);
        }
    }

    /// Whether the server answered with a TLS port's 400 to plain HTTP.
    pub fn plain_http_to_https_port(&self) -> bool {
        self.plain_to_https_marker
    }

    fn data(&mut self, from: Side, ts_ns: i64, bytes: &[u8]) {
        if from == Side::Server && self.server_scanned < MARKER_SCAN && !self.plain_to_https_marker
        {
            let (window, _) = bytes.split_at(bytes.len().min(MARKER_SCAN - self.server_scanned));
            self.server_scanned += window.len();
            // Every plaintext response passes here: one SIMD search (built once) for the word
            // both texts share, and a look around each hit.
            static HTTPS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"HTTPS"));
            // Each text, and where in it that word starts.
            const MARKERS: [(&[u8], usize); 2] = [
                (b"sent to HTTPS port", 8),
                (b"HTTP request to an HTTPS server", 19),
            ];
            self.plain_to_https_marker = HTTPS.find_iter(window).any(|at| {
                MARKERS.iter().any(|&(text, word_at)| {
                    at.checked_sub(word_at)
                        .and_then(|start| window.get(start..))
                        .is_some_and(|w| w.starts_with(text))
                })
            });
        }
        of_mut(&mut self.first_bytes, from).extend(bytes);
        // Undecided: gather bytes until the protocol is known, then replay them. Usually the
        // first chunk decides, and is fed on without being copied.
        let mut ts = ts_ns;
        let mut replay = None;
        if let Parser::Undecided(buf, first_ts) = of_mut(&mut self.parsers, from) {
            let peer = *of(&self.protocol, from.other());
            let decided = if buf.is_empty() {
                recognise(from, bytes, peer)
            } else {
                buf.extend_from_slice(bytes);
                recognise(from, buf, peer)
            };
            let Some(p) = decided else {
                if buf.is_empty() {
                    *first_ts = ts_ns;
                    buf.extend_from_slice(bytes);
                }
                if buf.len() > 4096 {
                    *of_mut(&mut self.parsers, from) = Parser::Opaque;
                }
                return;
            };
            if !buf.is_empty() {
                ts = *first_ts;
                replay = Some(std::mem::take(buf));
            }
            let decided_bytes = replay.as_deref().unwrap_or(bytes);
            *of_mut(&mut self.protocol, from) = p;
            let parser = match p {
                Protocol::Tls => Parser::Tls(Box::new(TlsDirection::new(from == Side::Client))),
                Protocol::H2 => Parser::H2(Box::new(H2Direction::new(from == Side::Client))),
                Protocol::Http1 => {
                    let spare = &mut self.spare_http1;
                    self.http1
                        .get_or_insert_with(|| spare.take().unwrap_or_default());
                    Parser::Http1
                }
                _ => {
                    self.push(
                        ts,
                        from,
                        ProtoKind::Unrecognized {
                            first_bytes: escape_bytes(decided_bytes, FIRST_BYTES),
                        },
                    );
                    Parser::Opaque
                }
            };
            *of_mut(&mut self.parsers, from) = parser;
        }
        self.feed(from, ts, replay.as_deref().unwrap_or(bytes));
    }

    /// Moves the events in `out` (from `from`) to the timeline, leaving `out` empty.
    fn push_all(&mut self, from: Side, out: &mut Vec<(i64, ProtoKind)>) {
        for (t, k) in out.drain(..) {
            self.push(t, from, k);
        }
    }

    fn feed(&mut self, from: Side, ts: i64, bytes: &[u8]) {
        let mut out = std::mem::take(&mut self.scratch);
        let peer_max = match of(&self.parsers, from.other()) {
            Parser::H2(h) => h.announced_max_frame_size(),
            _ => DEFAULT_MAX_FRAME_SIZE,
        };
        let mut switch_to_h2: Option<usize> = None;
        match of_mut(&mut self.parsers, from) {
            Parser::Tls(t) => t.feed(ts, bytes, &mut out),
            Parser::H2(h) => h.feed(ts, bytes, peer_max, &mut out),
            Parser::Http1 => {
                if let Some(h) = self.http1.as_mut() {
                    // Straight to the timeline: HTTP/1 events need no look before they join it.
                    let mut timeline = Timeline {
                        events: &mut self.events,
                        dropped: &mut self.events_dropped,
                        from,
                    };
                    let (switch, used) = if from == Side::Client {
                        h.feed_client(ts, bytes, &mut timeline)
                    } else {
                        h.feed_server(ts, bytes, &mut timeline)
                    };
                    if switch == Switch::H2c {
                        switch_to_h2 = Some(used);
                    }
                }
            }
            Parser::Undecided(..) | Parser::Opaque => {}
        }
        let tls_hello = out.iter().find_map(|(_, k)| match k {
            ProtoKind::TlsServerHello { version, .. } => Some(*version),
            _ => None,
        });
        self.push_all(from, &mut out);
        self.scratch = out;
        if let Some(version) = tls_hello
            && version == 0x0304
        {
            // TLS 1.3: everything after the ServerHello is encrypted (RFC 8446 §2).
            self.tls13 = true;
            if let Parser::Tls(t) = of_mut(&mut self.parsers, from) {
                t.set_encrypted();
            }
        }
        if let Some(used) = switch_to_h2 {
            // h2c: after the 101 (server) or at the preface (client), HTTP/2 frames follow,
            // starting with any preface bytes the HTTP/1 parser held from earlier chunks.
            let held = self
                .http1
                .as_mut()
                .map(|h| h.take_held_preface())
                .unwrap_or_default();
            *of_mut(&mut self.protocol, from) = Protocol::H2;
            *of_mut(&mut self.parsers, from) =
                Parser::H2(Box::new(H2Direction::new(from == Side::Client)));
            if !held.is_empty() {
                self.feed(from, ts, &held);
            }
            if let Some(rest) = bytes.get(used..)
                && !rest.is_empty()
            {
                self.feed(from, ts, rest);
            }
        }
    }

    fn gap(&mut self, from: Side, ts_ns: i64, len: u64) {
        let mut out = std::mem::take(&mut self.scratch);
        match of_mut(&mut self.parsers, from) {
            Parser::Tls(t) => t.gap(),
            Parser::H2(h) => h.gap(ts_ns, len, &mut out),
            Parser::Http1 => {
                if let Some(h) = self.http1.as_mut() {
                    h.gap(from == Side::Client, len);
                }
            }
            // Without the first bytes the protocol cannot be told.
            Parser::Undecided(..) => *of_mut(&mut self.parsers, from) = Parser::Opaque,
            Parser::Opaque => {}
        }
        self.push_all(from, &mut out);
        self.scratch = out;
    }
}

impl StreamHandler for Detector {
    fn chunk(&mut self, from: Side, chunk: &Chunk<'_>) {
        match *chunk {
            Chunk::Data { ts_ns, bytes, .. } => self.data(from, ts_ns, bytes),
            Chunk::Gap { ts_ns, len, .. } => self.gap(from, ts_ns, len),
        }
    }

    fn fin(&mut self, from: Side, ts_ns: i64) {
        if from == Side::Server {
            self.server_closed(ts_ns);
        }
    }

    fn reuse(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        if events.capacity() > REUSED_EVENTS {
            events = Vec::new();
        }
        let spare_http1 = self
            .http1
            .take()
            .or_else(|| self.spare_http1.take())
            .and_then(|mut h| h.reuse().then_some(h));
        *self = Detector {
            events,
            spare_http1,
            ..Detector::default()
        };
    }

    fn warm(&self) -> u64 {
        let first = self.events.first().map_or(0, |e| e.ts_ns);
        let last = self.events.last().map_or(0, |e| e.ts_ns);
        let http1 = self.http1.as_ref().map_or(0, |h| h.warm());
        (first ^ last) as u64 ^ http1
    }
}

/// What the detectors found, for machine output.
#[derive(Debug, Clone, Serialize)]
pub struct Detected<'a> {
    pub client_protocol: Protocol,
    pub server_protocol: Protocol,
    pub client_first_bytes: String,
    pub server_first_bytes: String,
    pub exchanges: &'a [Exchange],
    pub tls_client: Option<TlsCounters>,
    pub tls_server: Option<TlsCounters>,
    pub h2_client: Option<H2Counters>,
    pub h2_server: Option<H2Counters>,
    pub protocol_events: &'a [ProtoEvent],
    pub protocol_events_dropped: u32,
}

impl Detector {
    /// The summary of what was found.
    pub fn detected(&self) -> Detected<'_> {
        Detected {
            client_protocol: self.protocol[0],
            server_protocol: self.protocol[1],
            client_first_bytes: self.first_bytes(Side::Client),
            server_first_bytes: self.first_bytes(Side::Server),
            exchanges: self.exchanges(),
            tls_client: self.tls_counters(Side::Client),
            tls_server: self.tls_counters(Side::Server),
            h2_client: self.h2_counters(Side::Client),
            h2_server: self.h2_counters(Side::Server),
            protocol_events: &self.events,
            protocol_events_dropped: self.events_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_answers(bytes: &[u8]) -> bool {
        let mut d = Detector::default();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        d.chunk(
            Side::Client,
            &Chunk::Data {
                ts_ns: 1,
                offset: 0,
                bytes: request,
            },
        );
        d.chunk(
            Side::Server,
            &Chunk::Data {
                ts_ns: 2,
                offset: 0,
                bytes,
            },
        );
        d.plain_http_to_https_port()
    }

    /// Feeds `chunks` (side, bytes), each side's offsets counted from 0, then both FINs.
    fn feed(d: &mut Detector, chunks: &[(Side, &[u8])]) {
        let mut offsets = [0u64; 2];
        for (i, (side, bytes)) in chunks.iter().enumerate() {
            let offset = of_mut(&mut offsets, *side);
            d.chunk(
                *side,
                &Chunk::Data {
                    ts_ns: i as i64,
                    offset: *offset,
                    bytes,
                },
            );
            *offset += bytes.len() as u64;
        }
        d.fin(Side::Client, 100);
        d.fin(Side::Server, 101);
    }

    fn told(d: &Detector) -> (String, bool) {
        let detected = serde_json::to_string(&d.detected()).unwrap();
        (detected, d.plain_http_to_https_port())
    }

    #[test]
    fn a_reused_detector_tells_the_next_connection_as_a_fresh_one_does() {
        // Two exchanges, the second request's head split over two chunks, and a 400 with the
        // text a TLS port answers plain HTTP with: state in every part of the detector.
        let earlier: &[(Side, &[u8])] = &[
            (Side::Client, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            (Side::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (Side::Client, b"POST /b HTTP/1.1\r\nHost: x\r\nContent-"),
            (Side::Client, b"Length: 1\r\n\r\nz"),
            (
                Side::Server,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 47\r\n\r\nThe plain HTTP request was sent to HTTPS port\r\n",
            ),
        ];
        let next: [&[(Side, &[u8])]; 4] = [
            &[
                (Side::Client, b"GET /c HTTP/1.1\r\nHost: y\r\n\r\n"),
                (Side::Server, b"HTTP/1.1 204 No Content\r\n\r\n"),
            ],
            &[(Side::Client, b"GET /d HTTP/1.1\r\nHost: y\r\n\r\n")],
            &[
                (Side::Client, PREFACE),
                (Side::Server, &[0, 0, 0, 4, 0, 0, 0, 0, 0]),
            ],
            &[(Side::Client, b"\x00\x01 not a protocol")],
        ];
        for next in next {
            let mut fresh = Detector::default();
            feed(&mut fresh, next);
            let mut reused = Detector::default();
            feed(&mut reused, earlier);
            assert!(reused.plain_http_to_https_port());
            reused.reuse();
            assert!(reused.spare_http1.is_some(), "the HTTP/1 parser is kept");
            feed(&mut reused, next);
            assert_eq!(told(&reused), told(&fresh));
        }
    }

    #[test]
    fn a_tls_ports_400_to_plain_http_is_told_by_its_text() {
        assert!(server_answers(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 48\r\n\r\nThe plain HTTP request was sent to HTTPS port\r\n"
        ));
        assert!(server_answers(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
        ));
        assert!(!server_answers(
            b"HTTP/1.1 200 OK\r\n\r\nHTTPS port, an HTTPS server, sent to HTTPS"
        ));
        assert!(!server_answers(b"HTTPS port"));
    }
}
