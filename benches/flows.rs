//! The connection engine alone, on packets of real sample captures held in memory.
//!
//! `cargo bench --bench flows`. Set RSTSCOPE_BENCH_CAPTURE=/path/to/big.pcap to also run the
//! engine over the first 200,000 TCP packets of a large capture.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rstscope::capture::{CaptureReader, InputSource};
use rstscope::decode::{Decoded, Decoder, IpVersion, TcpFlags, TcpPacket};
use rstscope::flow::{Chunk, FlowConfig, FlowTable, Reassembler};

struct Owned {
    ts_ns: i64,
    ip: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ttl: u8,
    options: Vec<u8>,
    payload: Vec<u8>,
    payload_len: u32,
    frame_len: u32,
}

impl Owned {
    fn view(&self) -> TcpPacket<'_> {
        TcpPacket {
            ts_ns: self.ts_ns,
            ip: self.ip,
            src: self.src,
            dst: self.dst,
            src_port: self.ports.0,
            dst_port: self.ports.1,
            seq: self.seq,
            ack: self.ack,
            flags: TcpFlags(self.flags),
            window: self.window,
            ttl: self.ttl,
            options: &self.options,
            payload: &self.payload,
            payload_len: self.payload_len,
            reassembled: false,
            frame_len: self.frame_len,
            payload_fingerprint: None,
        }
    }
}

fn load(path: &Path, limit: usize) -> Vec<Owned> {
    let mut reader = CaptureReader::open(&InputSource::File(path.to_path_buf())).unwrap();
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let Decoded::Tcp(t) = decoder.decode(&frame) {
            out.push(Owned {
                ts_ns: t.ts_ns,
                ip: t.ip,
                src: t.src,
                dst: t.dst,
                ports: (t.src_port, t.dst_port),
                seq: t.seq,
                ack: t.ack,
                flags: t.flags.0,
                window: t.window,
                ttl: t.ttl,
                options: t.options.to_vec(),
                payload: t.payload.to_vec(),
                payload_len: t.payload_len,
                frame_len: t.frame_len,
            });
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

fn sample(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(path)
}

fn bench_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_table");
    let mut inputs = vec![
        ("http-v4", sample("ingest/http-v4.pcap")),
        ("port-reuse", sample("flows/port-reuse.pcap")),
        ("reorder-loss", sample("flows/reorder-loss.pcap")),
        ("capture-loss", sample("flows/capture-loss.pcap")),
    ];
    if let Some(big) = std::env::var_os("RSTSCOPE_BENCH_CAPTURE") {
        inputs.push(("big-capture-200k-packets", PathBuf::from(big)));
        group.sample_size(10);
    }
    for (name, path) in inputs {
        let packets = load(&path, 200_000);
        group.throughput(Throughput::Elements(packets.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut table = FlowTable::<()>::new(FlowConfig::default(), 1 << 18);
                for (i, p) in packets.iter().enumerate() {
                    table.packet(&p.view(), i as u64 + 1);
                }
                table.finish(i64::MAX);
                let mut done = Vec::new();
                table.take_finished(&mut done);
                black_box(done.len())
            })
        });
    }
    group.finish();
}

fn bench_reassembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("reassembly");
    let segment = vec![0x5au8; 1448];
    let n = 2000u32;
    group.throughput(Throughput::Bytes(u64::from(n) * 1448));
    group.bench_function("in_order_1448", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(1, 1 << 20);
            let mut total = 0usize;
            let mut sink = |c: Chunk<'_>| {
                if let Chunk::Data { bytes, .. } = c {
                    total += bytes.len()
                }
            };
            for i in 0..n {
                r.segment(i64::from(i), 1 + i * 1448, &segment, 1448, &mut sink);
            }
            black_box(total)
        })
    });
    group.bench_function("pairs_swapped_1448", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(1, 1 << 20);
            let mut total = 0usize;
            let mut sink = |c: Chunk<'_>| {
                if let Chunk::Data { bytes, .. } = c {
                    total += bytes.len()
                }
            };
            for i in (0..n).step_by(2) {
                r.segment(i64::from(i), 1 + (i + 1) * 1448, &segment, 1448, &mut sink);
                r.segment(i64::from(i), 1 + i * 1448, &segment, 1448, &mut sink);
            }
            black_box(total)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_table, bench_reassembly);
criterion_main!(benches);
