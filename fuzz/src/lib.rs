//! Fuzzing harnesses for rstscope: one function per fuzz target, each taking the bytes
//! libFuzzer made and driving one stage of the library through its public API, plus the
//! encoders that turn the captures in `samples/` into seed inputs of the same formats.
//!
//! `tests/fuzz_regressions.rs` includes this file as a module, so a saved input replays
//! through exactly the code the fuzzer ran, on the stable toolchain.
//!
//! Every harness must return normally on any input: a panic is a finding. Besides the
//! library's own panics, the harnesses assert what the library promises and what is cheap to
//! check: a stream's chunks are contiguous and add up to its counters, JSON output parses,
//! a reader never reports more bytes read than the file holds.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rstscope::capture::{CaptureReader, Frame, Input, InputSource, LinkType, sniff_path};
use rstscope::classify::classify;
use rstscope::decode::{Decoded, Decoder};
use rstscope::detect::Detector;
use rstscope::detect::event::ProtoKind;
use rstscope::detect::http1::Http1;
use rstscope::detect::http2::H2Direction;
use rstscope::detect::tls::TlsDirection;
use rstscope::flow::{
    Chunk, ConnectionRecord, FlowConfig, GapCause, Reassembler, Side, StreamHandler,
};
use rstscope::pipeline::analyze;
use rstscope::report::verdicts::{self, Findings, Judged, Style};
use rstscope::report::{explain, flows};
use rstscope::stats;

/// Capture time of the first event of a generated input (any fixed time would do).
const START_NS: i64 = 1_700_000_000_000_000_000;
const MS: i64 = 1_000_000;

/// Reads the fields of a generated input; past its end every field reads as zero and every
/// slice as empty, so any byte string is a valid input.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Fields { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    fn uint(&mut self, width: usize) -> u32 {
        self.take(width)
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    }

    fn u8(&mut self) -> u8 {
        self.uint(1) as u8
    }

    fn u16(&mut self) -> u16 {
        self.uint(2) as u16
    }

    fn u24(&mut self) -> u32 {
        self.uint(3)
    }

    fn u32(&mut self) -> u32 {
        self.uint(4)
    }
}

