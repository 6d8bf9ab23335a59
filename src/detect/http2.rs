//! HTTP/2 frames of one direction of a connection (RFC 9113), walked incrementally, with the
//! header blocks decoded by HPACK (RFC 7541, [`super::hpack`]).
//!
//! Input: the direction's in-order bytes, in chunks cut anywhere (even inside the preface or a
//! frame header), each with its capture time. Output: [`ProtoKind`] events (the preface,
//! SETTINGS, completed header blocks, DATA that ends a stream, RST_STREAM, GOAWAY, protocol
//! errors), each stamped with the time of the chunk that completed it, so any cut of the same
//! bytes gives the same events.
//!
//! Invariants:
//! - Memory is bounded whatever the input: the 9-byte frame header, at most 8 fixed payload
//!   bytes (pad length, priority, promised stream, RST_STREAM code, GOAWAY ids), one 6-byte
//!   SETTINGS entry, at most [`MAX_GOAWAY_DEBUG`] bytes of GOAWAY debug data, one header block
//!   of at most [`MAX_HEADER_BLOCK`] bytes, and an HPACK dynamic table held to
//!   [`MAX_HPACK_TABLE_SIZE`]. HPACK work is linear in the block, and a block may decode to
//!   at most [`MAX_HEADER_LIST_SIZE`] bytes of fields. DATA payloads are counted, never copied. No length read from the
//!   input sizes an allocation.
//! - A protocol error or a capture gap is reported once, then the direction stops for good:
//!   after either, frame boundaries are guesses, and events built on guesses would mislead.
//! - An HPACK failure is reported once but does not stop the walk: frame boundaries are still
//!   sound, so later header blocks are still reported, with their fields unknown (the dynamic
//!   table may have been left half-updated, so nothing decoded after it can be trusted).

// Input bytes never panic this detector: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use super::event::{ProtoKind, escape_bytes};
use super::hpack::Decoder;

/// The client connection preface, RFC 9113 §3.4.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Default SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest value SETTINGS_MAX_FRAME_SIZE may take (2^24 - 1), RFC 9113 §6.5.2.
const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;
/// Largest header block (HEADERS or PUSH_PROMISE and their CONTINUATIONs) kept for HPACK.
/// Real blocks are a few KiB; servers commonly refuse more than 16-64 KiB of headers.
const MAX_HEADER_BLOCK: usize = 64 << 10;
/// Capacity a header block buffer keeps between blocks, so that one large block does not pin
/// 64 KiB on every idle connection.
const KEEP_BLOCK_CAPACITY: usize = 4 << 10;
/// Cap on the HPACK dynamic table size a size update may set (RFC 7541 §4.2, §6.3). The real
/// bound is the SETTINGS_HEADER_TABLE_SIZE the receiving side announced (4096 by default;
/// browsers announce up to 65536), which this direction does not see; without a cap the
/// decoder would accept sizes up to 2^32 - 1 and let a hostile peer grow the table without end.
/// A larger update is an HPACK error.
const MAX_HPACK_TABLE_SIZE: usize = 64 << 10;
/// Cap on a decoded header list (RFC 9113 §6.5.2 sizes: name + value + 32 per field); a
/// larger one is an HPACK error. The work is already bounded by [`MAX_HEADER_BLOCK`]; this
/// bounds what a block may hand out by reference (65,536 one-byte references to a 64 KiB
/// table entry would be 4 GiB). Real lists are a few KiB, and servers commonly refuse more than
/// 16 KiB to 1 MiB; this stays above the 2.75 MB of the largest block of the smallest
/// fields (64 KiB of one-byte `:method: GET` references), which must still decode.
const MAX_HEADER_LIST_SIZE: usize = 4 << 20;
/// Bytes kept of each decoded header value.
const MAX_FIELD: usize = 1024;
/// Bytes kept of GOAWAY debug data.
const MAX_GOAWAY_DEBUG: usize = 256;
/// Bytes shown when the connection preface is missing.
const SHOWN_BYTES: usize = 32;
const FRAME_HEADER_LEN: usize = 9;

/// Frame types, RFC 9113 §6.
mod ty {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags, RFC 9113 §6. Their meaning depends on the frame type.
mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_MAX_FRAME_SIZE identifier, RFC 9113 §6.5.2.
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

fn type_name(t: u8) -> Cow<'static, str> {
    Cow::Borrowed(match t {
        ty::DATA => "DATA",
        ty::HEADERS => "HEADERS",
        ty::PRIORITY => "PRIORITY",
        ty::RST_STREAM => "RST_STREAM",
        ty::SETTINGS => "SETTINGS",
        ty::PUSH_PROMISE => "PUSH_PROMISE",
        ty::PING => "PING",
        ty::GOAWAY => "GOAWAY",
        ty::WINDOW_UPDATE => "WINDOW_UPDATE",
        ty::CONTINUATION => "CONTINUATION",
        other => return Cow::Owned(format!("type 0x{other:02x}")),
    })
}

/// Frame counts of one direction. A frame is counted once its header passed the checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct H2Counters {
    pub frames: u64,
    pub data_frames: u64,
    /// DATA bytes without the pad length and padding, counted as they arrive.
    pub data_bytes: u64,
    /// HEADERS frames (their CONTINUATIONs are counted in `frames` only).
    pub headers_frames: u64,
    pub pings: u64,
    pub window_updates: u64,
    /// Frame types RFC 9113 does not define, ignored as §5.5 requires.
    pub unknown_frames: u64,
}

/// The 9-byte frame header, RFC 9113 §4.1.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: u32,
    ty: u8,
    flags: u8,
    /// The reserved bit is masked off (§4.1: it has no meaning and is ignored on receipt).
    stream_id: u32,
    raw: [u8; FRAME_HEADER_LEN],
}

impl FrameHead {
    fn parse(raw: [u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, ty, flags, s0, s1, s2, s3] = raw;
        FrameHead {
            len: u32::from_be_bytes([0, l0, l1, l2]),
            ty,
            flags,
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
            raw,
        }
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// PADDED means something only on DATA, HEADERS and PUSH_PROMISE (§6.1, §6.2, §6.6).
    fn padded(&self) -> bool {
        matches!(self.ty, ty::DATA | ty::HEADERS | ty::PUSH_PROMISE) && self.has(flag::PADDED)
    }

    /// Fixed payload bytes read before the body: pad length (§6.1), stream dependency and
    /// weight (§6.2), promised stream id (§6.6), error code (§6.4), last stream id and error
    /// code (§6.8).
    fn prefix_len(&self) -> u32 {
        let pad = u32::from(self.padded());
        match self.ty {
            ty::DATA => pad,
            ty::HEADERS if self.has(flag::PRIORITY) => pad + 5,
            ty::HEADERS => pad,
            ty::PUSH_PROMISE => pad + 4,
            ty::RST_STREAM => 4,
            ty::GOAWAY => 8,
            _ => 0,
        }
    }
}

/// Progress through the payload of the current frame. A payload is read as three regions:
/// the fixed prefix, the body, and the padding (skipped).
#[derive(Debug, Clone, Copy)]
struct Frame {
    head: FrameHead,
    /// Payload bytes consumed so far.
    pos: u32,
    /// Length of the fixed prefix, at most 8 (`prefix` holds it).
    prefix_len: u32,
    prefix: [u8; 8],
    /// Where the padding starts; known once the prefix is read.
    body_end: Option<u32>,
    /// SETTINGS: the entry being read (§6.5.1: 16-bit id, 32-bit value) and the valid
    /// MAX_FRAME_SIZE announced so far in this frame.
    entry: [u8; 6],
    entry_got: u8,
    max_frame_size: Option<u32>,
}

impl Frame {
    fn new(head: FrameHead) -> Self {
        Frame {
            head,
            pos: 0,
            prefix_len: head.prefix_len(),
            prefix: [0; 8],
            body_end: None,
            entry: [0; 6],
            entry_got: 0,
            max_frame_size: None,
        }
    }

