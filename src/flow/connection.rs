//! One TCP connection instance: its handshake, both byte streams, its close, and the
//! timeline of all of it. Time is the packets' capture time only.

use serde::Serialize;

use super::event::{Event, EventKind, Side};
use super::key::{Endpoint, FlowKey};
use super::reassembly::{Chunk, Reassembler, SegmentKind, StreamCounters};
use crate::decode::TcpPacket;

/// Consumes the in-order bytes of a connection's two streams: the protocol detectors hang
/// here. `()` consumes nothing.
pub trait StreamHandler: Default + Send {
    /// A chunk of the stream sent by `from`.
    fn chunk(&mut self, from: Side, chunk: &Chunk<'_>);
    /// `from` sent its FIN, after the bytes delivered so far.
    fn fin(&mut self, _from: Side, _ts_ns: i64) {}
    /// Reads a word of each heap part that making the record will read, and returns
    /// something of them (see [`Connection::warm_heap`]).
    fn warm(&self) -> u64 {
        0
    }
    /// Empties the handler for another connection: afterwards it must behave exactly as
    /// [`Default::default`] does, but it may keep buffers it allocated (small ones), which
    /// the next connection then fills while they are still cached.
    fn reuse(&mut self) {
        *self = Self::default();
    }
}

impl StreamHandler for () {
    fn chunk(&mut self, _: Side, _: &Chunk<'_>) {}
}

/// How the client was told from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleBasis {
    /// The client sent the SYN.
    Syn,
    /// The SYN was not captured; the server sent the SYN-ACK.
    SynAck,
    /// Inferred: the side that sent an HTTP request or a TLS ClientHello is the client.
    Payload,
    /// Inferred: the side on the well-known (or lower) port is the server.
    Ports,
}

impl RoleBasis {
    pub fn inferred(self) -> bool {
        matches!(self, RoleBasis::Payload | RoleBasis::Ports)
    }
}

/// Why the connection's record was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Both sides sent FIN.
    Closed,
    /// A side sent RST.
    Reset,
    /// The capture ended with the connection open.
    CaptureEnd,
    /// No packet for longer than the idle timeout.
    IdleTimeout,
    /// A new connection (SYN with a new initial sequence number) took over the 5-tuple.
    Superseded,
    /// The live-connection cap was reached and this was the least recently active.
    Evicted,
}

/// Limits and timers of the connection engine, all in capture time.
#[derive(Debug, Clone, Copy)]
pub struct FlowConfig {
    /// A connection without packets for this long is finalized.
    pub idle_timeout_ns: i64,
    /// How long a closed connection is kept to catch trailing ACKs, RSTs and retransmissions.
    pub linger_ns: i64,
    /// Whether a connection that ended (see [`Connection::is_over`]) is finished at once,
    /// leaving a tombstone for the linger, rather than lingering whole. Off only to check
    /// that finishing early tells every connection as lingering does.
    pub finish_when_over: bool,
    /// Live connections kept at once (over all shards).
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction.
    pub max_buffered_per_direction: usize,
    /// A pause at least this long becomes an `idle` event on the timeline.
    pub idle_event_ns: i64,
    /// Timeline events kept per connection; later ones are counted only.
    pub max_events: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            idle_timeout_ns: 900 * 1_000_000_000,
            linger_ns: 2 * 1_000_000_000,
            finish_when_over: true,
            max_connections: 1 << 18,
            max_buffered_per_direction: 1 << 20,
            idle_event_ns: 1_000_000_000,
            max_events: 512,
        }
    }
}

/// What one side sent.
#[derive(Default)]
struct Half {
    packets: u64,
    frame_bytes: u64,
    isn: Option<u32>,
    syn_ns: Option<i64>,
    syn_retransmissions: u32,
    stream: Option<Reassembler>,
    first_data_ns: Option<i64>,
    fin_ns: Option<i64>,
    rst_ns: Option<i64>,
    /// TTL of this side's latest segment that was not a RST.
    ttl: Option<u8>,
    /// Last advertised window (unscaled) and the scale offered in the SYN.
    window: u16,
    wscale: Option<u8>,
    mss: Option<u16>,
}

