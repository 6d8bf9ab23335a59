//! Inputs the fuzzers found (minimized), replayed through the same harnesses the fuzz
//! targets run (fuzz/src/lib.rs is included here as a module): each must go through without
//! a panic. `tests/fuzz-regressions/TARGET/` holds the inputs of one target; fuzz/README.md
//! says what each input found.
//!
//! The sample captures are also run through the capture and pipeline harnesses, so that a
//! change that breaks a harness's checks on real input shows up here, without a fuzzer.

use std::fs;
use std::path::{Path, PathBuf};

// The harnesses and seed encoders; the encoders are used only by the fuzz crate's seed
// generator.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

/// The saved inputs of one target, in name order.
fn inputs_of(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every saved input of `target` through `harness`, naming the input that fails.
fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let inputs = inputs_of(target);
    for path in &inputs {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
    inputs.len()
}

#[test]
fn sample_captures_pass_the_capture_and_pipeline_harnesses() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let (inputs, errors) =
        rstscope::capture::expand_inputs(&[samples.to_string_lossy().into_owned()]);
    assert!(errors.is_empty(), "{errors:?}");
    for input in &inputs {
        let rstscope::capture::InputSource::File(path) = &input.source else {
            unreachable!("a folder expands to files");
        };
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        harness::capture_reader(&data);
        harness::pipeline(&data);
    }
    // Every capture of samples/ (pcap, pcapng, gzip, zstd) was found and run.
    assert!(inputs.len() >= 60, "only {} sample captures", inputs.len());
}

/// The reassembler's findings, both fixed in `Reassembler::segment`
/// (src/flow/reassembly.rs): `segment-past-earlier-fin`, a FIN at offset 1 and then a segment
/// at offset 0 with two captured bytes, once delivered both bytes past the FIN, so later
/// chunks overlapped them; `buffer-over-cap-after-one-hole`, small pieces behind holes and
/// then a large one, once left the out-of-order buffer over its cap, as only one hole was
/// given up. The harness checks both: chunks contiguous, the buffer within its cap.
#[test]
fn reassembly_inputs_keep_chunks_contiguous() {
    assert!(replay("reassembly", harness::reassembly) > 0);
}
