//! Writes the seed corpora of the fuzz targets from the sample captures.
//!
//! Usage: `seed_corpora SAMPLES_DIR CORPUS_DIR`. Every capture below SAMPLES_DIR (recognised
//! by its magic bytes, compressed ones too) becomes:
//! - `capture_reader/`, `pipeline/`: the file itself, cut to its first 64 KiB so that the
//!   fuzzer's inputs stay small enough to mutate quickly;
//! - `decode_packet/`: its first frames one by one, and its first 32 frames together;
//! - `detect_tls/`, `detect_http1/`, `detect_http2/`: the two streams of each connection as the
//!   connection engine delivered them (data, gaps, FINs), filed under what each side spoke;
//! - `reassembly/`: the segments, FIN and the peer's ACKs of each direction of each
//!   connection, in capture order.
//!
//! The inputs are written with the encoders of `rstscope_fuzz`, so they are in the very
//! formats the harnesses parse.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rstscope::capture::{CaptureReader, Input, InputSource, expand_inputs};
use rstscope::decode::{Decoded, Decoder};
use rstscope::detect::{Detector, Protocol};
use rstscope::flow::{Chunk, FlowConfig, Side, StreamHandler};
use rstscope::pipeline::analyze;
use rstscope_fuzz::{
    encode_ack, encode_data, encode_fin, encode_frame, encode_gap, encode_reassembly_header,
    encode_segment, encode_seq_fin, link_selector,
};

/// Largest seed of any target.
const MAX_SEED: usize = 64 * 1024;
/// Stream and segment seeds are kept shorter: their formats are dense.
const MAX_STREAM_SEED: usize = 16 * 1024;
/// Single-frame seeds taken from the start of each capture.
const SINGLE_FRAMES: usize = 20;
/// Frames of the multi-frame seed of each capture.
const MULTI_FRAMES: usize = 32;
const MS: i64 = 1_000_000;

/// The seeds of every target, deduplicated by content.
#[derive(Default)]
struct Corpora {
    seeds: BTreeMap<&'static str, Vec<Vec<u8>>>,
    seen: HashSet<(&'static str, Vec<u8>)>,
}

impl Corpora {
    fn add(&mut self, target: &'static str, seed: Vec<u8>) {
        if seed.is_empty() || !self.seen.insert((target, seed.clone())) {
            return;
        }
        self.seeds.entry(target).or_default().push(seed);
    }

    fn write(&self, dir: &Path) -> io::Result<()> {
        for (target, seeds) in &self.seeds {
            let target_dir = dir.join(target);
            fs::create_dir_all(&target_dir)?;
            for (n, seed) in seeds.iter().enumerate() {
                fs::write(target_dir.join(format!("seed-{n:04}")), seed)?;
            }
            println!("{target}: {} seeds", seeds.len());
        }
        Ok(())
    }
}

fn step_ms(from: Option<i64>, to: i64) -> u8 {
    from.map_or(0, |f| ((to - f) / MS).clamp(0, 31) as u8)
}

/// A connection's two streams recorded as a stream-ops input, next to the detector that
/// tells what each side spoke.
#[derive(Default)]
struct Recorder {
    detector: Detector,
    ops: Vec<u8>,
    last_ns: Option<i64>,
}

impl Recorder {
    fn room(&self) -> bool {
        self.ops.len() < MAX_STREAM_SEED
    }
}

impl StreamHandler for Recorder {
    fn chunk(&mut self, from: Side, chunk: &Chunk<'_>) {
        self.detector.chunk(from, chunk);
        if !self.room() {
            return;
        }
        match *chunk {
            Chunk::Data { ts_ns, bytes, .. } => {
                let keep = &bytes[..bytes.len().min(MAX_STREAM_SEED - self.ops.len())];
                encode_data(&mut self.ops, from, step_ms(self.last_ns, ts_ns), keep);
                self.last_ns = Some(ts_ns);
            }
            Chunk::Gap { ts_ns, len, .. } => {
                encode_gap(&mut self.ops, from, step_ms(self.last_ns, ts_ns), len);
                self.last_ns = Some(ts_ns);
            }
        }
    }

