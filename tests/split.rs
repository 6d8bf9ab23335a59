//! An uncompressed pcap or pcapng file split between threads by chunks (what the analysis does with more than
//! one thread on a file larger than a chunk) gives the same records in the same order, the
//! same counts and the same faults as one thread reading it front to back: with chunk
//! boundaries everywhere (chunks of a few bytes up to a few kilobytes, over every real
//! capture in samples/), with IP fragments of one datagram in different chunks, and on files
//! cut short or with a corrupt length. `rstscope stats` reads such a file in chunks too, and
//! must count the same.

use std::path::{Path, PathBuf};

use rstscope::capture::{Input, InputSource};
use rstscope::classify::classify;
use rstscope::detect::Detector;
use rstscope::flow::FlowConfig;
use rstscope::pipeline::{analyze_in_chunks_of, count_in_chunks_of};

/// Every uncompressed pcap and pcapng file below samples/.
fn plain_captures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let head = std::fs::read(&path).unwrap_or_default();
            let magic = head.get(..4).unwrap_or_default();
            let uncompressed = [
                [0xd4, 0xc3, 0xb2, 0xa1],
                [0xa1, 0xb2, 0xc3, 0xd4],
                [0x4d, 0x3c, 0xb2, 0xa1],
                [0xa1, 0xb2, 0x3c, 0x4d],
                [0x0a, 0x0d, 0x0d, 0x0a],
            ];
            if uncompressed.iter().any(|m| m == magic) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Everything the analysis hands on for `path`: each connection's record and verdict in the
/// order handed on, then the input's counts and faults, as one JSON text.
fn analysis(path: &Path, shards: usize, chunk_bytes: u64) -> String {
    let input = Input {
        display: "capture".into(),
        source: InputSource::File(path.to_path_buf()),
    };
    let mut out = Vec::new();
    let summary = analyze_in_chunks_of::<Detector, _>(
        &input,
        &FlowConfig::default(),
        shards,
        chunk_bytes,
        &|r| {
            let verdict = classify(&r);
            let text = format!(
                "{} {:?}",
                serde_json::to_string(&*r).unwrap(),
                serde_json::to_string(&verdict).unwrap()
            );
            (text, None)
        },
        &mut |line| out.push(line),
        &|_| {},
    );
    out.push(serde_json::to_string(&summary.stats).unwrap());
    // Not the peak of live connections: with shards it is the sum of each shard's peak.
    let t = summary.table;
    out.push(format!("{} {} {}", t.evicted, t.idle_timeouts, t.trailing));
    out.join("\n")
}

/// What `rstscope stats` reports for `path`, as JSON.
fn stats(path: &Path, threads: usize, chunk_bytes: u64) -> String {
    let input = Input {
        display: "capture".into(),
        source: InputSource::File(path.to_path_buf()),
    };
    serde_json::to_string(&count_in_chunks_of(&input, threads, chunk_bytes)).unwrap()
}

/// The analysis and the statistics of `path`, split in chunks of each size between 2 and 3
/// threads, each the same as with one thread.
fn assert_same_split(path: &Path, chunk_sizes: &[u64]) {
    let one = analysis(path, 1, u64::MAX);
    let one_stats = stats(path, 1, u64::MAX);
    for &chunk in chunk_sizes {
        for shards in [2, 3] {
            assert_eq!(
                stats(path, shards, chunk),
                one_stats,
                "{}: stats on {shards} threads in chunks of {chunk} bytes",
                path.display()
            );
            let split = analysis(path, shards, chunk);
            let first_difference = one
                .lines()
                .zip(split.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("one thread:\n{a}\nsplit:\n{b}"));
            assert!(
                split == one,
                "{}: {shards} threads in chunks of {chunk} bytes differ from one thread; {}",
                path.display(),
                first_difference.unwrap_or_else(|| "in the number of lines".into())
            );
        }
    }
}

#[test]
fn every_sample_gives_the_same_analysis_split_in_chunks() {
    let files = plain_captures();
    assert!(files.len() > 50, "{} pcap samples", files.len());
    let pcapng = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pcapng"));
    assert!(pcapng.count() >= 3, "pcapng samples");
    for path in &files {
        let len = std::fs::metadata(path).unwrap().len();
        // Chunks smaller than a record header, than most records, and a few per file.
        assert_same_split(path, &[7, 300, 1_500, len / 3 + 1]);
    }
}

#[test]
fn fragments_of_one_datagram_in_different_chunks_are_reassembled() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/ingest/ipv4-fragments.pcap");
    let one = analysis(&path, 1, u64::MAX);
    assert!(one.contains("\"reassembled_datagrams\":"), "{one}");
    assert!(!one.contains("\"reassembled_datagrams\":0"), "{one}");
    let len = std::fs::metadata(&path).unwrap().len();
    let sizes: Vec<u64> = (1..=40).map(|i| i * 61).chain([len / 2]).collect();
    assert_same_split(&path, &sizes);
}