/// What one side sent, in the finished record.
#[derive(Debug, Clone, Serialize)]
pub struct HalfRecord {
    pub packets: u64,
    /// Bytes of the frames on the wire, as tshark's conversation table counts them.
    pub frame_bytes: u64,
    /// Payload bytes of the stream (delivered plus gaps), retransmissions not counted twice.
    pub stream_bytes: u64,
    #[serde(flatten)]
    pub counters: StreamCounters,
    pub first_data_ns: Option<i64>,
    pub fin_ns: Option<i64>,
    pub rst_ns: Option<i64>,
    pub isn: Option<u32>,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub ttl: Option<u8>,
}

/// The handshake as seen.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Handshake {
    pub syn_ns: Option<i64>,
    pub syn_retransmissions: u32,
    pub syn_ack_ns: Option<i64>,
    pub syn_ack_retransmissions: u32,
    pub established_ns: Option<i64>,
}

/// A finished connection: everything the later stages need.
#[derive(Debug, Clone, Serialize)]
#[serde(bound(serialize = ""))]
pub struct ConnectionRecord<H> {
    /// 1-based number of the connection's first packet in its input (as tshark numbers
    /// frames): unique per connection, and the order of the output.
    pub first_frame: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub roles: RoleBasis,
    pub start_ns: i64,
    /// Time of the last packet.
    pub end_ns: i64,
    pub handshake: Handshake,
    pub client_sent: HalfRecord,
    pub server_sent: HalfRecord,
    pub end: EndReason,
    pub events: Vec<Event>,
    pub events_dropped: u32,
    #[serde(skip)]
    pub handler: H,
}

/// A live connection.
pub struct Connection<H> {
    key: FlowKey,
    /// Index 0 is what `key.lo` sent, 1 what `key.hi` sent.
    halves: [Half; 2],
    client_is_lo: bool,
    roles: RoleBasis,
    /// Roles can no longer change once bytes were delivered.
    roles_frozen: bool,
    first_frame: u64,
    start_ns: i64,
    last_ns: i64,
    established_ns: Option<i64>,
    /// When the connection closed (RST, or the second FIN).
    closed_ns: Option<i64>,
    /// (ts, sent by lo?, kind): sides are resolved when the record is made, as roles may be
    /// inferred after the first events.
    events: Vec<(i64, Option<bool>, EventKind)>,
    events_dropped: u32,
    handler: H,
}

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;

/// MSS and window scale from a SYN's options (RFC 9293 §3.2, RFC 7323 §2.2).
fn syn_options(options: &[u8]) -> (Option<u16>, Option<u8>) {
    let (mut mss, mut wscale) = (None, None);
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            OPT_END => break,
            OPT_NOP => i += 1,
            _ => {
                let Some(&len) = options.get(i + 1) else {
                    break;
                };
                if len < 2 {
                    break;
                }
                let body = options.get(i + 2..i + len as usize).unwrap_or_default();
                match (kind, body) {
                    (OPT_MSS, [a, b]) => mss = Some(u16::from_be_bytes([*a, *b])),
                    (OPT_WSCALE, [s]) => wscale = Some((*s).min(14)),
                    _ => {}
                }
                i += len as usize;
            }
        }
    }
    (mss, wscale)
}

/// Ports that identify a server whichever side has the lower number.
const SERVICE_PORTS: [u16; 12] = [
    80, 443, 8080, 8443, 8000, 8008, 8888, 3000, 5000, 9000, 9090, 15001,
];

/// Whether `a` rather than `b` looks like the server's port.
fn is_server_port(a: u16, b: u16) -> bool {
    match (SERVICE_PORTS.contains(&a), SERVICE_PORTS.contains(&b)) {
        (true, false) => true,
        (false, true) => false,
        _ => a < b,
    }
}

/// The request methods whose request line can open an HTTP/1 connection.
pub const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The first bytes a client sends: an HTTP/1 request line, the HTTP/2 preface, a TLS
/// ClientHello.
fn client_opening(b: &[u8]) -> bool {
    HTTP_METHODS.iter().any(|m| b.starts_with(m))
        || b.starts_with(b"PRI * HTTP/2.0")
        || (b.len() > 5 && b[0] == 0x16 && b[1] == 3 && b[5] == 1)
}

