//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

pub fn ingest(name: &str) -> PathBuf {
    samples().join("ingest").join(name)
}

/// Every capture under `dir`, in a stable order.
pub fn captures(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            captures(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| ["pcap", "pcapng", "gz", "zst", "bin"].contains(&e.to_str().unwrap()))
        {
            out.push(p);
        }
    }
}

/// One row of samples/ingest/expected-counts.tsv, by column name.
pub struct Expected {
    pub cols: Vec<(String, String)>,
}

impl Expected {
    pub fn get(&self, key: &str) -> &str {
        self.cols
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no column {key}"))
    }
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap()
    }
}

pub fn expected_counts() -> Vec<Expected> {
    let text = std::fs::read_to_string(ingest("expected-counts.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| Expected {
            cols: header
                .iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect(),
        })
        .collect()
}

/// Whether the reference tools are here. In CI they must be: a missing tshark there is a
/// failure, not a skipped comparison.
pub fn have_tshark() -> bool {
    let found = Command::new("tshark").arg("--version").output().is_ok()
        && Command::new("capinfos").arg("-h").output().is_ok();
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but tshark/capinfos are not installed");
    }
    found
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nanoseconds since the epoch from tshark's "seconds.nanoseconds" text.
pub fn epoch_text_to_ns(s: &str) -> i64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i64>().unwrap() * 1_000_000_000 + frac[..9].parse::<i64>().unwrap()
}

pub fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// (start, block type) of each block of a little-endian pcapng, walked independently of the
/// code under test.
pub fn pcapng_blocks(b: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 0;
    let mut blocks = Vec::new();
    while at + 8 <= b.len() {
        blocks.push((at, le32(b, at)));
        at += le32(b, at + 4);
    }
    blocks
}

pub fn flow_sample(name: &str) -> PathBuf {
    samples().join("flows").join(name)
}

/// The connections of a capture, in first-frame order, from one engine shard.
pub fn flows_of(path: &Path) -> Vec<rstscope::flow::ConnectionRecord<()>> {
    flows_with(path, 1)
}

pub fn flows_with(path: &Path, shards: usize) -> Vec<rstscope::flow::ConnectionRecord<()>> {
    flows_and_summary(path, shards).0
}

/// Connection records, and what the engine counted besides.
pub type Flows = (
    Vec<rstscope::flow::ConnectionRecord<()>>,
    rstscope::pipeline::InputSummary,
);

/// The connections of `path`, in first-frame order, and what the engine counted besides.
pub fn flows_and_summary(path: &Path, shards: usize) -> Flows {
    let (mut records, summary) = handed_on(path, shards);
    assert!(
        summary.stats.errors.is_empty(),
        "{:?}",
        summary.stats.errors
    );
    records.sort_by_key(|r| r.first_frame);
    (records, summary)
}

/// The connections of `path` in the order the engine hands them on (not sorted), from
/// `shards` engine shards, and what the engine counted besides.
pub fn handed_on(path: &Path, shards: usize) -> Flows {
    let input = rstscope::capture::Input {
        display: path.display().to_string(),
        source: rstscope::capture::InputSource::File(path.to_path_buf()),
    };
    let mut records = Vec::new();
    let summary = rstscope::pipeline::analyze::<()>(
        &input,
        &rstscope::flow::FlowConfig::default(),
        shards,
        &mut |r| records.push(r),
    );
    (records, summary)
}

/// Rows of a tab-separated file with a header, as column-name lookups.
pub fn read_tsv(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| Expected {
            cols: header
                .iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect(),
        })
        .collect()
}