    /// Where the body ends and the padding starts, once the prefix is read: the pad length
    /// counts against the payload, and padding as long as the rest is an error (§6.1, §6.2).
    fn body_end(&self) -> Result<u32, String> {
        let [pad_len, ..] = self.prefix;
        let pad = if self.head.padded() {
            u32::from(pad_len)
        } else {
            0
        };
        self.head
            .len
            .checked_sub(self.prefix_len)
            .and_then(|rest| rest.checked_sub(pad))
            .map(|body| self.prefix_len + body)
            .ok_or_else(|| {
                format!(
                    "{} frame on stream {}: {pad} bytes of padding do not fit its {}-byte payload",
                    type_name(self.head.ty),
                    self.head.stream_id,
                    self.head.len
                )
            })
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Matching the client preface; `matched` bytes of it seen.
    Preface {
        matched: usize,
    },
    /// Reading a frame header.
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        got: usize,
    },
    Payload(Frame),
    /// A protocol error or a gap: nothing more is read.
    Stopped,
}

const NEXT_HEADER: Phase = Phase::Header {
    buf: [0; FRAME_HEADER_LEN],
    got: 0,
};

/// A header block started by HEADERS or PUSH_PROMISE and not yet ended by END_HEADERS.
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    /// PUSH_PROMISE blocks are decoded only to keep the dynamic table in step (RFC 7541 §2.2);
    /// they produce no event.
    push: bool,
    /// Bytes of header block fragment so far (also counted when they are no longer kept).
    len: usize,
}

/// The header fields the reports use, each truncated to [`MAX_FIELD`] bytes.
#[derive(Debug, Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    host: Option<String>,
    status: Option<u16>,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
}

impl Fields {
    /// Keeps the first occurrence of each field we report.
    fn keep(&mut self, name: &[u8], value: &[u8]) {
        let slot = match name {
            b":method" => &mut self.method,
            b":path" => &mut self.path,
            b":authority" => &mut self.authority,
            b"host" => &mut self.host,
            b"grpc-message" => &mut self.grpc_message,
            b":status" => {
                if self.status.is_none() {
                    self.status = parse_digits(value).and_then(|n| u16::try_from(n).ok());
                }
                return;
            }
            b"grpc-status" => {
                if self.grpc_status.is_none() {
                    self.grpc_status = parse_digits(value);
                }
                return;
            }
            _ => return,
        };
        if slot.is_none() {
            let kept = value.get(..MAX_FIELD).unwrap_or(value);
            *slot = Some(String::from_utf8_lossy(kept).into_owned());
        }
    }

    fn into_event(self, stream_id: u32, end_stream: bool) -> ProtoKind {
        ProtoKind::H2Headers {
            stream_id,
            end_stream,
            method: self.method,
            path: self.path,
            // §8.3.1: a request may carry Host instead of :authority.
            authority: self.authority.or(self.host),
            status: self.status,
            grpc_status: self.grpc_status,
            grpc_message: self.grpc_message,
        }
    }
}

/// A non-empty run of ASCII digits that fits a u32 (`str::parse` alone would accept "+7").
fn parse_digits(value: &[u8]) -> Option<u32> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn new_decoder() -> Decoder {
    Decoder::new(MAX_HPACK_TABLE_SIZE, MAX_HEADER_LIST_SIZE)
}

/// Splits off up to `n` bytes from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    head
}

/// `part.len()` as a payload offset; parts are cut to at most a frame's length (< 2^24).
fn len32(part: &[u8]) -> u32 {
    u32::try_from(part.len()).unwrap_or(u32::MAX)
}

/// One direction's HTTP/2 frames, fed in order, chunk by chunk (chunks split anywhere, even
/// inside the preface or a frame header).
pub struct H2Direction {
    phase: Phase,
    /// Whether a frame header passed the checks yet: the first must be SETTINGS (§3.4).
    saw_frame: bool,
    block: Option<OpenBlock>,
    /// The open header block's bytes; not kept once HPACK failed (only its length matters).
    block_buf: Vec<u8>,
    goaway_debug: Vec<u8>,
    /// One decoder per direction: its dynamic table spans all the direction's header blocks.
    decoder: Decoder,
    hpack_failed: bool,
    announced_max_frame_size: u32,
    counters: H2Counters,
}