/// The first bytes a server sends: an HTTP/1 status line, a TLS ServerHello.
fn server_opening(b: &[u8]) -> bool {
    b.starts_with(b"HTTP/1.") || (b.len() > 5 && b[0] == 0x16 && b[1] == 3 && b[5] == 2)
}

/// Timeline events a reused buffer keeps room for; a longer one is freed rather than kept.
const REUSED_TIMELINE: usize = 16;

/// What a finished connection leaves for a new one: its handler and its timeline's buffer,
/// emptied. Taken right after the record was read, so they are still cached when the new
/// connection fills them; fresh allocations would be memory untouched for seconds.
pub struct Reusable<H> {
    handler: H,
    pub(super) events: Vec<(i64, Option<bool>, EventKind)>,
}

impl<H: StreamHandler> Reusable<H> {
    /// Takes `record`'s handler and timeline, emptied, for another connection; what is left
    /// of the record is only fit to be overwritten.
    pub fn from_record(record: &mut ConnectionRecord<H>) -> Self {
        let mut handler = std::mem::take(&mut record.handler);
        let mut events = std::mem::take(&mut record.events);
        handler.reuse();
        events.clear();
        // Turned back in place: a pending event is the size of a finished one.
        let mut events: Vec<_> = events
            .into_iter()
            .map(|e| (e.ts_ns, None, e.kind))
            .collect();
        if events.capacity() > REUSED_TIMELINE {
            events = Vec::new();
        }
        Reusable { handler, events }
    }
}

impl<H: StreamHandler> Connection<H> {
    /// A connection whose first captured packet is `p`, sent by the `lo` side if `from_lo`.
    pub fn new(key: FlowKey, p: &TcpPacket<'_>, from_lo: bool, frame: u64) -> Self {
        Self::reusing(key, p, from_lo, frame, None)
    }

    /// [`Self::new`], filling what a finished connection left, if any.
    pub fn reusing(
        key: FlowKey,
        p: &TcpPacket<'_>,
        from_lo: bool,
        frame: u64,
        parts: Option<Reusable<H>>,
    ) -> Self {
        let Reusable { handler, events } = parts.unwrap_or_else(|| Reusable {
            handler: H::default(),
            events: Vec::new(),
        });
        let (client_is_lo, roles) = if p.flags.syn() && !p.flags.ack() {
            (from_lo, RoleBasis::Syn)
        } else if p.flags.syn() {
            (!from_lo, RoleBasis::SynAck)
        } else {
            (!is_server_port(key.lo.port, key.hi.port), RoleBasis::Ports)
        };
        Connection {
            key,
            halves: [Half::default(), Half::default()],
            client_is_lo,
            roles,
            roles_frozen: false,
            first_frame: frame,
            start_ns: p.ts_ns,
            last_ns: p.ts_ns,
            established_ns: None,
            closed_ns: None,
            events,
            events_dropped: 0,
            handler,
        }
    }

    /// The connection's direction-independent 5-tuple.
    pub fn key(&self) -> FlowKey {
        self.key
    }

    /// 1-based number of the connection's first packet: unique, and the output order.
    pub fn first_frame(&self) -> u64 {
        self.first_frame
    }

    pub fn last_ns(&self) -> i64 {
        self.last_ns
    }

    pub fn closed_ns(&self) -> Option<i64> {
        self.closed_ns
    }

    /// Whether the connection is over: both sides sent a FIN that the other acknowledged,
    /// every byte before them was delivered, and no side sent a RST. Nothing that can still
    /// arrive on it reaches the handler (see [`Reassembler::ended`]), so its record can be
    /// made at once.
    pub fn is_over(&self) -> bool {
        self.closed_ns.is_some()
            && self
                .halves
                .iter()
                .all(|h| h.rst_ns.is_none() && h.stream.as_ref().is_some_and(|s| s.ended()))
    }

