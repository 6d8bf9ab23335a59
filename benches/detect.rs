//! The protocol detectors alone, on the recorded byte streams of real sample captures.
//!
//! `cargo bench --bench detect`. Each connection's chunks, gaps and FINs are recorded once
//! (through the connection engine, bytes copied), then every iteration replays them into
//! fresh `Detector`s; throughput is in stream bytes (both directions). Set
//! RSTSCOPE_BENCH_CAPTURE=/path/to/big.pcap to also replay the first
//! RSTSCOPE_BENCH_CONNECTIONS (default 500) connections of a large capture.
//!
//! The `hpack` group feeds hostile HTTP/2 header blocks (64 KiB of Huffman strings: the
//! longest codes, the shortest codes, random bytes, one-symbol strings) straight to the HPACK
//! decoder; throughput is in encoded block bytes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rstscope::capture::{Input, InputSource};
use rstscope::detect::Detector;
use rstscope::detect::hpack::{self, Decoder};
use rstscope::flow::{Chunk, FlowConfig, GapCause, Side, StreamHandler};

/// What the connection engine handed a stream handler, in order.
enum Op {
    Data {
        from: Side,
        ts_ns: i64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Gap {
        from: Side,
        ts_ns: i64,
        offset: u64,
        len: u64,
        cause: GapCause,
    },
    Fin {
        from: Side,
        ts_ns: i64,
    },
}

#[derive(Default)]
struct Recorder {
    ops: Vec<Op>,
}

impl StreamHandler for Recorder {
    fn chunk(&mut self, from: Side, chunk: &Chunk<'_>) {
        self.ops.push(match *chunk {
            Chunk::Data {
                ts_ns,
                offset,
                bytes,
            } => Op::Data {
                from,
                ts_ns,
                offset,
                bytes: bytes.to_vec(),
            },
            Chunk::Gap {
                ts_ns,
                offset,
                len,
                cause,
            } => Op::Gap {
                from,
                ts_ns,
                offset,
                len,
                cause,
            },
        });
    }

    fn fin(&mut self, from: Side, ts_ns: i64) {
        self.ops.push(Op::Fin { from, ts_ns });
    }
}

/// The recordings of the first `limit` connections (by first frame) of a capture.
fn record(path: &Path, limit: usize) -> Vec<Vec<Op>> {
    let input = Input {
        display: path.display().to_string(),
        source: InputSource::File(path.to_path_buf()),
    };
    let mut kept: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    rstscope::pipeline::analyze::<Recorder>(&input, &FlowConfig::default(), 1, &mut |r| {
        kept.insert(r.first_frame, r.handler.ops);
        if kept.len() > limit {
            kept.pop_last();
        }
    });
    kept.into_values().collect()
}

fn replay(ops: &[Op]) -> Detector {
    let mut d = Detector::default();
    for op in ops {
        match op {
            Op::Data {
                from,
                ts_ns,
                offset,
                bytes,
            } => d.chunk(
                *from,
                &Chunk::Data {
                    ts_ns: *ts_ns,
                    offset: *offset,
                    bytes,
                },
            ),
            Op::Gap {
                from,
                ts_ns,
                offset,
                len,
                cause,
            } => d.chunk(
                *from,
                &Chunk::Gap {
                    ts_ns: *ts_ns,
                    offset: *offset,
                    len: *len,
                    cause: *cause,
                },
            ),
            Op::Fin { from, ts_ns } => d.fin(*from, *ts_ns),
        }
    }
    d
}

fn stream_bytes(conns: &[Vec<Op>]) -> u64 {
    conns
        .iter()
        .flatten()
        .map(|op| match op {
            Op::Data { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum()
}

fn sample(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(path)
}

fn bench_detect(c: &mut Criterion) {
    let mut group = c.benchmark_group("detect");
    let mut inputs = vec![
        // HTTP/1.1, one 400 KB Content-Length body.
        (
            "http1-large-download",
            sample("scenarios/healthy-large-download.pcap"),
            1,
        ),
        // h2c, five concurrent streams and GOAWAY.
        ("h2c", sample("scenarios/healthy-h2c.pcap"), 1),
        // TLS 1.3 with ALPN h2, two requests.
        ("tls-h2", sample("scenarios/healthy-tls-h2.pcap"), 1),
    ];
    if let Some(big) = std::env::var_os("RSTSCOPE_BENCH_CAPTURE") {
        let n = std::env::var("RSTSCOPE_BENCH_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        inputs.push(("big-capture", PathBuf::from(big), n));
        group.sample_size(10);
    }
    for (name, path, limit) in inputs {
        let conns = record(&path, limit);
        assert!(!conns.is_empty(), "{}: no connection", path.display());
        group.throughput(Throughput::Bytes(stream_bytes(&conns)));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut events = 0;
                for ops in &conns {
                    events += replay(ops).events.len();
                }
                black_box(events)
            })
        });
    }
    group.finish();
}

/// A header block of literal fields without indexing, each a new name and a Huffman value of
/// `value` (already Huffman-coded, 127 bytes to 8 KiB), as many as fit the 64 KiB block cap.
fn huffman_block(value: &[u8]) -> Vec<u8> {
    assert!((127..=8 << 10).contains(&value.len()));
    let mut field = vec![0x00, 0x01, b'x', 0xff];
    // §5.1: the length past the 7-bit prefix, 7 bits per octet.
    let mut rest = value.len() - 127;
    while rest >= 0x80 {
        field.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    field.push(rest as u8);
    field.extend_from_slice(value);
    let mut block = Vec::new();
    while block.len() + field.len() <= 64 << 10 {
        block.extend_from_slice(&field);
    }
    block
}

fn bench_hpack(c: &mut Criterion) {
    let mut group = c.benchmark_group("hpack");
    // The three 30-bit codes (bytes 10, 13, 22): four input bits per step, the most steps
    // per symbol.
    let longest: Vec<u8> = [10u8, 13, 22].iter().copied().cycle().take(2000).collect();
    // 5-bit codes: 1.6 symbols out per input byte, the most output.
    let shortest: Vec<u8> = b"012aceiost".iter().copied().cycle().take(13_000).collect();
    // Random bytes, read as Huffman codes (this seed's end in valid padding, so every field
    // decodes).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..8 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // Many tiny strings: a field of a one-symbol Huffman name and value every 5 bytes, where
    // per-string costs dominate.
    let tiny_fields: Vec<u8> = [0x00u8, 0x81, 0x1f, 0x81, 0x1f]
        .iter()
        .copied()
        .cycle()
        .take((64 << 10) / 5 * 5)
        .collect();
    for (name, block) in [
        (
            "huffman-longest-codes",
            huffman_block(&hpack::huffman_encode(&longest)),
        ),
        (
            "huffman-shortest-codes",
            huffman_block(&hpack::huffman_encode(&shortest)),
        ),
        ("huffman-garbage", huffman_block(&garbage)),
        ("huffman-tiny-strings", tiny_fields),
    ] {
        group.throughput(Throughput::Bytes(block.len() as u64));
        // The limits http2.rs sets: a 64 KiB table, a 4 MiB header list.
        let mut decoder = Decoder::new(64 << 10, 4 << 20);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut fields = 0;
                let result = decoder.decode(&block, |_, value| fields += value.len());
                black_box((fields, result.is_ok()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_detect, bench_hpack);
criterion_main!(benches);