#[test]
fn cut_and_corrupt_files_end_at_the_same_fault() {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/scenarios/healthy-large-download.pcap");
    let bytes = std::fs::read(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    // Cut inside record headers and inside packets, all through the file.
    for at in (100..bytes.len()).step_by(bytes.len() / 23) {
        std::fs::write(&cut, &bytes[..at]).unwrap();
        let one = analysis(&cut, 1, u64::MAX);
        assert!(one.contains("truncated"), "cut at {at}: {one}");
        let one_stats = stats(&cut, 1, u64::MAX);
        assert!(one_stats.contains("truncated"), "cut at {at}: {one_stats}");
        for chunk in [333, 4_096] {
            assert_eq!(
                analysis(&cut, 2, chunk),
                one,
                "cut at {at}, chunks of {chunk}"
            );
            assert_eq!(
                stats(&cut, 2, chunk),
                one_stats,
                "stats, cut at {at}, chunks of {chunk}"
            );
        }
    }
    // A record header in the middle that claims 2 GB.
    let mut at = 24;
    let mut records = 0;
    while records < 40 {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
        records += 1;
    }
    let mut corrupt = bytes.clone();
    corrupt[at + 8..at + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    std::fs::write(&cut, &corrupt).unwrap();
    let one = analysis(&cut, 1, u64::MAX);
    assert!(one.contains(&format!("\"offset\":{at}")), "{one}");
    let one_stats = stats(&cut, 1, u64::MAX);
    assert!(
        one_stats.contains(&format!("\"offset\":{at}")),
        "{one_stats}"
    );
    for chunk in [333, 4_096, 100_000] {
        assert_eq!(analysis(&cut, 2, chunk), one, "chunks of {chunk}");
        assert_eq!(stats(&cut, 2, chunk), one_stats, "stats, chunks of {chunk}");
    }
}

/// Offsets and types of the blocks of a little-endian pcapng file, walked independently of
/// the code under test.
fn pcapng_blocks(bytes: &[u8]) -> Vec<(usize, u32)> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let block_type = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        blocks.push((at, block_type));
        at += len;
    }
    blocks
}

#[test]
fn pcapng_cut_corrupt_or_with_unknown_interfaces_ends_and_skips_as_one_thread_does() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/ingest/two-interfaces.pcapng");
    let bytes = std::fs::read(&source).unwrap();
    let blocks = pcapng_blocks(&bytes);
    let packets: Vec<usize> = blocks
        .iter()
        .filter(|&&(_, t)| t == 6)
        .map(|&(at, _)| at)
        .collect();
    assert!(packets.len() > 20, "{} packets", packets.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pcapng");
    let same = |path: &Path, what: &str, expect: &str| {
        let one = analysis(path, 1, u64::MAX);
        let one_stats = stats(path, 1, u64::MAX);
        assert!(one_stats.contains(expect), "{what}: {one_stats}");
        for chunk in [200, 1_000, 4_096] {
            assert_eq!(analysis(path, 2, chunk), one, "{what}, chunks of {chunk}");
            assert_eq!(
                stats(path, 2, chunk),
                one_stats,
                "{what}, stats, chunks of {chunk}"
            );
        }
    };
    // Cut inside block headers and inside packets, all through the file.
    for at in (packets[0] + 5..bytes.len()).step_by(bytes.len() / 23) {
        std::fs::write(&path, &bytes[..at]).unwrap();
        same(&path, &format!("cut at {at}"), "truncated");
    }
    // A block in the middle that claims 2 GB, and one whose length is not a multiple of 4.
    for (len, expect) in [(0x7fff_fff0u32, "more than"), (30, "corrupt block")] {
        let at = packets[packets.len() / 2];
        let mut corrupt = bytes.clone();
        corrupt[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        std::fs::write(&path, &corrupt).unwrap();
        same(&path, &format!("length {len} at {at}"), expect);
        assert!(stats(&path, 1, u64::MAX).contains(&format!("\"offset\":{at}")));
    }
    // Packet blocks whose captured length claims more than the block holds, in the middle
    // and last: the block is corrupt, not the file cut short, wherever it lies.
    for at in [packets[packets.len() / 2], packets[packets.len() - 1]] {
        let mut corrupt = bytes.clone();
        corrupt[at + 20..at + 24].copy_from_slice(&60_000u32.to_le_bytes());
        std::fs::write(&path, &corrupt).unwrap();
        same(
            &path,
            &format!("captured length at {at}"),
            "is complete but",
        );
    }
    // Packets of an interface never described, more of them than the offsets kept: each is
    // skipped and counted, and the same first ones are named.
    let mut unknown = bytes.clone();
    for &at in packets.iter().skip(3) {
        unknown[at + 8..at + 12].copy_from_slice(&7u32.to_le_bytes());
    }
    std::fs::write(&path, &unknown).unwrap();
    let skipped = packets.len() - 3;
    assert!(
        skipped > rstscope::capture::MAX_KEPT_FAULTS,
        "{skipped} skipped"
    );
    same(
        &path,
        "unknown interfaces",
        &format!("\"skipped_records\":{skipped}"),
    );
}