impl fmt::Debug for H2Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Direction")
            .field("phase", &self.phase)
            .field("block", &self.block)
            .field("hpack_failed", &self.hpack_failed)
            .field("announced_max_frame_size", &self.announced_max_frame_size)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl H2Direction {
    /// `expect_preface`: this is the client side, whose first 24 bytes are the preface.
    pub fn new(expect_preface: bool) -> Self {
        H2Direction {
            phase: if expect_preface {
                Phase::Preface { matched: 0 }
            } else {
                NEXT_HEADER
            },
            saw_frame: false,
            block: None,
            block_buf: Vec::new(),
            goaway_debug: Vec::new(),
            decoder: new_decoder(),
            hpack_failed: false,
            announced_max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            counters: H2Counters::default(),
        }
    }

    /// The SETTINGS_MAX_FRAME_SIZE this side announced in its SETTINGS frames (DEFAULT until then).
    pub fn announced_max_frame_size(&self) -> u32 {
        self.announced_max_frame_size
    }

    pub fn counters(&self) -> H2Counters {
        self.counters
    }

    /// Whether decoding stopped (protocol error or gap).
    pub fn stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// `len` bytes of this direction were not captured: frame boundaries and the HPACK dynamic
    /// table are lost. Stop decoding (events after a gap would be guesses); say so once with an
    /// H2ProtocolError whose detail starts with "capture gap".
    pub fn gap(&mut self, ts_ns: i64, len: u64, out: &mut Vec<(i64, ProtoKind)>) {
        if len == 0 || self.stopped() {
            return;
        }
        self.fail(
            ts_ns,
            format!("capture gap of {len} bytes: HTTP/2 frame boundaries and the HPACK dynamic table are lost"),
            out,
        );
    }

    /// Feeds the next in-order bytes, captured at `ts_ns`. `peer_max_frame_size` is the
    /// SETTINGS_MAX_FRAME_SIZE the other side announced (DEFAULT_MAX_FRAME_SIZE until it did):
    /// a frame longer than it is a protocol error. Events go to `out` as (ts_ns, kind); an event is
    /// stamped with the ts of the chunk that completed it.
    pub fn feed(
        &mut self,
        ts_ns: i64,
        bytes: &[u8],
        peer_max_frame_size: u32,
        out: &mut Vec<(i64, ProtoKind)>,
    ) {
        // Values outside §6.5.2's range cannot be announced; one here is the caller's slip, and
        // clamping keeps it from flagging every frame.
        let limit = peer_max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
        let mut rest = bytes;
        // Every pass consumes input or moves the frame to a later region, so this ends; a
        // zero-length region (no prefix, empty body) is passed without input.
        loop {
            match self.phase {
                Phase::Stopped => return,
                Phase::Preface { matched } => {
                    if rest.is_empty() {
                        return;
                    }
                    let want = PREFACE.get(matched..).unwrap_or_default();
                    let got = take(&mut rest, want.len());
                    if !want.starts_with(got) {
                        let seen = PREFACE.get(..matched).unwrap_or_default();
                        let shown: Vec<u8> = seen
                            .iter()
                            .chain(got)
                            .chain(rest)
                            .take(SHOWN_BYTES)
                            .copied()
                            .collect();
                        let detail = format!(
                            "no connection preface: {}",
                            escape_bytes(&shown, SHOWN_BYTES)
                        );
                        self.fail(ts_ns, detail, out);
                        return;
                    }
                    let matched = matched + got.len();
                    if matched == PREFACE.len() {
                        out.push((ts_ns, ProtoKind::H2Preface));
                        self.phase = NEXT_HEADER;
                    } else {
                        self.phase = Phase::Preface { matched };
                    }
                }
                Phase::Header { mut buf, got } => {
                    if rest.is_empty() {
                        return;
                    }
                    let part = take(&mut rest, FRAME_HEADER_LEN.saturating_sub(got));
                    if let Some(dst) = buf.get_mut(got..got + part.len()) {
                        dst.copy_from_slice(part);
                    }
                    let got = got + part.len();
                    if got < FRAME_HEADER_LEN {
                        self.phase = Phase::Header { buf, got };
                    } else {
                        self.start_frame(ts_ns, FrameHead::parse(buf), limit, out);
                    }
                }
                Phase::Payload(mut frame) => match frame.body_end {
                    None if frame.pos < frame.prefix_len => {
                        if rest.is_empty() {
                            return;
                        }
                        let part = take(&mut rest, (frame.prefix_len - frame.pos) as usize);
                        let at = frame.pos as usize;
                        if let Some(dst) = frame.prefix.get_mut(at..at + part.len()) {
                            dst.copy_from_slice(part);
                        }
                        frame.pos += len32(part);
                        self.phase = Phase::Payload(frame);
                    }
                    None => match frame.body_end() {
                        Ok(end) => {
                            frame.body_end = Some(end);
                            self.phase = Phase::Payload(frame);
                        }
                        Err(detail) => {
                            self.fail(ts_ns, detail, out);
                            return;
                        }
                    },
                    Some(end) if frame.pos < end => {
                        if rest.is_empty() {
                            return;
                        }
                        let part = take(&mut rest, (end - frame.pos) as usize);
                        frame.pos += len32(part);
                        if let Err(detail) = self.body(&mut frame, part) {
                            self.fail(ts_ns, detail, out);
                            return;
                        }
                        self.phase = Phase::Payload(frame);
                    }
                    Some(_) if frame.pos < frame.head.len => {
                        if rest.is_empty() {
                            return;
                        }
                        // Padding: skipped unread (§6.1 allows, but does not
                        // require, checking that it is zero).
                        let part = take(&mut rest, (frame.head.len - frame.pos) as usize);
                        frame.pos += len32(part);
                        self.phase = Phase::Payload(frame);
                    }
                    Some(_) => self.finish_frame(ts_ns, &frame, out),
                },
            }
        }
    }

    /// Reports a protocol error and stops for good, dropping what was buffered.
    fn fail(&mut self, ts_ns: i64, detail: String, out: &mut Vec<(i64, ProtoKind)>) {
        out.push((ts_ns, ProtoKind::H2ProtocolError { detail }));
        self.phase = Phase::Stopped;
        self.block = None;
        self.block_buf = Vec::new();
        self.goaway_debug = Vec::new();
        // Frees the dynamic table: nothing will be decoded any more.
        self.decoder = new_decoder();
    }

    /// Checks a complete frame header against what may come next (RFC 9113 §3.4, §4.2, §6).
    fn check(&self, head: &FrameHead, limit: u32) -> Result<(), String> {
        let name = || type_name(head.ty);
        let (len, stream) = (head.len, head.stream_id);
        if !self.saw_frame && head.ty != ty::SETTINGS {
            return Err(format!(
                "the first frame is {}, not SETTINGS (RFC 9113 §3.4); its header bytes: {}",
                name(),
                escape_bytes(&head.raw, FRAME_HEADER_LEN)
            ));
        }
        if len > limit {
            return Err(format!(
                "{} frame of {len} bytes exceeds SETTINGS_MAX_FRAME_SIZE {limit} (RFC 9113 §4.2); its header bytes: {}",
                name(),
                escape_bytes(&head.raw, FRAME_HEADER_LEN)
            ));
        }
        if let Some(block) = &self.block {
            // §6.10: a header block is a contiguous run of frames on its stream.
            if head.ty != ty::CONTINUATION || stream != block.stream_id {
                return Err(format!(
                    "{} frame on stream {stream} inside the header block of stream {} (RFC 9113 §6.10: only CONTINUATION may follow)",
                    name(),
                    block.stream_id
                ));
            }
        }
        let stream_bound = matches!(
            head.ty,
            ty::DATA
                | ty::HEADERS
                | ty::PRIORITY
                | ty::RST_STREAM
                | ty::PUSH_PROMISE
                | ty::CONTINUATION
        );
        let connection_bound = matches!(head.ty, ty::SETTINGS | ty::PING | ty::GOAWAY);
        if stream_bound && stream == 0 {
            return Err(format!("{} frame on stream 0 (RFC 9113 §6)", name()));
        }
        if connection_bound && stream != 0 {
            return Err(format!(
                "{} frame on stream {stream}, not 0 (RFC 9113 §6)",
                name()
            ));
        }
        let bad_len = match head.ty {
            ty::RST_STREAM => len != 4,
            ty::PING => len != 8,
            ty::WINDOW_UPDATE => len != 4,
            ty::GOAWAY => len < 8,
            ty::SETTINGS if head.has(flag::ACK) => len != 0,
            ty::SETTINGS => len % 6 != 0,
            ty::CONTINUATION if self.block.is_none() => {
                return Err(format!(
                    "CONTINUATION frame on stream {stream} with no open header block (RFC 9113 §6.10)"
                ));
            }
            // PRIORITY of the wrong length is only a stream error (§6.3): the walk goes on.
            _ => len < head.prefix_len(),
        };
        if bad_len {
            let ack = if head.ty == ty::SETTINGS && head.has(flag::ACK) {
                " ACK"
            } else {
                ""
            };
            return Err(format!(
                "{}{ack} frame on stream {stream} has an invalid length of {len} bytes (RFC 9113 §6)",
                name()
            ));
        }
        Ok(())
    }

    /// A frame header is complete: check it, count it and set up its payload.
    fn start_frame(
        &mut self,
        ts_ns: i64,
        head: FrameHead,
        limit: u32,
        out: &mut Vec<(i64, ProtoKind)>,
    ) {
        if let Err(detail) = self.check(&head, limit) {
            self.fail(ts_ns, detail, out);
            return;
        }
        self.saw_frame = true;
        let c = &mut self.counters;
        c.frames += 1;
        match head.ty {
            ty::DATA => c.data_frames += 1,
            ty::HEADERS => c.headers_frames += 1,
            ty::PING => c.pings += 1,
            ty::WINDOW_UPDATE => c.window_updates += 1,
            t if t > ty::CONTINUATION => c.unknown_frames += 1,
            _ => {}
        }
        match head.ty {
            ty::HEADERS | ty::PUSH_PROMISE => {
                self.block = Some(OpenBlock {
                    stream_id: head.stream_id,
                    // For a HEADERS frame, END_STREAM is on the HEADERS frame itself, never on
                    // its CONTINUATIONs (§6.2).
                    end_stream: head.ty == ty::HEADERS && head.has(flag::END_STREAM),
                    push: head.ty == ty::PUSH_PROMISE,
                    len: 0,
                });
                self.block_buf.clear();
            }
            ty::GOAWAY => self.goaway_debug.clear(),
            _ => {}
        }
        self.phase = Phase::Payload(Frame::new(head));
    }

    /// Body bytes of the current frame (after the fixed prefix, before the padding).
    fn body(&mut self, frame: &mut Frame, part: &[u8]) -> Result<(), String> {
        match frame.head.ty {
            ty::DATA => self.counters.data_bytes += part.len() as u64,
            ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION => self.append_block(part)?,
            ty::SETTINGS => {
                for &b in part {
                    if let Some(slot) = frame.entry.get_mut(usize::from(frame.entry_got)) {
                        *slot = b;
                    }
                    frame.entry_got += 1;
                    if usize::from(frame.entry_got) == frame.entry.len() {
                        frame.entry_got = 0;
                        let [i0, i1, v0, v1, v2, v3] = frame.entry;
                        let value = u32::from_be_bytes([v0, v1, v2, v3]);
                        // An out-of-range value is a connection error for the receiver
                        // (§6.5.2); we only keep valid ones, so that a bad value cannot make the
                        // other direction's frames look oversized.
                        if u16::from_be_bytes([i0, i1]) == SETTINGS_MAX_FRAME_SIZE
                            && (DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value)
                        {
                            frame.max_frame_size = Some(value);
                        }
                    }
                }
            }
            ty::GOAWAY => {
                let room = MAX_GOAWAY_DEBUG.saturating_sub(self.goaway_debug.len());
                self.goaway_debug.extend(part.iter().take(room));
            }
            _ => {}
        }
        Ok(())
    }

    fn append_block(&mut self, part: &[u8]) -> Result<(), String> {
        let Some(block) = self.block.as_mut() else {
            return Ok(());
        };
        let len = block.len.saturating_add(part.len());
        if len > MAX_HEADER_BLOCK {
            return Err(format!("header block larger than {MAX_HEADER_BLOCK} bytes"));
        }
        block.len = len;
        if self.hpack_failed {
            return Ok(());
        }
        // Grow by doubling as usual, but never past the cap: a block made of many tiny
        // CONTINUATIONs stays linear, and the buffer stays within MAX_HEADER_BLOCK.
        let cap = self.block_buf.capacity();
        if cap < len {
            let target = len.max(cap.saturating_mul(2)).min(MAX_HEADER_BLOCK);
            self.block_buf
                .reserve_exact(target.saturating_sub(self.block_buf.len()));
        }
        self.block_buf.extend_from_slice(part);
        Ok(())
    }

    /// The current frame's payload is all read.
    fn finish_frame(&mut self, ts_ns: i64, frame: &Frame, out: &mut Vec<(i64, ProtoKind)>) {
        self.phase = NEXT_HEADER;
        let head = &frame.head;
        match head.ty {
            ty::DATA if head.has(flag::END_STREAM) => {
                out.push((
                    ts_ns,
                    ProtoKind::H2DataEnd {
                        stream_id: head.stream_id,
                    },
                ));
            }
            ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION if head.has(flag::END_HEADERS) => {
                self.complete_block(ts_ns, out);
            }
            ty::RST_STREAM => {
                let [c0, c1, c2, c3, ..] = frame.prefix;
                out.push((
                    ts_ns,
                    ProtoKind::H2RstStream {
                        stream_id: head.stream_id,
                        error_code: u32::from_be_bytes([c0, c1, c2, c3]),
                    },
                ));
            }
            ty::SETTINGS => {
                if let Some(size) = frame.max_frame_size {
                    self.announced_max_frame_size = size;
                }
                out.push((
                    ts_ns,
                    ProtoKind::H2Settings {
                        ack: head.has(flag::ACK),
                    },
                ));
            }
            ty::GOAWAY => {
                let [l0, l1, l2, l3, c0, c1, c2, c3] = frame.prefix;
                let debug_data = escape_bytes(&self.goaway_debug, MAX_GOAWAY_DEBUG);
                self.goaway_debug = Vec::new();
                out.push((
                    ts_ns,
                    ProtoKind::H2GoAway {
                        last_stream_id: u32::from_be_bytes([l0, l1, l2, l3]) & 0x7fff_ffff,
                        error_code: u32::from_be_bytes([c0, c1, c2, c3]),
                        debug_data,
                    },
                ));
            }
            _ => {}
        }
    }

    /// END_HEADERS: decode the block (always, even for PUSH_PROMISE, to keep the dynamic table
    /// in step) and report it.
    fn complete_block(&mut self, ts_ns: i64, out: &mut Vec<(i64, ProtoKind)>) {
        let Some(block) = self.block.take() else {
            return;
        };
        let mut fields = Fields::default();
        if !self.hpack_failed {
            let decoded = self
                .decoder
                .decode(&self.block_buf, |name, value| fields.keep(name, value));
            if let Err(e) = decoded {
                self.hpack_failed = true;
                out.push((
                    ts_ns,
                    ProtoKind::H2ProtocolError {
                        detail: format!(
                            "HPACK: {e} (header block of {} bytes on stream {}); header fields are unknown from here on",
                            block.len, block.stream_id
                        ),
                    },
                ));
                // Fields decoded before the error may come from a table already out of step.
                fields = Fields::default();
                self.decoder = new_decoder();
            }
        }
        self.block_buf.clear();
        self.block_buf.shrink_to(KEEP_BLOCK_CAPACITY);
        if !block.push {
            out.push((ts_ns, fields.into_event(block.stream_id, block.end_stream)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use loona_hpack::Encoder;

    type Events = Vec<(i64, ProtoKind)>;

    fn frame(t: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("test payload fits");
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(t);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in entries {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(ty::SETTINGS, 0, 0, &p)
    }

    fn encode(enc: &mut Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn headers(stream_id: u32, end_stream: bool) -> ProtoKind {
        ProtoKind::H2Headers {
            stream_id,
            end_stream,
            method: None,
            path: None,
            authority: None,
            status: None,
            grpc_status: None,
            grpc_message: None,
        }
    }

    fn error_detail(kind: &ProtoKind) -> &str {
        match kind {
            ProtoKind::H2ProtocolError { detail } => detail,
            other => panic!("expected H2ProtocolError, got {other:?}"),
        }
    }

    fn run(expect_preface: bool, chunks: &[&[u8]]) -> (Events, H2Direction) {
        let mut d = H2Direction::new(expect_preface);
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            d.feed(i as i64, c, DEFAULT_MAX_FRAME_SIZE, &mut out);
        }
        (out, d)
    }

    fn kinds(events: &[(i64, ProtoKind)]) -> Vec<ProtoKind> {
        events.iter().map(|(_, k)| k.clone()).collect()
    }

    /// A client: preface, SETTINGS, GET /index (END_HEADERS), its DATA with END_STREAM, then a
    /// second request on stream 3 whose block is split over HEADERS + CONTINUATION, padded and
    /// with priority, and encoded against the dynamic table the first one filled.
    fn client_stream() -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut s = PREFACE.to_vec();
        s.extend(settings(&[
            (0x4, 65_535),
            (SETTINGS_MAX_FRAME_SIZE, 100),
            (SETTINGS_MAX_FRAME_SIZE, 32_768),
        ]));
        s.extend(frame(ty::WINDOW_UPDATE, 0, 0, &1_000_000u32.to_be_bytes()));
        let block = encode(
            &mut enc,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/index"),
                (":authority", "example.com"),
                ("x-client", "rstscope-test"),
            ],
        );
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &block));
        s.extend(frame(ty::DATA, flag::END_STREAM, 1, b"hello"));
        let block = encode(
            &mut enc,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/other"),
                (":authority", "example.com"),
                // Now indexed from the dynamic table the first request filled.
                ("x-client", "rstscope-test"),
            ],
        );
        let (a, b) = block.split_at(3);
        let mut p = vec![4u8]; // pad length
        p.extend_from_slice(&[0x80, 0, 0, 1, 200]); // exclusive dependency on stream 1, weight
        p.extend_from_slice(a);
        p.extend_from_slice(&[0; 4]);
        s.extend(frame(
            ty::HEADERS,
            flag::END_STREAM | flag::PADDED | flag::PRIORITY,
            3,
            &p,
        ));
        s.extend(frame(ty::CONTINUATION, flag::END_HEADERS, 3, b));
        s.extend(frame(ty::PRIORITY, 0, 3, &[0, 0, 0, 0, 16]));
        s
    }

    fn client_events() -> Vec<ProtoKind> {
        let request = |stream_id, end_stream, path: &str| ProtoKind::H2Headers {
            stream_id,
            end_stream,
            method: Some("GET".into()),
            path: Some(path.into()),
            authority: Some("example.com".into()),
            status: None,
            grpc_status: None,
            grpc_message: None,
        };
        vec![
            ProtoKind::H2Preface,
            ProtoKind::H2Settings { ack: false },
            request(1, false, "/index"),
            ProtoKind::H2DataEnd { stream_id: 1 },
            request(3, true, "/other"),
        ]
    }

    /// A server: SETTINGS, SETTINGS ACK, :status 200, DATA, gRPC trailers, PING, an unknown
    /// frame type, a padded DATA that ends stream 5, RST_STREAM, GOAWAY.
    fn server_stream() -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut s = settings(&[(0x3, 100)]);
        s.extend(frame(ty::SETTINGS, flag::ACK, 0, &[]));
        let block = encode(
            &mut enc,
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &block));
        s.extend(frame(ty::DATA, 0, 1, &[7; 100]));
        s.extend(frame(ty::PING, 0, 0, &[1; 8]));
        s.extend(frame(0xfa, 0xff, 9, b"extension"));
        let block = encode(&mut enc, &[("grpc-status", "0"), ("grpc-message", "OK")]);
        s.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block,
        ));
        let mut p = vec![3u8];
        p.extend_from_slice(b"abcd\0\0\0");
        s.extend(frame(ty::DATA, flag::END_STREAM | flag::PADDED, 5, &p));
        s.extend(frame(ty::RST_STREAM, 0, 3, &7u32.to_be_bytes()));
        let mut p = 5u32.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(b"graceful_stop");
        s.extend(frame(ty::GOAWAY, 0, 0, &p));
        s
    }

    fn server_events() -> Vec<ProtoKind> {
        vec![
            ProtoKind::H2Settings { ack: false },
            ProtoKind::H2Settings { ack: true },
            ProtoKind::H2Headers {
                stream_id: 1,
                end_stream: false,
                method: None,
                path: None,
                authority: None,
                status: Some(200),
                grpc_status: None,
                grpc_message: None,
            },
            ProtoKind::H2Headers {
                stream_id: 1,
                end_stream: true,
                method: None,
                path: None,
                authority: None,
                status: None,
                grpc_status: Some(0),
                grpc_message: Some("OK".into()),
            },
            ProtoKind::H2DataEnd { stream_id: 5 },
            ProtoKind::H2RstStream {
                stream_id: 3,
                error_code: 7,
            },
            ProtoKind::H2GoAway {
                last_stream_id: 5,
                error_code: 0,
                debug_data: "graceful_stop".into(),
            },
        ]
    }

    #[test]
    fn client_stream_events() {
        let (out, d) = run(true, &[&client_stream()]);
        assert_eq!(kinds(&out), client_events());
        assert!(!d.stopped());
        assert_eq!(
            d.announced_max_frame_size(),
            32_768,
            "the valid MAX_FRAME_SIZE wins, 100 is ignored"
        );
        assert_eq!(
            d.counters(),
            H2Counters {
                frames: 7,
                data_frames: 1,
                data_bytes: 5,
                headers_frames: 2,
                pings: 0,
                window_updates: 1,
                unknown_frames: 0
            }
        );
    }

    #[test]
    fn server_stream_events() {
        let (out, d) = run(false, &[&server_stream()]);
        assert_eq!(kinds(&out), server_events());
        assert!(!d.stopped());
        assert_eq!(d.announced_max_frame_size(), DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(
            d.counters(),
            H2Counters {
                frames: 10,
                data_frames: 2,
                data_bytes: 104,
                headers_frames: 2,
                pings: 1,
                window_updates: 0,
                unknown_frames: 1
            }
        );
    }

    /// Cutting the stream anywhere, once or at every byte, changes nothing but timestamps.
    #[test]
    fn any_cut_gives_the_same_events() {
        for (expect_preface, stream, expected) in [
            (true, client_stream(), client_events()),
            (false, server_stream(), server_events()),
        ] {
            let whole = run(expect_preface, &[&stream]).1.counters();
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                let (out, d) = run(expect_preface, &[a, b]);
                assert_eq!(kinds(&out), expected, "cut at {cut}");
                assert_eq!(d.counters(), whole, "cut at {cut}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            let (out, d) = run(expect_preface, &bytes);
            assert_eq!(kinds(&out), expected, "byte by byte");
            assert_eq!(d.counters(), whole, "byte by byte");
        }
    }

    #[test]
    fn event_takes_the_time_of_the_chunk_that_completed_it() {
        let mut s = settings(&[]);
        s.extend(frame(ty::RST_STREAM, 0, 1, &8u32.to_be_bytes()));
        // Chunk 0 ends inside the RST_STREAM header; chunk 1 is empty; chunk 2 completes it.
        let (out, _) = run(false, &[&s[..12], &[], &s[12..]]);
        assert_eq!(
            out,
            vec![
                (0, ProtoKind::H2Settings { ack: false }),
                (
                    2,
                    ProtoKind::H2RstStream {
                        stream_id: 1,
                        error_code: 8
                    }
                )
            ]
        );
    }

    #[test]
    fn preface_split_and_mismatch() {
        let (out, d) = run(true, &[&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..]]);
        assert_eq!(out, vec![(2, ProtoKind::H2Preface)]);
        assert!(!d.stopped());

        let (out, d) = run(true, &[b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"]);
        assert_eq!(kinds(&out).len(), 1);
        assert_eq!(
            error_detail(&out[0].1),
            "no connection preface: GET / HTTP/1.1\\r\\nHost: example.co"
        );
        assert!(d.stopped());

        // The mismatch shows the matched part too, even when it came in an earlier chunk.
        let (out, _) = run(true, &[b"PRI * HTTP/2.0\r\n", b"\r\nXX"]);
        assert_eq!(
            error_detail(&out[0].1),
            "no connection preface: PRI * HTTP/2.0\\r\\n\\r\\nXX"
        );
    }

    #[test]
    fn first_frame_must_be_settings() {
        let (out, d) = run(false, &[b"HTTP/1.1 400 Bad Request\r\n\r\n"]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            error_detail(&out[0].1),
            "the first frame is type 0x50, not SETTINGS (RFC 9113 §3.4); its header bytes: HTTP/1.1 "
        );
        assert!(d.stopped());
    }

    /// Runs a server stream made of an empty SETTINGS then `rest`; expects `prior` events and
    /// then exactly one protocol error, and returns its detail.
    fn single_error(rest: &[u8], peer_max: u32, prior: usize) -> String {
        let mut s = settings(&[]);
        s.extend_from_slice(rest);
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &s, peer_max, &mut out);
        // Nothing more comes out once stopped.
        d.feed(1, &frame(ty::RST_STREAM, 0, 1, &[0; 4]), peer_max, &mut out);
        d.gap(2, 10, &mut out);
        assert!(d.stopped());
        assert_eq!(out.len(), 2 + prior, "{out:?}");
        error_detail(&out[1 + prior].1).to_string()
    }

    #[test]
    fn frame_longer_than_max_frame_size() {
        let head = [0xff, 0xff, 0xff, ty::DATA, 0, 0, 0, 0, 1];
        let detail = single_error(&head, DEFAULT_MAX_FRAME_SIZE, 0);
        assert!(
            detail
                .starts_with("DATA frame of 16777215 bytes exceeds SETTINGS_MAX_FRAME_SIZE 16384"),
            "{detail}"
        );
        // The same header is fine, up to its payload, once the peer allowed 16 MiB frames.
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), MAX_MAX_FRAME_SIZE, &mut out);
        d.feed(0, &head, MAX_MAX_FRAME_SIZE, &mut out);
        d.feed(0, &[0; 1000], MAX_MAX_FRAME_SIZE, &mut out);
        assert!(!d.stopped());
        assert_eq!(d.counters().data_bytes, 1000);
    }

    #[test]
    fn malformed_fixed_size_frames() {
        let detail = single_error(
            &frame(ty::RST_STREAM, 0, 1, &[0; 5]),
            DEFAULT_MAX_FRAME_SIZE,
            0,
        );
        assert_eq!(
            detail,
            "RST_STREAM frame on stream 1 has an invalid length of 5 bytes (RFC 9113 §6)"
        );
        let detail = single_error(&frame(ty::GOAWAY, 0, 0, &[0; 3]), DEFAULT_MAX_FRAME_SIZE, 0);
        assert_eq!(
            detail,
            "GOAWAY frame on stream 0 has an invalid length of 3 bytes (RFC 9113 §6)"
        );
        let detail = single_error(
            &frame(ty::SETTINGS, 0, 0, &[0; 7]),
            DEFAULT_MAX_FRAME_SIZE,
            0,
        );
        assert!(
            detail.starts_with("SETTINGS frame on stream 0 has an invalid length of 7"),
            "{detail}"
        );
        let detail = single_error(
            &frame(ty::SETTINGS, flag::ACK, 0, &[0; 6]),
            DEFAULT_MAX_FRAME_SIZE,
            0,
        );
        assert!(detail.starts_with("SETTINGS ACK frame"), "{detail}");
        let detail = single_error(&frame(ty::PING, 0, 0, &[0; 7]), DEFAULT_MAX_FRAME_SIZE, 0);
        assert!(detail.starts_with("PING frame"), "{detail}");
        let detail = single_error(&frame(ty::DATA, 0, 0, b"x"), DEFAULT_MAX_FRAME_SIZE, 0);
        assert_eq!(detail, "DATA frame on stream 0 (RFC 9113 §6)");
        let detail = single_error(&frame(ty::GOAWAY, 0, 1, &[0; 8]), DEFAULT_MAX_FRAME_SIZE, 0);
        assert_eq!(detail, "GOAWAY frame on stream 1, not 0 (RFC 9113 §6)");
        // PRIORITY of a wrong length is a stream error only: no event, the walk goes on.
        let (out, d) = run(
            false,
            &[&settings(&[]), &frame(ty::PRIORITY, 0, 1, &[0; 3])],
        );
        assert_eq!(out.len(), 1);
        assert!(!d.stopped());
    }

    #[test]
    fn padding_that_lies() {
        // Pad length 10 in a 5-byte HEADERS payload.
        let detail = single_error(
            &frame(
                ty::HEADERS,
                flag::PADDED | flag::END_HEADERS,
                1,
                &[10, 0x82, 0, 0, 0],
            ),
            16_384,
            0,
        );
        assert_eq!(
            detail,
            "HEADERS frame on stream 1: 10 bytes of padding do not fit its 5-byte payload"
        );
        // PRIORITY flag but only 3 bytes.
        let detail = single_error(
            &frame(
                ty::HEADERS,
                flag::PRIORITY | flag::END_HEADERS,
                1,
                &[0, 0, 0],
            ),
            16_384,
            0,
        );
        assert!(detail.contains("invalid length of 3"), "{detail}");
        // PADDED DATA with nothing to hold the pad length.
        let detail = single_error(&frame(ty::DATA, flag::PADDED, 1, &[]), 16_384, 0);
        assert!(detail.contains("invalid length of 0"), "{detail}");
        // Padding as long as the payload is an error (§6.1)...
        let detail = single_error(&frame(ty::DATA, flag::PADDED, 1, &[3, 0, 0]), 16_384, 0);
        assert!(detail.contains("3 bytes of padding"), "{detail}");
        // ...one byte shorter leaves an empty body, which is fine.
        let (out, d) = run(
            false,
            &[
                &settings(&[]),
                &frame(ty::DATA, flag::PADDED | flag::END_STREAM, 1, &[2, 0, 0]),
            ],
        );
        assert_eq!(kinds(&out)[1], ProtoKind::H2DataEnd { stream_id: 1 });
        assert!(!d.stopped());
        assert_eq!(d.counters().data_bytes, 0);
    }

    #[test]
    fn header_block_interleaving() {
        let open = frame(ty::HEADERS, 0, 1, &[0x82]);
        let mut s = open.clone();
        s.extend(frame(ty::DATA, 0, 1, b"x"));
        let detail = single_error(&s, 16_384, 0);
        assert!(
            detail.starts_with("DATA frame on stream 1 inside the header block of stream 1"),
            "{detail}"
        );
        let mut s = open.clone();
        s.extend(frame(ty::CONTINUATION, flag::END_HEADERS, 3, &[0x84]));
        let detail = single_error(&s, 16_384, 0);
        assert!(
            detail
                .starts_with("CONTINUATION frame on stream 3 inside the header block of stream 1"),
            "{detail}"
        );
        let detail = single_error(
            &frame(ty::CONTINUATION, flag::END_HEADERS, 1, &[0x84]),
            16_384,
            0,
        );
        assert_eq!(
            detail,
            "CONTINUATION frame on stream 1 with no open header block (RFC 9113 §6.10)"
        );
        // After a completed block, CONTINUATION is out of place again.
        let mut s = frame(ty::HEADERS, flag::END_HEADERS, 1, &[0x82]);
        s.extend(frame(ty::CONTINUATION, flag::END_HEADERS, 1, &[0x84]));
        let detail = single_error(&s, 16_384, 1);
        assert!(detail.contains("no open header block"), "{detail}");
    }

    #[test]
    fn hpack_garbage_reports_once_and_walks_on() {
        let mut enc = Encoder::new();
        let mut s = settings(&[]);
        // A size update whose integer runs past 5 octets.
        s.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS,
            1,
            &[0x3f, 0xff, 0xff, 0xff, 0xff],
        ));
        s.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &encode(&mut enc, &[(":status", "200")]),
        ));
        s.extend(frame(ty::RST_STREAM, 0, 3, &2u32.to_be_bytes()));
        let (out, d) = run(false, &[&s]);
        let k = kinds(&out);
        assert_eq!(k.len(), 5, "{k:?}");
        assert_eq!(k[0], ProtoKind::H2Settings { ack: false });
        assert!(error_detail(&k[1]).starts_with("HPACK: "), "{k:?}");
        assert_eq!(k[2], headers(1, false));
        assert_eq!(
            k[3],
            headers(3, true),
            "fields stay unknown after an HPACK failure"
        );
        assert_eq!(
            k[4],
            ProtoKind::H2RstStream {
                stream_id: 3,
                error_code: 2
            }
        );
        assert!(!d.stopped());
        assert!(d.block_buf.capacity() == 0 || d.block_buf.is_empty());
    }

    #[test]
    fn hpack_failures() {
        let one = |block: &[u8]| {
            let mut s = settings(&[]);
            s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, block));
            let (out, _) = run(false, &[&s]);
            assert_eq!(out.len(), 3, "{out:?}");
            error_detail(&out[1].1).to_string()
        };
        // Index 70 with an empty dynamic table.
        assert!(one(&[0x80 | 70]).contains("index out of bounds"));
        // A dynamic table size update past our cap (RFC 7541 §6.3): 0x3f then 2^17 - 31.
        let d = one(&[0x3f, 0xe1, 0xff, 0x07, 0x82]);
        assert!(d.contains("Dynamic table size exceeds"), "{d}");
        // A literal whose length runs past the block.
        assert!(one(&[0x00, 0x05, b'a']).starts_with("HPACK: "));
        // EOS inside a Huffman string.
        assert!(one(&[0x00, 0x81, 0x61, 0x84, 0xff, 0xff, 0xff, 0xff]).starts_with("HPACK: "));
    }

    #[test]
    fn push_promise_keeps_the_dynamic_table_in_step() {
        let mut enc = Encoder::new();
        let mut s = settings(&[]);
        // The promised request adds a field to the dynamic table (names in the static table
        // are never added by this encoder, grpc-message is not one of them)...
        let promised = encode(
            &mut enc,
            &[
                (":method", "GET"),
                (":path", "/pushed.css"),
                ("grpc-message", "pushed"),
            ],
        );
        let mut p = vec![1u8, 0, 0, 0, 2];
        p.extend_from_slice(&promised);
        p.push(0);
        s.extend(frame(
            ty::PUSH_PROMISE,
            flag::END_HEADERS | flag::PADDED,
            1,
            &p,
        ));
        // ...which the next block refers to by index.
        let block = encode(&mut enc, &[(":status", "200"), ("grpc-message", "pushed")]);
        assert_eq!(
            block.last(),
            Some(&(0x80 | 62)),
            "the response refers to the dynamic table"
        );
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 2, &block));
        let (out, _) = run(false, &[&s]);
        let k = kinds(&out);
        assert_eq!(k.len(), 2, "no event for PUSH_PROMISE: {k:?}");
        assert_eq!(
            k[1],
            ProtoKind::H2Headers {
                stream_id: 2,
                end_stream: false,
                method: None,
                path: None,
                authority: None,
                status: Some(200),
                grpc_status: None,
                grpc_message: Some("pushed".into()),
            }
        );
    }

    #[test]
    fn field_values_are_truncated_and_lossy() {
        let mut enc = Encoder::new();
        let long = "a".repeat(5000);
        let mut block = encode(&mut enc, &[(":path", &long), ("host", "fallback.example")]);
        // grpc-message with invalid UTF-8, as a literal without indexing.
        block.extend_from_slice(&[0x00, 12]);
        block.extend_from_slice(b"grpc-message");
        block.extend_from_slice(&[3, b'o', 0xff, b'k']);
        let mut s = settings(&[]);
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &block));
        let (out, _) = run(false, &[&s]);
        match &out[1].1 {
            ProtoKind::H2Headers {
                path,
                authority,
                grpc_message,
                ..
            } => {
                assert_eq!(path.as_deref(), Some(&long[..MAX_FIELD]));
                assert_eq!(authority.as_deref(), Some("fallback.example"));
                assert_eq!(grpc_message.as_deref(), Some("o\u{fffd}k"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn goaway_debug_data_is_capped() {
        let mut p = 0x8000_0007u32.to_be_bytes().to_vec(); // the reserved bit is ignored
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend(std::iter::repeat_n(b'z', 10_000));
        let mut s = settings(&[]);
        s.extend(frame(ty::GOAWAY, 0, 0, &p));
        let (out, d) = run(false, &[&s]);
        assert_eq!(
            kinds(&out)[1],
            ProtoKind::H2GoAway {
                last_stream_id: 7,
                error_code: 2,
                debug_data: "z".repeat(MAX_GOAWAY_DEBUG)
            }
        );
        assert_eq!(d.goaway_debug.capacity(), 0);
    }

    /// 16 MiB of CONTINUATIONs: stops at the cap, never holding more than the cap.
    #[test]
    fn huge_header_block_stops_at_the_cap() {
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), DEFAULT_MAX_FRAME_SIZE, &mut out);
        d.feed(
            1,
            &frame(ty::HEADERS, 0, 1, &[0x82]),
            DEFAULT_MAX_FRAME_SIZE,
            &mut out,
        );
        let cont = frame(ty::CONTINUATION, 0, 1, &[0x82; 16_384]);
        for i in 0..1024 {
            d.feed(2 + i, &cont, DEFAULT_MAX_FRAME_SIZE, &mut out);
            assert!(d.block_buf.capacity() <= MAX_HEADER_BLOCK);
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            error_detail(&out[1].1),
            "header block larger than 65536 bytes"
        );
        assert_eq!(out[1].0, 2 + 3, "the 4th CONTINUATION crosses 64 KiB");
        assert!(d.stopped());
        assert_eq!(d.block_buf.capacity(), 0);

        // Tiny CONTINUATIONs hit the same cap.
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), DEFAULT_MAX_FRAME_SIZE, &mut out);
        d.feed(
            1,
            &frame(ty::HEADERS, 0, 1, &[]),
            DEFAULT_MAX_FRAME_SIZE,
            &mut out,
        );
        let cont = frame(ty::CONTINUATION, 0, 1, &[0x82]);
        for _ in 0..70_000 {
            d.feed(2, &cont, DEFAULT_MAX_FRAME_SIZE, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(
            error_detail(&out[1].1),
            "header block larger than 65536 bytes"
        );
    }

    /// Issue 9: a header block that never ends, one byte per CONTINUATION. The buffer grows by
    /// doubling (a handful of reallocations, not one per frame: no quadratic copying), stays
    /// within the cap, and the overflow is reported once.
    #[test]
    fn endless_continuations_grow_linearly_and_stop_once() {
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), DEFAULT_MAX_FRAME_SIZE, &mut out);
        d.feed(
            1,
            &frame(ty::HEADERS, 0, 1, &[]),
            DEFAULT_MAX_FRAME_SIZE,
            &mut out,
        );
        let cont = frame(ty::CONTINUATION, 0, 1, &[0x82]);
        let mut capacities = vec![d.block_buf.capacity()];
        for _ in 0..100_000 {
            d.feed(2, &cont, DEFAULT_MAX_FRAME_SIZE, &mut out);
            if capacities.last() != Some(&d.block_buf.capacity()) {
                capacities.push(d.block_buf.capacity());
            }
        }
        assert!(capacities.len() <= 20, "{capacities:?}");
        assert!(
            capacities.iter().all(|&c| c <= MAX_HEADER_BLOCK),
            "{capacities:?}"
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            error_detail(&out[1].1),
            "header block larger than 65536 bytes"
        );
        assert!(d.stopped());
    }

    /// Issue 9: after an HPACK failure blocks are no longer kept, but their length still
    /// counts, so an endless block is still cut at the cap.
    #[test]
    fn endless_block_after_hpack_failure_is_still_capped() {
        let mut s = settings(&[]);
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &[0x80]));
        s.extend(frame(ty::HEADERS, 0, 3, &[0x82; 1000]));
        let cont = frame(ty::CONTINUATION, 0, 3, &[0x82; 16_000]);
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &s, DEFAULT_MAX_FRAME_SIZE, &mut out);
        let kept = d.block_buf.capacity();
        assert!(kept <= KEEP_BLOCK_CAPACITY);
        for _ in 0..10 {
            d.feed(1, &cont, DEFAULT_MAX_FRAME_SIZE, &mut out);
            assert!(d.block_buf.is_empty(), "nothing is kept after a failure");
            assert!(d.block_buf.capacity() <= kept);
        }
        let k = kinds(&out);
        assert_eq!(k.len(), 4, "{k:?}");
        assert!(error_detail(&k[1]).starts_with("HPACK: Indexed field with index 0"));
        assert_eq!(k[2], headers(1, false));
        assert_eq!(error_detail(&k[3]), "header block larger than 65536 bytes");
    }

    /// Issue 9: frame lengths up to 2^24 - 1. Past the peer's SETTINGS_MAX_FRAME_SIZE it is a
    /// protocol error even inside a header block, before any payload is read; within a
    /// raised limit, a 16 MiB HEADERS frame is cut at the header block cap.
    #[test]
    fn huge_header_frames() {
        let mut open = frame(ty::HEADERS, 0, 1, &[0x82]);
        open.extend_from_slice(&[0xff, 0xff, 0xff, ty::CONTINUATION, 0, 0, 0, 0, 1]);
        let detail = single_error(&open, DEFAULT_MAX_FRAME_SIZE, 0);
        assert!(
            detail.starts_with(
                "CONTINUATION frame of 16777215 bytes exceeds SETTINGS_MAX_FRAME_SIZE 16384"
            ),
            "{detail}"
        );
        let detail = single_error(
            &[0x00, 0x40, 0x01, ty::HEADERS, flag::END_HEADERS, 0, 0, 0, 1],
            DEFAULT_MAX_FRAME_SIZE,
            0,
        );
        assert!(
            detail.starts_with("HEADERS frame of 16385 bytes exceeds"),
            "{detail}"
        );

        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), MAX_MAX_FRAME_SIZE, &mut out);
        d.feed(
            1,
            &[0xff, 0xff, 0xff, ty::HEADERS, flag::END_HEADERS, 0, 0, 0, 1],
            MAX_MAX_FRAME_SIZE,
            &mut out,
        );
        let chunk = [0x82u8; 10_000];
        for i in 0..100 {
            d.feed(2 + i, &chunk, MAX_MAX_FRAME_SIZE, &mut out);
            assert!(d.block_buf.capacity() <= MAX_HEADER_BLOCK);
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            error_detail(&out[1].1),
            "header block larger than 65536 bytes"
        );
        assert_eq!(out[1].0, 2 + 6, "the 7th chunk crosses 64 KiB");
        assert!(d.stopped());
    }

    /// A block that references a large dynamic table entry over and over decodes to more than
    /// MAX_HEADER_LIST_SIZE: an HPACK error, reported once, and the walk goes on.
    #[test]
    fn header_list_past_the_cap_is_an_hpack_error() {
        // A 32 KiB table (size update: 31 + 97 + 127 * 128 + 1 * 16384), then grpc-message (a
        // literal name) with a 16,000-byte value (127 + 1 + 124 * 128), added to the table.
        let mut block = vec![0x3f, 0xe1, 0xff, 0x01, 0x40, 12];
        block.extend_from_slice(b"grpc-message");
        block.extend_from_slice(&[0x7f, 0x81, 0x7c]);
        block.extend(std::iter::repeat_n(b'm', 16_000));
        let mut s = settings(&[]);
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &block));
        // 300 references to it: 4.8 MB (16,044 bytes each, RFC 9113 §6.5.2) from 300 bytes.
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 3, &[0x80 | 62; 300]));
        s.extend(frame(ty::HEADERS, flag::END_HEADERS, 5, &[0x88]));
        let (out, d) = run(false, &[&s]);
        let k = kinds(&out);
        assert_eq!(k.len(), 5, "{k:?}");
        assert!(
            matches!(&k[1], ProtoKind::H2Headers { grpc_message: Some(m), .. } if m.len() == MAX_FIELD)
        );
        let detail = error_detail(&k[2]);
        assert!(
            detail.starts_with("HPACK: Decoded header list larger than 4194304 bytes"),
            "{detail}"
        );
        assert!(
            detail.contains("(header block of 300 bytes on stream 3)"),
            "{detail}"
        );
        assert_eq!(k[3], headers(3, false));
        assert_eq!(
            k[4],
            headers(5, false),
            "fields stay unknown after an HPACK failure"
        );
        assert!(!d.stopped());
    }

    /// A Huffman-coded response head decodes through the frame walk.
    #[test]
    fn huffman_fields_decode() {
        use crate::detect::hpack::huffman_encode;
        let mut block = vec![0x08]; // :status (static name 8), literal without indexing
        let status = huffman_encode(b"503");
        block.push(0x80 | status.len() as u8);
        block.extend_from_slice(&status);
        let name = huffman_encode(b"grpc-status");
        block.extend_from_slice(&[0x00, 0x80 | name.len() as u8]); // new name, Huffman
        block.extend_from_slice(&name);
        let value = huffman_encode(b"14");
        block.push(0x80 | value.len() as u8);
        block.extend_from_slice(&value);
        let mut s = settings(&[]);
        s.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block,
        ));
        let (out, _) = run(false, &[&s]);
        assert_eq!(
            kinds(&out)[1],
            ProtoKind::H2Headers {
                stream_id: 1,
                end_stream: true,
                method: None,
                path: None,
                authority: None,
                status: Some(503),
                grpc_status: Some(14),
                grpc_message: None,
            }
        );
    }

    #[test]
    fn block_at_the_cap_decodes() {
        // Exactly 64 KiB of indexed ":method GET" fields in 4 frames: allowed.
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), DEFAULT_MAX_FRAME_SIZE, &mut out);
        d.feed(
            0,
            &frame(ty::HEADERS, 0, 1, &[0x82; 16_384]),
            DEFAULT_MAX_FRAME_SIZE,
            &mut out,
        );
        for last in [false, false, true] {
            let flags = if last { flag::END_HEADERS } else { 0 };
            d.feed(
                0,
                &frame(ty::CONTINUATION, flags, 1, &[0x82; 16_384]),
                DEFAULT_MAX_FRAME_SIZE,
                &mut out,
            );
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[1].1, ProtoKind::H2Headers { method: Some(m), .. } if m == "GET"));
        assert!(d.block_buf.capacity() <= KEEP_BLOCK_CAPACITY);
    }

    #[test]
    fn gap_stops_with_one_event() {
        let s = client_stream();
        let mut d = H2Direction::new(true);
        let mut out = Vec::new();
        d.feed(0, &s[..40], DEFAULT_MAX_FRAME_SIZE, &mut out);
        let before = out.len();
        d.gap(1, 1460, &mut out);
        d.gap(2, 1460, &mut out);
        d.feed(3, &s[40..], DEFAULT_MAX_FRAME_SIZE, &mut out);
        assert!(d.stopped());
        assert_eq!(out.len(), before + 1);
        assert_eq!(out[before].0, 1);
        assert!(error_detail(&out[before].1).starts_with("capture gap"));
        // An empty gap is no gap.
        let mut d = H2Direction::new(true);
        d.gap(0, 0, &mut out);
        assert!(!d.stopped());
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Feeds `s` in random chunks; checks the error-once and stop invariants.
    fn feed_randomly(rng: &mut XorShift, expect_preface: bool, s: &[u8]) {
        let mut d = H2Direction::new(expect_preface);
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let n = rng.below(64) + 1;
            let part = take(&mut rest, n);
            d.feed(0, part, DEFAULT_MAX_FRAME_SIZE, &mut out);
            assert!(d.block_buf.capacity() <= MAX_HEADER_BLOCK);
            assert!(d.goaway_debug.len() <= MAX_GOAWAY_DEBUG);
        }
        let errors = out
            .iter()
            .filter(|(_, k)| matches!(k, ProtoKind::H2ProtocolError { .. }))
            .count();
        let hpack = out
            .iter()
            .filter(|(_, k)| {
                matches!(k, ProtoKind::H2ProtocolError { detail } if detail.starts_with("HPACK"))
            })
            .count();
        assert!(hpack <= 1 && errors <= 2, "{out:?}");
        if d.stopped() {
            assert!(matches!(
                out.last(),
                Some((_, ProtoKind::H2ProtocolError { .. }))
            ));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..1000 {
            // Raw noise after the preface...
            let mut s = PREFACE.to_vec();
            let n = rng.below(2000);
            s.extend(rng.bytes(n));
            feed_randomly(&mut rng, true, &s);

            // ...and noise shaped as frames, so payload parsers and HPACK see it too.
            let mut s = settings(&[]);
            for _ in 0..rng.below(20) {
                let t = rng.below(12) as u8;
                let flags = rng.next() as u8;
                let stream = (rng.below(4)) as u32;
                let len = rng.below(40);
                let payload = rng.bytes(len);
                s.extend(frame(t, flags, stream, &payload));
            }
            feed_randomly(&mut rng, false, &s);
        }
    }

    #[test]
    fn random_hpack_blocks_never_panic() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut enc = Encoder::new();
        let mut d = H2Direction::new(false);
        let mut out = Vec::new();
        d.feed(0, &settings(&[]), DEFAULT_MAX_FRAME_SIZE, &mut out);
        for i in 0..1000 {
            let mut block = encode(&mut enc, &[(":status", "200"), ("x-n", &i.to_string())]);
            // Flip a few bits in some blocks.
            if rng.below(4) == 0 {
                for _ in 0..3 {
                    let at = rng.below(block.len() as u64);
                    if let Some(b) = block.get_mut(at) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            d.feed(
                1,
                &frame(ty::HEADERS, flag::END_HEADERS, 1, &block),
                DEFAULT_MAX_FRAME_SIZE,
                &mut out,
            );
        }
        assert!(!d.stopped());
    }

    #[test]
    fn direction_is_send() {
        fn is_send<T: Send>() {}
        is_send::<H2Direction>();
    }
}