    /// The initial sequence number each end sent in its SYN (`key.lo`'s first).
    pub fn isns(&self) -> [Option<u32>; 2] {
        [self.halves[0].isn, self.halves[1].isn]
    }

    /// Whether `p` opens a new connection on this 5-tuple rather than belonging to this one:
    /// a SYN (or SYN-ACK) with another initial sequence number, or any packet after this
    /// connection closed and lingered out or idled out.
    pub fn is_superseded_by(&self, p: &TcpPacket<'_>, from_lo: bool, cfg: &FlowConfig) -> bool {
        let half = &self.halves[usize::from(!from_lo)];
        if p.flags.syn() && !p.flags.rst() && half.isn != Some(p.seq) {
            // A SYN-ACK only opens a new connection when this one is over: otherwise it
            // answers this connection's SYN (its ISN is new to us).
            return !p.flags.ack() || self.closed_ns.is_some() || half.isn.is_some();
        }
        let lingered = self.closed_ns.is_some_and(|t| p.ts_ns - t > cfg.linger_ns);
        lingered || p.ts_ns - self.last_ns > cfg.idle_timeout_ns
    }

    fn side(&self, from_lo: bool) -> Side {
        if from_lo == self.client_is_lo {
            Side::Client
        } else {
            Side::Server
        }
    }

    fn push_event(
        events: &mut Vec<(i64, Option<bool>, EventKind)>,
        dropped: &mut u32,
        max: usize,
        e: (i64, Option<bool>, EventKind),
    ) {
        if events.len() < max {
            events.push(e);
        } else {
            *dropped += 1;
        }
    }

    fn event(&mut self, cfg: &FlowConfig, ts_ns: i64, from_lo: Option<bool>, kind: EventKind) {
        Self::push_event(
            &mut self.events,
            &mut self.events_dropped,
            cfg.max_events,
            (ts_ns, from_lo, kind),
        );
    }

