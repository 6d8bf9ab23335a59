//! Bad input is normal input: truncated files, corrupt lengths, hostile values. Each gives a
//! clear fault with its byte offset, keeps the packets read before it, and never panics or
//! allocates by an untrusted length. The broken files are made here from real samples.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rstscope::capture::{Input, InputSource};
use rstscope::stats::{InputStats, collect};

fn stats_of_bytes(dir: &Path, name: &str, bytes: &[u8]) -> InputStats {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    collect(
        &Input {
            display: name.to_string(),
            source: InputSource::File(path),
        },
        1,
    )
}

/// Start offsets of the records of a little-endian legacy pcap, walked independently of the
/// code under test.
fn pcap_records(b: &[u8]) -> Vec<usize> {
    let mut at = 24;
    let mut starts = Vec::new();
    while at + 16 <= b.len() {
        starts.push(at);
        at += 16 + le32(b, at + 8);
    }
    starts.push(b.len());
    starts
}

#[test]
fn pcap_cut_at_every_byte_keeps_complete_records_and_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("ipv4-options.pcap")).unwrap();
    let starts = pcap_records(&full);
    for cut in 0..full.len() {
        let s = stats_of_bytes(dir.path(), "cut.pcap", &full[..cut]);
        if cut < 24 {
            assert_eq!(s.packets, 0);
            assert!(
                s.errors[0].fatal && s.errors[0].offset == 0,
                "cut {cut}: {:?}",
                s.errors
            );
            continue;
        }
        // Record i is complete when record i+1 starts at or before the cut.
        let complete = starts.iter().filter(|&&st| st <= cut).count() - 1;
        let at_boundary = starts.contains(&cut);
        assert_eq!(s.packets as usize, complete, "cut at {cut}");
        if at_boundary {
            assert!(s.errors.is_empty(), "cut at boundary {cut}: {:?}", s.errors);
        } else {
            let record = *starts.iter().rfind(|&&st| st <= cut).unwrap();
            assert_eq!(s.errors.len(), 1, "cut {cut}");
            assert!(s.errors[0].fatal);
            assert_eq!(s.errors[0].offset as usize, record, "cut {cut}");
            assert!(
                s.errors[0].message.contains("truncated"),
                "{}",
                s.errors[0].message
            );
        }
    }
}

#[test]
fn pcapng_cut_at_every_byte_keeps_complete_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("two-interfaces.pcapng")).unwrap();
    let blocks = pcapng_blocks(&full);
    let shb_len = le32(&full, 4);
    for cut in 0..full.len() {
        let s = stats_of_bytes(dir.path(), "cut.pcapng", &full[..cut]);
        let complete: Vec<_> = blocks
            .iter()
            .filter(|(st, _)| st + le32(&full, st + 4) <= cut)
            .collect();
        let epbs = complete.iter().filter(|(_, t)| *t == 6).count();
        assert_eq!(s.packets as usize, epbs, "cut at {cut}");
        let at_boundary = blocks.iter().any(|(st, _)| *st == cut) || cut == full.len();
        if cut < shb_len {
            assert!(s.errors[0].fatal && s.errors[0].offset == 0, "cut {cut}");
        } else if at_boundary {
            assert!(s.errors.is_empty(), "cut at boundary {cut}: {:?}", s.errors);
        } else {
            let block = blocks.iter().rfind(|(st, _)| *st <= cut).unwrap().0;
            assert_eq!(s.errors.len(), 1, "cut {cut}");
            assert_eq!(s.errors[0].offset as usize, block, "cut {cut}");
        }
    }
}

#[test]
fn hostile_pcap_record_lengths_stop_with_a_clear_fault() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("http-v4.pcap")).unwrap();
    let starts = pcap_records(&full);
    let third = starts[2];
    for caplen in [u32::MAX, 1 << 30, 300_000] {
        let mut b = full.clone();
        b[third + 8..third + 12].copy_from_slice(&caplen.to_le_bytes());
        let s = stats_of_bytes(dir.path(), "len.pcap", &b);
        assert_eq!(s.packets, 2, "caplen {caplen}");
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].offset as usize, third);
        assert!(
            s.errors[0].message.contains(&caplen.to_string()),
            "{}",
            s.errors[0].message
        );
    }
    // A zero caplen makes the next packet's bytes be read as record headers: whatever that
    // gives, it ends with a fault or the end of the file, never a panic.
    let mut b = full.clone();
    b[third + 8..third + 12].copy_from_slice(&0u32.to_le_bytes());
    let s = stats_of_bytes(dir.path(), "zero.pcap", &b);
    assert!(s.packets >= 3);
    // snaplen 0 in the file header is harmless.
    let mut b = full.clone();
    b[16..20].copy_from_slice(&0u32.to_le_bytes());
    let s = stats_of_bytes(dir.path(), "snap0.pcap", &b);
    assert_eq!(s.packets, 92);
}