    fn fin(&mut self, from: Side, ts_ns: i64) {
        self.detector.fin(from, ts_ns);
        if self.room() {
            encode_fin(&mut self.ops, from, step_ms(self.last_ns, ts_ns));
            self.last_ns = Some(ts_ns);
        }
    }
}

fn stream_seeds(input: &Input, corpora: &mut Corpora) {
    let mut records = Vec::new();
    analyze::<Recorder>(input, &FlowConfig::default(), 1, &mut |r| {
        records.push((r.handler.detector.protocols(), r.handler.ops));
    });
    for (protocols, ops) in records {
        let speaks = |p: Protocol| protocols.contains(&p);
        let unknown = protocols.contains(&Protocol::Unknown);
        if speaks(Protocol::Tls) || unknown {
            corpora.add("detect_tls", ops.clone());
        }
        if speaks(Protocol::Http1) || unknown {
            corpora.add("detect_http1", ops.clone());
        }
        // An h2c upgrade starts in HTTP/1 and ends up as HTTP/2 on both sides.
        if speaks(Protocol::H2) || unknown {
            corpora.add("detect_http2", ops);
        }
    }
}

/// What one TCP packet means for the direction it was sent in, and for the other one.
struct Seen {
    ts_ns: i64,
    seq: u32,
    syn: bool,
    fin: bool,
    ack: Option<u32>,
    wire_len: u32,
    payload: Vec<u8>,
}

type Direction = (IpAddr, u16, IpAddr, u16);

fn frame_and_segment_seeds(path: &Path, corpora: &mut Corpora) {
    let Ok(mut reader) = CaptureReader::open(&InputSource::File(path.to_path_buf())) else {
        return;
    };
    let mut decoder = Decoder::new();
    let mut multi: Option<(u8, Vec<u8>)> = None;
    let mut multi_frames = 0;
    let mut frames = 0;
    let mut last_ns: Option<i64> = None;
    let mut packets: Vec<(Direction, Seen)> = Vec::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        let Some(selector) = link_selector(frame.link_type) else {
            continue;
        };
        let tenths = last_ns.map_or(0, |l| ((frame.ts_ns - l) / (100 * MS)).clamp(0, 255) as u8);
        last_ns = Some(frame.ts_ns);
        let cut = frame.bytes_cut().min(255) as u8;
        if frames < SINGLE_FRAMES {
            let mut seed = vec![selector];
            encode_frame(&mut seed, frame.data, 0, cut);
            corpora.add("decode_packet", seed);
        }
        frames += 1;
        let (multi_selector, seed) = multi.get_or_insert_with(|| (selector, vec![selector]));
        if *multi_selector == selector && multi_frames < MULTI_FRAMES && seed.len() < MAX_SEED {
            encode_frame(seed, frame.data, tenths, cut);
            multi_frames += 1;
        }
        if let Decoded::Tcp(p) = decoder.decode(&frame) {
            packets.push((
                (p.src, p.src_port, p.dst, p.dst_port),
                Seen {
                    ts_ns: p.ts_ns,
                    seq: p.seq,
                    syn: p.flags.syn(),
                    fin: p.flags.fin(),
                    ack: p.flags.ack().then_some(p.ack),
                    wire_len: p.payload_len,
                    payload: p.payload.to_vec(),
                },
            ));
        }
    }
    if let Some((_, seed)) = multi {
        corpora.add("decode_packet", seed);
    }
    segment_seeds(&packets, corpora);
}

/// One `reassembly` seed per direction: its segments and FIN, and the ACKs of the other
/// direction, in capture order.
fn segment_seeds(packets: &[(Direction, Seen)], corpora: &mut Corpora) {
    let mut directions: Vec<Direction> = Vec::new();
    for (d, _) in packets {
        if !directions.contains(d) {
            directions.push(*d);
        }
    }
    for dir in directions {
        let reverse = (dir.2, dir.3, dir.0, dir.1);
        let mut sent = packets.iter().filter(|(d, _)| *d == dir).map(|(_, s)| s);
        let Some(first) = sent.next() else { continue };
        let base = if first.syn {
            first.seq.wrapping_add(1)
        } else {
            first.seq
        };
        let mut seed = Vec::new();
        // Selector 5 is the engine's default cap (1 MiB).
        encode_reassembly_header(&mut seed, base, 5);
        let mut last_ns = None;
        for (d, s) in packets {
            if seed.len() >= MAX_STREAM_SEED {
                break;
            }
            let step = step_ms(last_ns, s.ts_ns);
            let data_seq = s.seq.wrapping_add(u32::from(s.syn));
            if *d == dir {
                if s.wire_len > 0 {
                    let wire = s.wire_len.min(u32::from(u16::MAX)) as u16;
                    encode_segment(&mut seed, step, base, data_seq, wire, &s.payload);
                    last_ns = Some(s.ts_ns);
                }
                if s.fin {
                    let fin_seq = data_seq.wrapping_add(s.wire_len);
                    encode_seq_fin(&mut seed, step_ms(last_ns, s.ts_ns), base, fin_seq);
                    last_ns = Some(s.ts_ns);
                }
            } else if *d == reverse
                && let Some(ack) = s.ack
            {
                encode_ack(&mut seed, step, base, ack);
                last_ns = Some(s.ts_ns);
            }
        }
        if seed.len() > 5 {
            corpora.add("reassembly", seed);
        }
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [samples, corpus] = args.as_slice() else {
        eprintln!("usage: seed_corpora SAMPLES_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let (inputs, errors) = expand_inputs(std::slice::from_ref(samples));
    for (arg, e) in &errors {
        eprintln!("seed_corpora: {arg}: {e}");
    }
    let mut corpora = Corpora::default();
    for input in &inputs {
        let InputSource::File(path) = &input.source else {
            continue;
        };
        let mut whole = fs::read(path)?;
        whole.truncate(MAX_SEED);
        corpora.add("capture_reader", whole.clone());
        corpora.add("pipeline", whole);
        frame_and_segment_seeds(path, &mut corpora);
        stream_seeds(input, &mut corpora);
    }
    corpora.write(&PathBuf::from(corpus))
}
