//! Reading ahead on a thread of its own (what the analysis does with workers) hands out the
//! same frames, the same offsets and the same faults as reading on the caller's thread, also
//! when records straddle the read-ahead blocks or are larger than the room kept for that.
//!
//! The captures are built here: what matters is the record sizes against the block sizes,
//! which real loopback traffic (1,514-byte frames at most) does not vary enough.

use rstscope::capture::{CaptureReader, InputSource};

/// Record sizes cycling through tiny, MTU-sized, jumbo, larger than the 64 KiB room kept in
/// front of each block, and the 262,144-byte snaplen.
const SIZES: [usize; 8] = [60, 1514, 70_000, 300, 262_144, 9_000, 131_072, 1_514];

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn legacy_pcap(records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..records {
        let data = payload(i, SIZES[i % SIZES.len()]);
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&(i as u32 % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
    }
    out
}

fn pcapng_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend_from_slice(&total.to_le_bytes());
}

fn pcapng(records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    pcapng_block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    pcapng_block(&mut out, 1, &idb);
    for i in 0..records {
        let data = payload(i, SIZES[(i + 3) % SIZES.len()]);
        let ts = 1_700_000_000_000_000u64 + i as u64;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&data);
        epb.resize(20 + data.len().div_ceil(4) * 4, 0);
        pcapng_block(&mut out, 6, &epb);
    }
    out
}

/// Every frame as (offset, timestamp, bytes), then the fault that ended the input, if any.
type Reading = (Vec<(u64, i64, Vec<u8>)>, Option<String>);

fn read_all(bytes: &[u8], ahead: bool) -> Reading {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture");
    std::fs::write(&path, bytes).unwrap();
    let mut reader = CaptureReader::open(&InputSource::File(path)).unwrap();
    if ahead {
        reader.read_ahead();
    }
    let mut frames = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => frames.push((f.offset, f.ts_ns, f.data.to_vec())),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e.to_string())),
        }
    }
}

fn assert_same_reading(name: &str, bytes: &[u8]) -> Reading {
    let direct = read_all(bytes, false);
    let ahead = read_all(bytes, true);
    assert_eq!(direct.0.len(), ahead.0.len(), "{name}: frame count");
    for (d, a) in direct.0.iter().zip(&ahead.0) {
        assert_eq!(d, a, "{name}: frame at offset {}", d.0);
    }
    assert_eq!(direct.1, ahead.1, "{name}: fault");
    direct
}

#[test]
fn read_ahead_gives_the_same_frames_across_block_boundaries() {
    for (name, bytes, records) in [
        ("pcap", legacy_pcap(200), 200),
        ("pcapng", pcapng(200), 200),
    ] {
        // About 12 MB: dozens of read-ahead blocks, records cut by most of their boundaries.
        assert!(bytes.len() > 10 << 20);
        let (frames, fault) = assert_same_reading(name, &bytes);
        assert_eq!(frames.len(), records, "{name}");
        assert_eq!(fault, None, "{name}");
        for (i, (_, _, data)) in frames.iter().enumerate() {
            let size = SIZES[(i + if name == "pcap" { 0 } else { 3 }) % SIZES.len()];
            assert_eq!(data, &payload(i, size), "{name}: frame {i}");
        }
    }
}

#[test]
fn read_ahead_reports_a_truncated_end_like_direct_reading() {
    for (name, bytes) in [("pcap", legacy_pcap(40)), ("pcapng", pcapng(40))] {
        for cut in [1, 17, 40_000, 200_000] {
            let cut_bytes = &bytes[..bytes.len() - cut];
            let (frames, fault) = assert_same_reading(name, cut_bytes);
            assert!(fault.is_some(), "{name} cut by {cut}: no fault reported");
            assert!(frames.len() < 40, "{name} cut by {cut}");
        }
    }
}

#[test]
fn read_ahead_reports_a_cut_giant_block_like_direct_reading() {
    // A block that declares 15 MiB and ends after 3 MiB: read on, block by block, until the
    // input ends inside it; both ways report the same fault at the same offset.
    let mut bytes = pcapng(5);
    bytes.extend_from_slice(&6u32.to_le_bytes());
    bytes.extend_from_slice(&(15u32 << 20).to_le_bytes());
    bytes.resize(bytes.len() + (3 << 20), 0xab);
    let (frames, fault) = assert_same_reading("giant block", &bytes);
    assert_eq!(frames.len(), 5);
    assert!(fault.is_some(), "no fault reported");
}