#[test]
fn hostile_pcapng_block_lengths_stop_with_a_clear_fault() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("two-interfaces.pcapng")).unwrap();
    let blocks = pcapng_blocks(&full);
    let epbs: Vec<usize> = blocks
        .iter()
        .filter(|(_, t)| *t == 6)
        .map(|(s, _)| *s)
        .collect();
    let target = epbs[3];
    for len in [0u32, 1, 13, u32::MAX, 1 << 30, 64] {
        let mut b = full.clone();
        b[target + 4..target + 8].copy_from_slice(&len.to_le_bytes());
        let s = stats_of_bytes(dir.path(), "len.pcapng", &b);
        assert_eq!(s.packets, 3, "block length {len}: {:?}", s.errors);
        let fatal: Vec<_> = s.errors.iter().filter(|e| e.fatal).collect();
        assert_eq!(fatal.len(), 1, "block length {len}");
        assert_eq!(
            fatal[0].offset as usize, target,
            "block length {len}: {}",
            fatal[0].message
        );
    }
}

#[test]
fn unknown_interface_id_skips_the_packet_and_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("two-interfaces.pcapng")).unwrap();
    let blocks = pcapng_blocks(&full);
    let target = blocks.iter().filter(|(_, t)| *t == 6).nth(5).unwrap().0;
    let mut b = full.clone();
    b[target + 8..target + 12].copy_from_slice(&7u32.to_le_bytes());
    let s = stats_of_bytes(dir.path(), "ifid.pcapng", &b);
    assert_eq!(s.packets, 31);
    assert_eq!(s.skipped_records, 1);
    assert!(!s.errors[0].fatal);
    assert_eq!(s.errors[0].offset as usize, target);
    assert!(
        s.errors[0].message.contains("interface 7"),
        "{}",
        s.errors[0].message
    );
    assert!(s.has_errors());
}

#[test]
fn files_that_are_not_captures_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "ends before"),
        ("tiny", vec![0xd4, 0xc3], "ends before"),
        (
            "text",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "not a capture",
        ),
        (
            "header-only-magic",
            vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0],
            "ends before",
        ),
    ];
    for (name, bytes, message) in cases {
        let s = stats_of_bytes(dir.path(), name, &bytes);
        assert_eq!(s.packets, 0);
        assert!(s.format.is_none(), "{name}");
        assert!(
            s.errors[0].fatal && s.errors[0].message.contains(message),
            "{name}: {:?}",
            s.errors
        );
    }
}

#[test]
fn damaged_compressed_input_keeps_what_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["http-v4.pcap.gz", "http-v4.pcap.zst"] {
        let full = std::fs::read(ingest(name)).unwrap();
        let cut = &full[..full.len() * 2 / 3];
        let s = stats_of_bytes(dir.path(), name, cut);
        // The gzip sample has two members, so the first half survives; the zstd sample is
        // one block that cannot be decompressed at all once cut.
        if name.ends_with(".gz") {
            assert!(s.packets > 0 && s.packets < 92, "{name}: {}", s.packets);
        }
        let fatal = s.errors.iter().find(|e| e.fatal).unwrap();
        assert!(
            fatal.message.contains("stream is damaged"),
            "{name}: {}",
            fatal.message
        );
        // Garbage behind a valid compression magic.
        let mut junk = full[..4].to_vec();
        junk.extend_from_slice(&[0x55; 64]);
        let s = stats_of_bytes(dir.path(), name, &junk);
        assert_eq!(s.packets, 0);
        assert!(s.errors[0].fatal, "{name}");
    }
}

#[test]
fn random_garbage_after_a_valid_header_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = std::fs::read(ingest("http-v4.pcap")).unwrap();
    let ng = std::fs::read(ingest("two-interfaces.pcapng")).unwrap();
    // A fixed xorshift sequence: the same bytes every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let base = if round % 2 == 0 { &pcap } else { &ng };
        let mut b = base.clone();
        let flips = 1 + (next() % 16) as usize;
        for _ in 0..flips {
            let at = (next() as usize) % b.len();
            b[at] = next() as u8;
        }
        let s = stats_of_bytes(dir.path(), "flipped", &b);
        assert!(s.packets <= base.len() as u64);
    }
}