    /// Takes the next packet of this connection.
    pub fn handle(&mut self, p: &TcpPacket<'_>, from_lo: bool, cfg: &FlowConfig) {
        let me = usize::from(!from_lo);
        let peer = 1 - me;
        let ts = p.ts_ns;
        if ts - self.last_ns >= cfg.idle_event_ns {
            self.event(
                cfg,
                ts,
                None,
                EventKind::Idle {
                    duration_ns: ts - self.last_ns,
                },
            );
        }
        self.last_ns = self.last_ns.max(ts);
        let f = p.flags;
        {
            let h = &mut self.halves[me];
            h.packets += 1;
            h.frame_bytes += u64::from(p.frame_len);
        }
        if f.rst() {
            self.handle_rst(p, from_lo, cfg);
            return;
        }
        self.halves[me].ttl = Some(p.ttl);
        if !f.syn() {
            self.halves[me].window = p.window;
        }
        if f.syn() {
            self.handle_syn(p, from_lo, cfg);
        } else if f.ack() && self.established_ns.is_none() && from_lo == self.client_is_lo {
            let server = &self.halves[usize::from(self.client_is_lo)];
            if server.isn.is_some_and(|isn| p.ack == isn.wrapping_add(1))
                && self.halves[me].isn.is_some()
            {
                self.established_ns = Some(ts);
                self.event(cfg, ts, Some(from_lo), EventKind::HandshakeComplete);
            }
        }
        // A capture that starts mid-stream: this side's stream starts at the first sequence
        // number seen, the peer's at the first acknowledgment seen.
        if self.halves[me].stream.is_none() && !f.syn() {
            self.halves[me].stream = Some(Reassembler::new(p.seq, cfg.max_buffered_per_direction));
        }
        if f.ack() && self.halves[peer].stream.is_none() && self.halves[peer].isn.is_none() {
            self.halves[peer].stream =
                Some(Reassembler::new(p.ack, cfg.max_buffered_per_direction));
        }

        if p.payload_len > 0 {
            if !self.roles_frozen {
                if self.roles == RoleBasis::Ports {
                    if client_opening(p.payload) {
                        self.client_is_lo = from_lo;
                        self.roles = RoleBasis::Payload;
                    } else if server_opening(p.payload) {
                        self.client_is_lo = !from_lo;
                        self.roles = RoleBasis::Payload;
                    }
                }
                self.roles_frozen = true;
            }
            let seq = if f.syn() {
                p.seq.wrapping_add(1)
            } else {
                p.seq
            };
            let side = self.side(from_lo);
            let Connection {
                halves,
                events,
                events_dropped,
                handler,
                ..
            } = self;
            if let Some(stream) = halves[me].stream.as_mut() {
                let mut sink = |c: Chunk<'_>| {
                    deliver(
                        events,
                        events_dropped,
                        cfg.max_events,
                        handler,
                        from_lo,
                        side,
                        c,
                    )
                };
                let kind = stream.segment_fingerprinted(
                    ts,
                    seq,
                    p.payload,
                    p.payload_len,
                    p.payload_fingerprint,
                    &mut sink,
                );
                match kind {
                    SegmentKind::InOrder | SegmentKind::OutOfOrder
                        if halves[me].first_data_ns.is_none() =>
                    {
                        halves[me].first_data_ns = Some(ts);
                        Self::push_event(
                            events,
                            events_dropped,
                            cfg.max_events,
                            (ts, Some(from_lo), EventKind::FirstData),
                        );
                    }
                    SegmentKind::Retransmission { differs: true } => {
                        let offset = stream.offset_of(seq);
                        Self::push_event(
                            events,
                            events_dropped,
                            cfg.max_events,
                            (
                                ts,
                                Some(from_lo),
                                EventKind::DifferingRetransmission {
                                    offset,
                                    len: p.payload_len,
                                },
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
        if f.ack() {
            self.acknowledge(ts, p.ack, peer, cfg);
        }
        if f.fin() {
            let h = &mut self.halves[me];
            if let Some(stream) = h.stream.as_mut() {
                let data_seq = if f.syn() {
                    p.seq.wrapping_add(1)
                } else {
                    p.seq
                };
                stream.fin(data_seq.wrapping_add(p.payload_len));
            }
            if h.fin_ns.is_none() {
                h.fin_ns = Some(ts);
                let side = self.side(from_lo);
                self.handler.fin(side, ts);
                self.event(cfg, ts, Some(from_lo), EventKind::Fin);
                if self.halves[peer].fin_ns.is_some() && self.closed_ns.is_none() {
                    self.closed_ns = Some(ts);
                }
            }
        }
    }

    /// The peer's stream was acknowledged up to `ack`: unseen bytes before it are gaps.
    fn acknowledge(&mut self, ts: i64, ack: u32, stream_of: usize, cfg: &FlowConfig) {
        let from_lo = stream_of == 0;
        let side = self.side(from_lo);
        let Connection {
            halves,
            events,
            events_dropped,
            handler,
            ..
        } = self;
        if let Some(stream) = halves[stream_of].stream.as_mut() {
            let mut sink = |c: Chunk<'_>| {
                deliver(
                    events,
                    events_dropped,
                    cfg.max_events,
                    handler,
                    from_lo,
                    side,
                    c,
                )
            };
            stream.ack(ts, ack, &mut sink);
        }
    }

    fn handle_syn(&mut self, p: &TcpPacket<'_>, from_lo: bool, cfg: &FlowConfig) {
        let me = usize::from(!from_lo);
        let is_synack = p.flags.ack();
        let h = &mut self.halves[me];
        let retransmission = h.isn == Some(p.seq);
        if retransmission {
            h.syn_retransmissions += 1;
        } else {
            h.isn = Some(p.seq);
            h.syn_ns = Some(p.ts_ns);
            let (mss, wscale) = syn_options(p.options);
            h.mss = mss;
            h.wscale = wscale;
            h.stream = Some(Reassembler::new(
                p.seq.wrapping_add(1),
                cfg.max_buffered_per_direction,
            ));
        }
        // Roles from the handshake outrank any inference, as long as no bytes were delivered.
        if !self.roles_frozen && self.roles != RoleBasis::Syn {
            self.client_is_lo = if is_synack { !from_lo } else { from_lo };
            self.roles = if is_synack {
                RoleBasis::SynAck
            } else {
                RoleBasis::Syn
            };
        }
        let kind = if is_synack {
            EventKind::SynAck { retransmission }
        } else {
            EventKind::Syn { retransmission }
        };
        self.event(cfg, p.ts_ns, Some(from_lo), kind);
    }

    fn handle_rst(&mut self, p: &TcpPacket<'_>, from_lo: bool, cfg: &FlowConfig) {
        let me = usize::from(!from_lo);
        let peer = 1 - me;
        let in_window = match (&self.halves[me].stream, self.halves[peer].isn) {
            (Some(stream), _) => {
                let offset = stream.offset_of(p.seq);
                let next = stream.next_offset() as i64;
                let peer_half = &self.halves[peer];
                // Window scaling applies only when both sides offered it in their SYNs.
                let scale = match (self.halves[me].wscale, peer_half.wscale) {
                    (Some(_), Some(s)) => s,
                    _ => 0,
                };
                let window = (i64::from(peer_half.window) << scale).max(1);
                Some(offset >= next - 1 && offset <= next + window)
            }
            // A RST answering a SYN is acceptable when it acknowledges the SYN.
            (None, Some(isn)) => Some(p.flags.ack() && p.ack == isn.wrapping_add(1)),
            (None, None) => None,
        };
        let usual_ttl = self.halves[me].ttl;
        if self.halves[me].rst_ns.is_none() {
            self.halves[me].rst_ns = Some(p.ts_ns);
        }
        if self.closed_ns.is_none() {
            self.closed_ns = Some(p.ts_ns);
        }
        self.event(
            cfg,
            p.ts_ns,
            Some(from_lo),
            EventKind::Rst {
                in_window,
                ttl: p.ttl,
                usual_ttl,
            },
        );
    }

    /// Reads a word of each part of the connection itself that [`Self::finish`] reads, and
    /// returns something of them. A connection that lingered out was last touched seconds
    /// ago, so its memory is no longer cached: warming a few dozen of them first, the reads
    /// of one independent of the others', lets their cache misses overlap, where finishing
    /// them one by one waits for each miss in turn.
    pub fn warm_state(&self) -> u64 {
        let mut w = self.first_frame ^ self.events.len() as u64 ^ u64::from(self.events_dropped);
        for h in &self.halves {
            w ^= h.packets ^ h.frame_bytes;
            if let Some(s) = &h.stream {
                w ^= s.next_offset() ^ s.counters.delivered_bytes;
            }
        }
        w
    }

    /// [`Self::warm_state`] for what the connection points to: its events and the handler's
    /// parts. Done after the state of a few dozen connections was warmed, so the pointers
    /// are at hand.
    pub fn warm_heap(&self) -> u64 {
        let first = self.events.first().map_or(0, |e| e.0);
        let last = self.events.last().map_or(0, |e| e.0);
        (first ^ last) as u64 ^ self.handler.warm()
    }

    /// Ends the connection and turns it into its record. `end_of_input` is the time of the
    /// input's last packet when the input ended, None when the connection ends earlier.
    ///
    /// The record is built from the fields in place (the handler and the events taken out),
    /// not from a kilobyte-sized copy; what is left is a husk, only fit to be overwritten by
    /// a new connection (the table reuses the box while it is in the cache).
    pub fn finish(
        &mut self,
        reason: Option<EndReason>,
        end_of_input: Option<i64>,
        cfg: &FlowConfig,
    ) -> ConnectionRecord<H> {
        let last = self.last_ns;
        for me in 0..2 {
            let from_lo = me == 0;
            let side = self.side(from_lo);
            let Connection {
                halves,
                events,
                events_dropped,
                handler,
                ..
            } = &mut *self;
            if let Some(stream) = halves[me].stream.as_mut() {
                let mut sink = |c: Chunk<'_>| {
                    deliver(
                        events,
                        events_dropped,
                        cfg.max_events,
                        handler,
                        from_lo,
                        side,
                        c,
                    )
                };
                stream.finish(last, &mut sink);
            }
        }
        let reason = reason.unwrap_or_else(|| {
            if self.halves.iter().any(|h| h.rst_ns.is_some()) {
                EndReason::Reset
            } else if self.closed_ns.is_some() {
                EndReason::Closed
            } else if end_of_input.is_some_and(|end| end - last > cfg.idle_timeout_ns) {
                EndReason::IdleTimeout
            } else {
                EndReason::CaptureEnd
            }
        });
        match reason {
            EndReason::CaptureEnd => self.event(
                cfg,
                end_of_input.unwrap_or(last),
                None,
                EventKind::CaptureEnd,
            ),
            EndReason::IdleTimeout => self.event(
                cfg,
                last + cfg.idle_timeout_ns,
                None,
                EventKind::IdleTimeout,
            ),
            EndReason::Evicted => self.event(cfg, last, None, EventKind::Evicted),
            _ => {}
        }
        let client_is_lo = self.client_is_lo;
        let side = |from_lo: bool| {
            if from_lo == client_is_lo {
                Side::Client
            } else {
                Side::Server
            }
        };
        // Taken by value: the new events are the same size as the kept ones, so they are
        // written in place, without a second allocation.
        let mut events: Vec<Event> = std::mem::take(&mut self.events)
            .into_iter()
            .map(|(ts_ns, from, kind)| Event {
                ts_ns,
                from: from.map(side),
                kind,
            })
            .collect();
        // Gaps found by an acknowledgment can be stamped before events pushed earlier.
        events.sort_by_key(|e| e.ts_ns);
        let (client, server) = if client_is_lo {
            (self.key.lo, self.key.hi)
        } else {
            (self.key.hi, self.key.lo)
        };
        let [lo, hi] = &self.halves;
        let (ch, sh) = if client_is_lo { (lo, hi) } else { (hi, lo) };
        ConnectionRecord {
            first_frame: self.first_frame,
            client,
            server,
            roles: self.roles,
            start_ns: self.start_ns,
            end_ns: last,
            handshake: Handshake {
                syn_ns: ch.syn_ns,
                syn_retransmissions: ch.syn_retransmissions,
                syn_ack_ns: sh.syn_ns,
                syn_ack_retransmissions: sh.syn_retransmissions,
                established_ns: self.established_ns,
            },
            client_sent: half_record(ch),
            server_sent: half_record(sh),
            end: reason,
            events,
            events_dropped: self.events_dropped,
            handler: std::mem::take(&mut self.handler),
        }
    }
}

/// Hands a chunk of the stream `from_lo` sent to the handler; a gap also goes on the timeline.
fn deliver<H: StreamHandler>(
    events: &mut Vec<(i64, Option<bool>, EventKind)>,
    dropped: &mut u32,
    max_events: usize,
    handler: &mut H,
    from_lo: bool,
    side: Side,
    c: Chunk<'_>,
) {
    if let Chunk::Gap {
        ts_ns,
        offset,
        len,
        cause,
    } = c
    {
        Connection::<H>::push_event(
            events,
            dropped,
            max_events,
            (ts_ns, Some(from_lo), EventKind::Gap { offset, len, cause }),
        );
    }
    handler.chunk(side, &c);
}

fn half_record(h: &Half) -> HalfRecord {
    let counters = h.stream.as_ref().map(|s| s.counters).unwrap_or_default();
    HalfRecord {
        packets: h.packets,
        frame_bytes: h.frame_bytes,
        stream_bytes: counters.delivered_bytes + counters.gap_bytes,
        counters,
        first_data_ns: h.first_data_ns,
        fin_ns: h.fin_ns,
        rst_ns: h.rst_ns,
        isn: h.isn,
        mss: h.mss,
        window_scale: h.wscale,
        ttl: h.ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_options_are_read_and_lies_are_survived() {
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(syn_options(&opts), (Some(1460), Some(7)));
        assert_eq!(syn_options(&[2, 0, 1]), (None, None));
        assert_eq!(syn_options(&[3, 40, 1]), (None, None));
        assert_eq!(syn_options(&[1, 1, 3, 3, 200]), (None, Some(14)));
    }

    /// Counts what reaches it.
    #[derive(Default)]
    struct Recorder {
        chunks: usize,
        fins: usize,
    }

    impl StreamHandler for Recorder {
        fn chunk(&mut self, _: Side, _: &Chunk<'_>) {
            self.chunks += 1;
        }
        fn fin(&mut self, _: Side, _: i64) {
            self.fins += 1;
        }
    }

    #[test]
    fn nothing_reaches_the_handler_once_the_connection_is_over() {
        use crate::decode::TcpFlags;
        use std::net::{IpAddr, Ipv4Addr};
        const A: u8 = TcpFlags::ACK;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Client 127.0.0.1:1001, server 127.0.0.1:2000: the client is the key's lo side.
        let seg = |from_client: bool, flags: u8, seq: u32, ack: u32, payload: &'static [u8]| {
            let ports = if from_client {
                (1001, 2000)
            } else {
                (2000, 1001)
            };
            TcpPacket::loopback(0, ports, flags, (seq, ack), payload)
        };
        let cfg = FlowConfig::default();
        let src = Endpoint { ip, port: 1001 };
        let dst = Endpoint { ip, port: 2000 };
        let (key, _) = FlowKey::of(src, dst);
        let syn = seg(true, TcpFlags::SYN, 100, 0, b"");
        let mut c = Connection::<Recorder>::new(key, &syn, true, 1);
        let script = [
            syn,
            seg(false, TcpFlags::SYN | A, 500, 101, b""),
            seg(true, A, 101, 501, b""),
            seg(true, A | TcpFlags::PSH, 101, 501, b"GET / HTTP/1.1\r\n\r\n"),
            // The server's answer: its first 4 bytes are never captured.
            seg(false, A | TcpFlags::PSH, 505, 119, b"1.1 200 OK\r\n\r\n"),
            seg(false, A | TcpFlags::FIN, 519, 119, b""),
            seg(true, A | TcpFlags::FIN, 119, 520, b""),
        ];
        for p in &script {
            c.handle(p, p.src_port == 1001, &cfg);
        }
        // Both FINs seen, the client's not yet acknowledged.
        assert!(c.closed_ns().is_some() && !c.is_over());
        c.handle(&seg(false, A, 520, 120, b""), false, &cfg);
        assert!(c.is_over());
        let before = (c.handler.chunks, c.handler.fins);
        // What can still arrive: the lost bytes late, retransmissions, bytes past a FIN,
        // acknowledgments beyond it, FINs again, a RST.
        let late = [
            seg(false, A | TcpFlags::PSH, 501, 119, b"HTTP"),
            seg(false, A | TcpFlags::PSH, 505, 119, b"1.1 200 OK\r\n\r\n"),
            seg(true, A | TcpFlags::PSH, 101, 501, b"GET / HTTP/1.1\r\n\r\n"),
            seg(
                true,
                A | TcpFlags::PSH,
                120,
                520,
                b"GET /again HTTP/1.1\r\n\r\n",
            ),
            seg(
                false,
                A | TcpFlags::PSH,
                520,
                120,
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
            seg(true, A, 120, 9000, b""),
            seg(false, A, 520, 9000, b""),
            seg(false, A | TcpFlags::FIN, 519, 120, b""),
            seg(true, A | TcpFlags::FIN, 119, 520, b""),
            seg(false, TcpFlags::RST, 520, 0, b""),
        ];
        for p in &late {
            c.handle(p, p.src_port == 1001, &cfg);
        }
        assert_eq!((c.handler.chunks, c.handler.fins), before);
        let r = c.finish(None, None, &cfg);
        assert_eq!(r.handler.chunks, before.0);
    }

    #[test]
    fn service_ports_and_openings_tell_the_server() {
        assert!(is_server_port(8080, 1234));
        assert!(!is_server_port(45000, 443));
        assert!(is_server_port(22, 51000));
        assert!(client_opening(b"GET / HTTP/1.1\r\n"));
        assert!(client_opening(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(client_opening(&[0x16, 3, 1, 0, 200, 1, 0]));
        assert!(server_opening(b"HTTP/1.1 200 OK"));
        assert!(!client_opening(b"HTTP/1.1 200 OK"));
    }
}