/// Writes `data` to a fresh file on tmpfs (when there is one), runs `f` on it as an input,
/// and removes the file. The library reads captures from files or stdin only, and a file is
/// what users give it.
fn with_capture_file<T>(data: &[u8], f: impl FnOnce(&Input, &Path) -> T) -> T {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path: PathBuf = dir.join(format!(
        "rstscope-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data).expect("the harness cannot write its temporary capture file");
    let input = Input {
        display: "fuzz-input".into(),
        source: InputSource::File(path.clone()),
    };
    let out = f(&input, &path);
    // A leftover file only wastes a little tmpfs; failing to remove it is no finding.
    let _ = std::fs::remove_file(&path);
    out
}

// ---------------------------------------------------------------------------------------
// capture_reader: the bytes are a capture file (possibly gzip or zstd compressed).

/// Opens the bytes as a capture file, reads every frame, then counts them through the
/// `stats` path and writes its text and JSON reports.
pub fn capture_reader(data: &[u8]) {
    with_capture_file(data, |input, path| {
        let _ = sniff_path(path);
        match CaptureReader::open(&input.source) {
            Ok(mut reader) => {
                let mut previous_offset = None;
                loop {
                    match reader.next_frame() {
                        Ok(Some(frame)) => {
                            // Records follow each other in the input: offsets only grow.
                            if let Some(previous) = previous_offset {
                                assert!(
                                    frame.offset > previous,
                                    "frame offset {} after {previous}",
                                    frame.offset
                                );
                            }
                            previous_offset = Some(frame.offset);
                            std::hint::black_box((frame.bytes_cut(), frame.link_type.name()));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            std::hint::black_box(e.to_string());
                            break;
                        }
                    }
                }
                assert!(
                    reader.bytes_read() <= data.len() as u64,
                    "read {} bytes of a {}-byte file",
                    reader.bytes_read(),
                    data.len()
                );
                assert!(reader.faults().len() as u64 <= reader.fault_count());
                for fault in reader.faults() {
                    std::hint::black_box(fault.to_string());
                }
                std::hint::black_box((reader.format(), reader.offset()));
            }
            Err(e) => {
                std::hint::black_box(e.to_string());
            }
        }
        let counted = stats::collect(input, 1);
        // The same bytes read in chunks by two threads (the split reader's walk and its
        // faults): no panic, whatever they hold. Its counts may differ on corrupt input (a
        // record length above the snaplen is refused wherever it lies), so they are not
        // compared here; tests/split.rs compares them on real captures.
        std::hint::black_box(rstscope::pipeline::count_in_chunks_of(input, 2, 97));
        stats::write_text(&mut io::sink(), &counted).expect("writing to a sink cannot fail");
        let json = serde_json::to_vec(&counted).expect("input stats serialize");
        serde_json::from_slice::<serde_json::Value>(&json).expect("input stats JSON parses");
    });
}

// ---------------------------------------------------------------------------------------
// decode_packet: a link type selector, then frames.

/// The link types a `decode_packet` input selects from with its first byte (modulo the
/// length): every one the decoder reads, and one it does not.
pub const LINK_TYPES: [LinkType; 11] = [
    LinkType::NULL,
    LinkType::ETHERNET,
    LinkType::RAW_12,
    LinkType::RAW_14,
    LinkType::RAW,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::LINUX_SLL2,
    LinkType(147),
];

/// The selector byte of a link type, if the harness knows it.
pub fn link_selector(link: LinkType) -> Option<u8> {
    LINK_TYPES.iter().position(|&l| l == link).map(|i| i as u8)
}

/// Appends one frame to a `decode_packet` input: its length (u16), the time since the
/// previous frame in tenths of a second (u8), the bytes the snaplen cut (u8), its bytes.
pub fn encode_frame(out: &mut Vec<u8>, bytes: &[u8], tenths: u8, cut: u8) {
    let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.push(tenths);
    out.push(cut);
    out.extend_from_slice(bytes);
}

/// Decodes a sequence of frames of one link type with one decoder, so that IP fragments
/// of several frames meet in its reassembly.
pub fn decode_packet(data: &[u8]) {
    let mut fields = Fields::new(data);
    let link_type = LINK_TYPES[usize::from(fields.u8()) % LINK_TYPES.len()];
    let mut decoder = Decoder::new();
    let mut ts_ns = START_NS;
    let mut offset = 0u64;
    while !fields.is_empty() {
        let len = fields.u16();
        ts_ns += i64::from(fields.u8()) * 100 * MS;
        let cut = fields.u8();
        let bytes = fields.take(usize::from(len));
        let frame = Frame {
            ts_ns,
            link_type,
            data: bytes,
            orig_len: bytes.len() as u32 + u32::from(cut),
            offset,
        };
        offset += 4 + bytes.len() as u64;
        match decoder.decode(&frame) {
            Decoded::Tcp(p) => {
                std::hint::black_box((p.bytes_missing(), p.payload.len(), p.options.len()));
            }
            other => {
                std::hint::black_box(format!("{other:?}"));
            }
        }
    }
    std::hint::black_box(decoder.fragments_expired());
}

// ---------------------------------------------------------------------------------------
// detect_*: both directions of a connection's stream, as data chunks, gaps and FINs.

/// One step of a connection's two streams, as the connection engine hands them on.
#[derive(Debug, Clone, Copy)]
enum StreamOp<'a> {
    Data(Side, &'a [u8]),
    Gap(Side, u64),
    Fin(Side),
}

const OP_DATA: u8 = 0;
const OP_DATA_SHORT: u8 = 1;
const OP_GAP: u8 = 2;
const OP_FIN: u8 = 3;

/// The op byte: bit 0 the side (server when set), bits 1-2 the kind, bits 3-7 the time
/// since the previous op in milliseconds.
fn op_byte(side: Side, kind: u8, step_ms: u8) -> u8 {
    let side_bit = match side {
        Side::Client => 0,
        Side::Server => 1,
    };
    side_bit | (kind << 1) | (step_ms.min(31) << 3)
}

/// Appends data sent by `side` to a stream-ops input, split into pieces of at most 64 KiB.
pub fn encode_data(out: &mut Vec<u8>, side: Side, step_ms: u8, bytes: &[u8]) {
    for (n, piece) in bytes.chunks(usize::from(u16::MAX)).enumerate() {
        let step = if n == 0 { step_ms } else { 0 };
        out.push(op_byte(side, OP_DATA, step));
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
}

/// Appends a gap of `len` bytes (1 to 65536) in `side`'s stream.
pub fn encode_gap(out: &mut Vec<u8>, side: Side, step_ms: u8, len: u64) {
    out.push(op_byte(side, OP_GAP, step_ms));
    let stored = len.clamp(1, 1 << 16) - 1;
    out.extend_from_slice(&(stored as u16).to_be_bytes());
}

/// Appends `side`'s FIN.
pub fn encode_fin(out: &mut Vec<u8>, side: Side, step_ms: u8) {
    out.push(op_byte(side, OP_FIN, step_ms));
}

/// Parses a stream-ops input into timed ops. Like the connection engine, it hands on no
/// empty data, and nothing of a side after that side's FIN.
fn stream_ops(data: &[u8]) -> Vec<(i64, StreamOp<'_>)> {
    let mut fields = Fields::new(data);
    let mut ops = Vec::new();
    let mut ts_ns = START_NS;
    let mut finished = [false; 2];
    while !fields.is_empty() {
        let b = fields.u8();
        let side = if b & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        ts_ns += i64::from(b >> 3) * MS;
        let op = match (b >> 1) & 3 {
            OP_DATA => StreamOp::Data(side, {
                let len = fields.u16();
                fields.take(usize::from(len))
            }),
            OP_DATA_SHORT => StreamOp::Data(side, {
                let len = fields.u8();
                fields.take(usize::from(len))
            }),
            OP_GAP => StreamOp::Gap(side, u64::from(fields.u16()) + 1),
            _ => StreamOp::Fin(side),
        };
        let i = side_index(side);
        if finished[i] || matches!(op, StreamOp::Data(_, b) if b.is_empty()) {
            continue;
        }
        if let StreamOp::Fin(_) = op {
            finished[i] = true;
        }
        ops.push((ts_ns, op));
    }
    ops
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// Runs the ops through the connection's [`Detector`], as the connection engine would,
/// and checks that what it found serializes.
fn drive_detector(ops: &[(i64, StreamOp<'_>)]) {
    let mut detector = Detector::default();
    let mut offsets = [0u64; 2];
    for &(ts_ns, op) in ops {
        match op {
            StreamOp::Data(side, bytes) => {
                let offset = &mut offsets[side_index(side)];
                detector.chunk(
                    side,
                    &Chunk::Data {
                        ts_ns,
                        offset: *offset,
                        bytes,
                    },
                );
                *offset += bytes.len() as u64;
            }
            StreamOp::Gap(side, len) => {
                let offset = &mut offsets[side_index(side)];
                detector.chunk(
                    side,
                    &Chunk::Gap {
                        ts_ns,
                        offset: *offset,
                        len,
                        cause: GapCause::NotCaptured,
                    },
                );
                *offset += len;
            }
            StreamOp::Fin(side) => detector.fin(side, ts_ns),
        }
    }
    let detected = detector.detected();
    let json = serde_json::to_vec(&detected).expect("detector results serialize");
    serde_json::from_slice::<serde_json::Value>(&json).expect("detector results JSON parses");
    std::hint::black_box((
        detector.protocols(),
        detector.plain_http_to_https_port(),
        detector.first_bytes(Side::Client),
        detector.first_bytes(Side::Server),
    ));
}

/// Both sides' TLS record parsers on their own, then the whole detector.
pub fn detect_tls(data: &[u8]) {
    let ops = stream_ops(data);
    let mut sides = [TlsDirection::new(true), TlsDirection::new(false)];
    let mut fed = [0u64; 2];
    let mut out = Vec::new();
    for &(ts_ns, op) in &ops {
        match op {
            StreamOp::Data(side, bytes) => {
                let i = side_index(side);
                sides[i].feed(ts_ns, bytes, &mut out);
                fed[i] += bytes.len() as u64;
                // After a TLS 1.3 ServerHello the rest is encrypted, as the detector does.
                if out.iter().any(|(_, k)| {
                    matches!(k, ProtoKind::TlsServerHello { version, .. } if *version == 0x0304)
                }) {
                    sides[i].set_encrypted();
                }
                out.clear();
            }
            StreamOp::Gap(side, _) => sides[side_index(side)].gap(),
            StreamOp::Fin(_) => {}
        }
    }
    for (side, fed) in sides.iter().zip(fed) {
        let c = side.counters;
        // Every record starts with a 5-byte header that was fed.
        assert!(c.records * 5 <= fed, "{} records in {fed} bytes", c.records);
        assert!(c.application_data_bytes <= fed);
        assert!(c.application_data_records <= c.records);
        std::hint::black_box(side.stopped());
    }
    drive_detector(&ops);
}

/// The HTTP/1 parser of both sides on its own, then the whole detector.
pub fn detect_http1(data: &[u8]) {
    let ops = stream_ops(data);
    let mut http1 = Http1::default();
    let mut out = Vec::new();
    for &(ts_ns, op) in &ops {
        match op {
            StreamOp::Data(side, bytes) => {
                let (switch, used) = match side {
                    Side::Client => http1.feed_client(ts_ns, bytes, &mut out),
                    Side::Server => http1.feed_server(ts_ns, bytes, &mut out),
                };
                assert!(used <= bytes.len(), "used {used} of {} bytes", bytes.len());
                std::hint::black_box(switch);
                if side == Side::Client {
                    std::hint::black_box(http1.client_at_message_start());
                }
            }
            StreamOp::Gap(side, len) => http1.gap(side == Side::Client, len),
            StreamOp::Fin(Side::Server) => http1.server_closed(ts_ns, &mut out),
            StreamOp::Fin(Side::Client) => {}
        }
    }
    std::hint::black_box(http1.take_held_preface());
    for exchange in &http1.exchanges {
        std::hint::black_box(format!("{exchange:?}"));
    }
    std::hint::black_box(out.len());
    drive_detector(&ops);
}

/// Both sides' HTTP/2 frame parsers on their own (the client's expecting the preface), each
/// held to the SETTINGS_MAX_FRAME_SIZE the other announced, then the whole detector.
pub fn detect_http2(data: &[u8]) {
    let ops = stream_ops(data);
    let mut sides = [H2Direction::new(true), H2Direction::new(false)];
    let mut out = Vec::new();
    for &(ts_ns, op) in &ops {
        match op {
            StreamOp::Data(side, bytes) => {
                let i = side_index(side);
                let peer_max = sides[1 - i].announced_max_frame_size();
                sides[i].feed(ts_ns, bytes, peer_max, &mut out);
            }
            StreamOp::Gap(side, len) => sides[side_index(side)].gap(ts_ns, len, &mut out),
            StreamOp::Fin(_) => {}
        }
    }
    for side in &sides {
        std::hint::black_box((side.counters(), side.stopped()));
    }
    for (_, kind) in &out {
        std::hint::black_box(format!("{kind:?}"));
    }
    drive_detector(&ops);
}

// ---------------------------------------------------------------------------------------
// reassembly: one direction's segments, ACKs and FIN.

/// The out-of-order buffer caps a `reassembly` input selects from with its fifth byte.
pub const REASSEMBLY_CAPS: [usize; 6] = [0, 1, 100, 1460, 65536, 1 << 20];

const SEG_DATA: u8 = 0;
const SEG_ACK: u8 = 1;
const SEG_FIN: u8 = 2;

/// Starts a `reassembly` input: the sequence number of offset 0 and the cap selector.
pub fn encode_reassembly_header(out: &mut Vec<u8>, base: u32, cap_selector: u8) {
    out.extend_from_slice(&base.to_be_bytes());
    out.push(cap_selector);
}

/// The op byte of a `reassembly` input, and the 24-bit distance of `seq` from `base`:
/// bits 0-1 the kind, bit 2 set when `seq` is before `base`, bits 3-7 the time step in ms.
fn seq_op(out: &mut Vec<u8>, kind: u8, step_ms: u8, base: u32, seq: u32) {
    let ahead = seq.wrapping_sub(base);
    let (behind, distance) = if ahead < 1 << 31 {
        (0, ahead)
    } else {
        (4, base.wrapping_sub(seq))
    };
    out.push(kind | behind | (step_ms.min(31) << 3));
    let distance = distance.min(0xff_ffff);
    out.extend_from_slice(&distance.to_be_bytes()[1..]);
}

/// Appends a segment: `wire_len` bytes starting at `seq`, of which `captured` were kept.
pub fn encode_segment(
    out: &mut Vec<u8>,
    step_ms: u8,
    base: u32,
    seq: u32,
    wire_len: u16,
    captured: &[u8],
) {
    seq_op(out, SEG_DATA, step_ms, base, seq);
    out.extend_from_slice(&wire_len.to_be_bytes());
    let captured = &captured[..captured.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(captured.len() as u16).to_be_bytes());
    out.extend_from_slice(captured);
}

/// Appends the peer's acknowledgment of everything before `ack`.
pub fn encode_ack(out: &mut Vec<u8>, step_ms: u8, base: u32, ack: u32) {
    seq_op(out, SEG_ACK, step_ms, base, ack);
}

/// Appends the FIN, which takes the sequence number `seq`.
pub fn encode_seq_fin(out: &mut Vec<u8>, step_ms: u8, base: u32, seq: u32) {
    seq_op(out, SEG_FIN, step_ms, base, seq);
}

/// What a stream's chunks must add up to: each starts where the one before ended, data is
/// never empty, gaps are never empty.
#[derive(Default)]
struct StreamCheck {
    next: u64,
    data_bytes: u64,
    gaps: u64,
    gap_bytes: u64,
}

impl StreamCheck {
    fn take(&mut self, chunk: Chunk<'_>) {
        match chunk {
            Chunk::Data { offset, bytes, .. } => {
                assert_eq!(offset, self.next, "data chunk out of place");
                assert!(!bytes.is_empty(), "empty data chunk at {offset}");
                self.next += bytes.len() as u64;
                self.data_bytes += bytes.len() as u64;
            }
            Chunk::Gap { offset, len, .. } => {
                assert_eq!(offset, self.next, "gap out of place");
                assert!(len > 0, "empty gap at {offset}");
                self.next += len;
                self.gaps += 1;
                self.gap_bytes += len;
            }
        }
    }
}

/// Feeds one direction's segments, ACKs and FIN to a [`Reassembler`], ends the stream, and
/// checks that the out-of-order buffer stays within its cap after every op and that the
/// chunks it delivered are contiguous and match its counters.
pub fn reassembly(data: &[u8]) {
    let mut fields = Fields::new(data);
    let base = fields.u32();
    let cap = REASSEMBLY_CAPS[usize::from(fields.u8()) % REASSEMBLY_CAPS.len()];
    let mut stream = Reassembler::new(base, cap);
    let mut check = StreamCheck::default();
    let mut sink = |c: Chunk<'_>| check.take(c);
    let mut ts_ns = START_NS;
    while !fields.is_empty() {
        let b = fields.u8();
        ts_ns += i64::from(b >> 3) * MS;
        let distance = fields.u24();
        let seq = if b & 4 == 0 {
            base.wrapping_add(distance)
        } else {
            base.wrapping_sub(distance)
        };
        match b & 3 {
            SEG_DATA => {
                let wire_len = fields.u16();
                let captured_len = fields.u16();
                let captured = fields.take(usize::from(captured_len));
                stream.segment(ts_ns, seq, captured, u32::from(wire_len), &mut sink);
            }
            SEG_ACK => stream.ack(ts_ns, seq, &mut sink),
            SEG_FIN => stream.fin(seq),
            // Kind 3: a stretch of time with nothing on the wire.
            _ => {}
        }
        // The out-of-order buffer never holds more than its cap once an op is done.
        assert!(
            stream.buffered_bytes() <= cap,
            "{} bytes buffered, cap {cap}",
            stream.buffered_bytes()
        );
    }
    stream.finish(ts_ns, &mut sink);
    assert_eq!(
        stream.buffered_bytes(),
        0,
        "bytes left buffered after finish"
    );
    assert_eq!(stream.next_offset(), check.next, "next offset vs chunks");
    let c = stream.counters;
    assert_eq!(
        c.delivered_bytes, check.data_bytes,
        "delivered bytes vs chunks"
    );
    assert_eq!(c.gaps, check.gaps, "gaps vs chunks");
    assert_eq!(c.gap_bytes, check.gap_bytes, "gap bytes vs chunks");
}

// ---------------------------------------------------------------------------------------
// pipeline: the bytes are a capture file, analysed and reported in every format.

/// Limits small enough that a fuzzed capture reaches them: eviction, the buffer cap, the
/// event cap, idle timeouts.
fn tight_flow_config() -> FlowConfig {
    FlowConfig {
        idle_timeout_ns: 5_000 * MS,
        linger_ns: 100 * MS,
        // The default limits finish connections that ended at once; these keep them
        // lingering, so that fuzzing reaches both ways.
        finish_when_over: false,
        max_connections: 4,
        max_buffered_per_direction: 1500,
        idle_event_ns: 100 * MS,
        max_events: 16,
    }
}

/// Analyses the bytes as a capture file, classifies every connection, and writes every
/// report: the per-connection text and ndjson, the ladder diagrams, the summary, the table,
/// JSON, ndjson, CSV, markdown, and the input's stats. JSON output must parse.
///
/// The engine's configuration is picked by the input's length, so that the bytes stay a
/// plain capture file: default limits on one thread, tight limits, or default limits on
/// two worker threads.
pub fn pipeline(data: &[u8]) {
    let (cfg, shards) = match data.len() % 3 {
        0 => (FlowConfig::default(), 1),
        1 => (tight_flow_config(), 1),
        _ => (FlowConfig::default(), 2),
    };
    let color = data.len() % 2 == 1;
    let width = [40, 100, 250][data.len() % 3];
    with_capture_file(data, |input, _| {
        let mut findings = Findings::default();
        let mut connections = 0u64;
        let mut sink = |r: ConnectionRecord<Detector>| {
            connections += 1;
            flows::write_text(&mut io::sink(), &r).expect("writing to a sink cannot fail");
            let mut line = Vec::new();
            flows::write_ndjson(&mut line, &input.display, &r).expect("writing to a Vec");
            serde_json::from_slice::<serde_json::Value>(&line).expect("flow ndjson parses");
            let verdict = classify(&r);
            let mut ladder = Vec::new();
            explain::write_explain(&mut ladder, &input.display, &r, &verdict)
                .expect("writing to a Vec");
            if verdict.class.is_failure() {
                findings
                    .ladders
                    .entry(verdict.class)
                    .or_insert_with(|| String::from_utf8_lossy(&ladder).into_owned());
            }
            findings.add(Judged::new(&input.display, &r, verdict), true);
        };
        let summary = analyze::<Detector>(input, &cfg, shards, &mut sink);
        assert_eq!(findings.connections, connections);

        let mut out = io::sink();
        flows::write_text_footer(&mut out, &summary, connections).expect("sink");
        stats::write_text(&mut out, &summary.stats).expect("sink");
        serde_json::to_vec(&summary.stats).expect("input stats serialize");
        findings.write_summary(&mut out, 1).expect("sink");
        verdicts::write_table(&mut out, &findings.kept, width, Style { color }).expect("sink");
        verdicts::write_csv(&mut out, &findings).expect("sink");
        verdicts::write_markdown(&mut out, &findings, 1).expect("sink");

        let mut json = Vec::new();
        verdicts::write_json(&mut json, &findings).expect("writing to a Vec");
        serde_json::from_slice::<serde_json::Value>(&json).expect("the JSON report parses");
        for judged in &findings.kept {
            let mut line = Vec::new();
            verdicts::write_ndjson(&mut line, judged).expect("writing to a Vec");
            serde_json::from_slice::<serde_json::Value>(&line).expect("verdict ndjson parses");
            verdicts::write_connection(&mut out, judged).expect("sink");
        }
        out.flush().expect("sink");
    });
}
