//! Property: whatever the order, duplication, splitting and overlapping of a real stream's
//! segments, the reassembled bytes, their order and the gap accounting stay the same, and
//! every delivered byte carries the capture time of a segment that held it.

mod common;

use common::*;
use proptest::prelude::*;
use rstscope::capture::{CaptureReader, InputSource};
use rstscope::decode::{Decoded, Decoder};
use rstscope::flow::{Chunk, Reassembler};

/// (seq, payload) of the server's data segments of the 60 KB download in http-v4.pcap, and
/// the server's ISN.
fn real_segments() -> (u32, Vec<(u32, Vec<u8>)>) {
    let mut reader = CaptureReader::open(&InputSource::File(ingest("http-v4.pcap"))).unwrap();
    let mut decoder = Decoder::new();
    let mut isn = None;
    let mut client_port = None;
    let mut segs = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let Decoded::Tcp(t) = decoder.decode(&frame) {
            if t.src_port != 8080 {
                continue;
            }
            if t.flags.syn() {
                // The second connection is the one with the large response.
                if client_port.is_some() && isn.is_some() && segs.len() > 30 {
                    break;
                }
                isn = Some(t.seq);
                client_port = Some(t.dst_port);
                segs.clear();
            } else if !t.payload.is_empty() && Some(t.dst_port) == client_port {
                segs.push((t.seq, t.payload.to_vec()));
            }
        }
    }
    (isn.unwrap(), segs)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Reassembles `segs` (ts, seq, bytes); returns the stream and its gap bytes.
fn reassemble(isn: u32, segs: &[(i64, u32, Vec<u8>)]) -> (Vec<u8>, u64, Vec<(i64, u64, usize)>) {
    let mut r = Reassembler::new(isn.wrapping_add(1), 1 << 22);
    let mut out = Vec::new();
    let mut chunks = Vec::new();
    let mut next = 0u64;
    let mut sink = |c: Chunk<'_>| match c {
        Chunk::Data {
            ts_ns,
            offset,
            bytes,
        } => {
            assert_eq!(offset, next, "delivered in order");
            chunks.push((ts_ns, offset, bytes.len()));
            out.extend_from_slice(bytes);
            next += bytes.len() as u64;
        }
        Chunk::Gap { offset, len, .. } => {
            assert_eq!(offset, next, "gaps in place");
            next += len;
        }
    };
    for (ts, seq, bytes) in segs {
        r.segment(*ts, *seq, bytes, bytes.len() as u32, &mut sink);
    }
    r.finish(i64::MAX, &mut sink);
    (out, r.counters.gap_bytes, chunks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn shuffled_duplicated_split_and_overlapping_segments_give_the_same_stream(
        seed in 1u64..,
        dup_percent in 0u64..60,
        split_percent in 0u64..60,
        overlap_percent in 0u64..40,
    ) {
        let (isn, original) = real_segments();
        let expected: Vec<u8> = original.iter().flat_map(|(_, b)| b.clone()).collect();
        prop_assert!(expected.len() > 60_000);
        let mut rng = Rng(seed);
        let mut segs: Vec<(u32, Vec<u8>)> = Vec::new();
        for (seq, bytes) in &original {
            if rng.below(100) < split_percent && bytes.len() > 2 {
                let cut = 1 + rng.below(bytes.len() as u64 - 1) as usize;
                segs.push((*seq, bytes[..cut].to_vec()));
                segs.push((seq.wrapping_add(cut as u32), bytes[cut..].to_vec()));
            } else {
                segs.push((*seq, bytes.clone()));
            }
        }
        // Overlaps: a segment spanning the end of one and the start of the next.
        let n = segs.len();
        for i in 0..n.saturating_sub(1) {
            if rng.below(100) < overlap_percent {
                let (s1, b1) = segs[i].clone();
                let (_, b2) = segs[i + 1].clone();
                let from = rng.below(b1.len() as u64) as usize;
                let to = rng.below(b2.len() as u64 + 1) as usize;
                let mut bytes = b1[from..].to_vec();
                bytes.extend_from_slice(&b2[..to]);
                segs.push((s1.wrapping_add(from as u32), bytes));
            }
        }
        let n = segs.len();
        for i in 0..n {
            if rng.below(100) < dup_percent {
                segs.push(segs[i].clone());
            }
        }
        // Fisher-Yates with the seeded generator.
        for i in (1..segs.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            segs.swap(i, j);
        }
        let timed: Vec<(i64, u32, Vec<u8>)> = segs.into_iter().enumerate().map(|(i, (s, b))| (i as i64, s, b)).collect();
        let (stream, gap_bytes, chunks) = reassemble(isn, &timed);
        prop_assert_eq!(gap_bytes, 0);
        prop_assert!(stream == expected, "stream differs ({} vs {} bytes)", stream.len(), expected.len());
        // Each chunk's time is that of a segment that carried all of its bytes.
        for (ts, offset, len) in chunks {
            let (_, seq, bytes) = &timed[ts as usize];
            let start = seq.wrapping_sub(isn.wrapping_add(1)) as u64;
            prop_assert!(start <= offset && offset + len as u64 <= start + bytes.len() as u64);
        }
    }

    #[test]
    fn dropped_segments_are_gaps_of_exactly_their_size(seed in 1u64.., drop_percent in 1u64..30) {
        let (isn, original) = real_segments();
        let mut rng = Rng(seed);
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        // The last segment is always kept so that every hole has bytes after it.
        for (i, (seq, bytes)) in original.iter().enumerate() {
            if i + 1 < original.len() && rng.below(100) < drop_percent {
                dropped += bytes.len() as u64;
            } else {
                kept.push((i as i64, *seq, bytes.clone()));
            }
        }
        let (stream, gap_bytes, _) = reassemble(isn, &kept);
        prop_assert_eq!(gap_bytes, dropped);
        prop_assert_eq!(stream.len() as u64 + dropped, original.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
    }
}
