//! A finished connection's handler and timeline buffer go back to the engine once the record
//! was read, and later connections fill them (`FlowTable::recycle`): with records handed
//! back, every sample capture must be told exactly as without, on one shard and on several.

mod common;

use std::path::Path;

use common::{captures, samples};
use rstscope::capture::{Input, InputSource};
use rstscope::classify::classify;
use rstscope::detect::Detector;
use rstscope::flow::FlowConfig;
use rstscope::pipeline::analyze_with_progress;

/// Each connection of `path` as JSON: its record, what the detectors found and its verdict.
fn told(path: &Path, shards: usize, hand_back: bool) -> Vec<String> {
    let input = Input {
        display: path.display().to_string(),
        source: InputSource::File(path.to_path_buf()),
    };
    let mut out = Vec::new();
    analyze_with_progress::<Detector, String>(
        &input,
        &FlowConfig::default(),
        shards,
        &|r| {
            let text = serde_json::to_string(&(&r, r.handler.detected(), classify(&r))).unwrap();
            (text, hand_back.then_some(r))
        },
        &mut |text| out.push(text),
        &|_| {},
    );
    out
}

#[test]
fn handing_records_back_changes_nothing_on_any_sample() {
    let mut files = Vec::new();
    captures(&samples(), &mut files);
    assert!(files.len() > 50, "{} captures", files.len());
    let mut connections = 0;
    for path in &files {
        for shards in [1, 2] {
            let fresh = told(path, shards, false);
            let reused = told(path, shards, true);
            assert_eq!(reused, fresh, "{} on {shards} shard(s)", path.display());
            connections += fresh.len();
        }
    }
    // Buffers only go round where a connection ends before a later one starts.
    assert!(connections > 2 * files.len(), "{connections} connections");
}
