//! Hot paths of the capture and decode stages, on real sample captures.
//!
//! `cargo bench --bench decode`. Set RSTSCOPE_BENCH_CAPTURE=/path/to/big.pcap to also read a
//! large capture (e.g. one made by benches/record-large.sh) end to end, front to back and in
//! chunks.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rstscope::capture::{CaptureReader, ChunkedFile, Frame, InputSource, LinkType};
use rstscope::decode::{Decoded, Decoder};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/ingest")
        .join(name)
}

/// The frames of a capture, copied out so that decoding can be timed alone.
fn load_frames(path: &Path) -> Vec<(i64, LinkType, Vec<u8>, u32)> {
    let mut reader = CaptureReader::open(&InputSource::File(path.to_path_buf())).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().unwrap() {
        frames.push((f.ts_ns, f.link_type, f.data.to_vec(), f.orig_len));
    }
    frames
}

fn read_all(path: &Path) -> (u64, u64) {
    let mut reader = CaptureReader::open(&InputSource::File(path.to_path_buf())).unwrap();
    let mut decoder = Decoder::new();
    let (mut packets, mut tcp_bytes) = (0u64, 0u64);
    while let Some(frame) = reader.next_frame().unwrap() {
        packets += 1;
        if let Decoded::Tcp(t) = decoder.decode(&frame) {
            tcp_bytes += u64::from(t.payload_len);
        }
    }
    (packets, tcp_bytes)
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for name in [
        "http-v4.pcap",
        "http-v6.pcap",
        "http-any-sll2.pcap",
        "qinq.pcap",
        "snaplen96.pcap",
        "ipv4-fragments.pcap",
    ] {
        let frames = load_frames(&sample(name));
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut decoder = Decoder::new();
                let mut tcp = 0u32;
                for (ts_ns, link_type, data, orig_len) in &frames {
                    let frame = Frame {
                        ts_ns: *ts_ns,
                        link_type: *link_type,
                        data,
                        orig_len: *orig_len,
                        offset: 0,
                    };
                    if let Decoded::Tcp(t) = decoder.decode(&frame) {
                        tcp += t.payload.len() as u32;
                    }
                }
                black_box(tcp)
            })
        });
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_and_decode");
    let mut files = vec![
        sample("http-v4.pcap"),
        sample("two-interfaces.pcapng"),
        sample("http-v4.pcap.gz"),
    ];
    if let Some(big) = std::env::var_os("RSTSCOPE_BENCH_CAPTURE") {
        files.push(PathBuf::from(big));
        group.sample_size(10);
    }
    for path in files {
        let size = std::fs::metadata(&path).unwrap().len();
        group.throughput(Throughput::Bytes(size));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        group.bench_function(name, |b| b.iter(|| black_box(read_all(&path))));
    }
    group.finish();
}

/// What one thread of the split analysis does to each chunk before sorting its packets:
/// read it (`pread`), walk its record headers, and decode its frames; the chunks in order,
/// the buffer reused.
fn read_in_chunks(file: &ChunkedFile) -> (u64, u64) {
    let mut decoder = Decoder::new();
    let (mut packets, mut tcp_bytes) = (0u64, 0u64);
    let mut walk = file.start();
    let mut buffer = Vec::new();
    for index in 0..file.chunks() {
        let bytes = file.read(index, buffer).unwrap();
        let (chunk, next, _fault) = file.walk(index, bytes, walk, |_, _| {});
        for frame in chunk.frames() {
            packets += 1;
            if let Decoded::Tcp(t) = decoder.decode(&frame) {
                tcp_bytes += u64::from(t.payload_len);
            }
        }
        buffer = std::sync::Arc::try_unwrap(chunk.block).unwrap_or_default();
        walk = next;
    }
    (packets, tcp_bytes)
}

fn bench_chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_in_chunks");
    // The sample is cut in 8 KiB chunks so that it has several; a large capture in the
    // analysis's 1 MiB ones.
    let mut files = vec![(sample("http-v4.pcap"), 8 << 10)];
    if let Some(big) = std::env::var_os("RSTSCOPE_BENCH_CAPTURE") {
        files.push((PathBuf::from(big), 1 << 20));
        group.sample_size(10);
    }
    for (path, chunk_bytes) in files {
        let source = InputSource::File(path.clone());
        let mut reader = CaptureReader::open(&source).unwrap();
        let Some(file) = reader.chunked(&source, chunk_bytes) else {
            continue; // not a plain pcap file
        };
        group.throughput(Throughput::Bytes(file.len()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        group.bench_function(name, |b| b.iter(|| black_box(read_in_chunks(&file))));
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_read, bench_chunks);
criterion_main!(benches);
