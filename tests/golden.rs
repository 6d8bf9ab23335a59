//! Golden outputs: every format as a user gets it on the bundled samples, so any change to
//! what a report says shows up as a snapshot diff to review (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test --test golden` and then `git diff tests/snapshots`).
//!
//! The outputs are stable by construction: inputs are given as paths relative to the crate
//! root (the binary runs there), every time printed comes from the capture, the table's width
//! comes from `COLUMNS` (stdout is not a terminal here), colour is off, and no report prints
//! a version, a run time or an absolute path. Each output is also produced with one thread
//! and with several, and must be the same bytes.

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

/// The whole recorded failure set, for the formats that list every connection.
const SCENARIOS: &str = "samples/scenarios";

/// A few scenarios of different kinds (connect, HTTP/1 reset, keep-alive race, HTTP/2 stream
/// resets), small enough that the html snapshot stays reviewable.
const SMALL_SET: [&str; 4] = [
    "samples/scenarios/connect-refused.pcap",
    "samples/scenarios/upstream-rst-after-request.pcap",
    "samples/scenarios/keepalive-race.pcap",
    "samples/scenarios/h2-rst-stream.pcap",
];

/// Runs rstscope from the crate root with `args` and returns its standard output, after
/// checking it read its inputs without faults and wrote nothing on stderr.
fn rstscope(args: &[&str]) -> String {
    let out = Command::cargo_bin("rstscope")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("COLUMNS", "160")
        .env_remove("NO_COLOR")
        .args(args)
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "rstscope {args:?} failed to read its inputs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "rstscope {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.is_empty(), "rstscope {args:?} printed nothing");
    text
}

/// `command` (empty for the analysis, else a subcommand's name) with `args`, on one thread
/// and on four: the output, which must be the same bytes both times.
fn report_of(command: &[&str], args: &[&str]) -> String {
    let with_jobs = |jobs: &'static str| {
        let mut all = command.to_vec();
        all.extend(["-j", jobs]);
        all.extend_from_slice(args);
        rstscope(&all)
    };
    let one = with_jobs("1");
    assert_eq!(
        one,
        with_jobs("4"),
        "rstscope {command:?} {args:?}: -j1 and -j4 differ"
    );
    one
}

fn report(args: &[&str]) -> String {
    report_of(&[], args)
}

fn subcommand(name: &str, args: &[&str]) -> String {
    report_of(&[name], args)
}

#[test]
fn table() {
    insta::assert_snapshot!("table_scenarios", report(&["--color", "never", SCENARIOS]));
}

#[test]
fn table_with_every_connection() {
    insta::assert_snapshot!(
        "table_all_flows",
        report(&["--color", "never", "--all", "samples/flows"])
    );
}

#[test]
fn json() {
    insta::assert_snapshot!("json_scenarios", report(&["--format", "json", SCENARIOS]));
}

#[test]
fn ndjson() {
    insta::assert_snapshot!(
        "ndjson_scenarios",
        report(&["--format", "ndjson", SCENARIOS])
    );
}

#[test]
fn csv() {
    insta::assert_snapshot!("csv_scenarios", report(&["--format", "csv", SCENARIOS]));
}

#[test]
fn markdown() {
    insta::assert_snapshot!(
        "markdown_scenarios",
        report(&["--format", "markdown", SCENARIOS])
    );
}

#[test]
fn html() {
    let mut args = vec!["--format", "html"];
    args.extend_from_slice(&SMALL_SET);
    insta::assert_snapshot!("html_small_set", report(&args));
}

#[test]
fn flows() {
    insta::assert_snapshot!("flows_table", subcommand("flows", &["samples/flows"]));
}

/// The text of every protocol the detectors tell (TLS, HTTP/2, alerts, GOAWAY, RST_STREAM,
/// bytes of no known protocol), which samples/flows does not carry.
#[test]
fn flows_scenarios() {
    insta::assert_snapshot!("flows_table_scenarios", subcommand("flows", &[SCENARIOS]));
}

#[test]
fn flows_ndjson() {
    insta::assert_snapshot!(
        "flows_ndjson_port_reuse",
        subcommand(
            "flows",
            &["--format", "ndjson", "samples/flows/port-reuse.pcap"]
        )
    );
}

#[test]
fn explain() {
    insta::assert_snapshot!(
        "explain_keepalive_race",
        // explain has no -j: it runs on every core.
        rstscope(&["explain", "samples/scenarios/keepalive-race.pcap", ":35074"])
    );
}

#[test]
fn stats() {
    insta::assert_snapshot!("stats_ingest", subcommand("stats", &["samples/ingest"]));
}

#[test]
fn stats_json() {
    insta::assert_snapshot!(
        "stats_json_ingest",
        subcommand("stats", &["--format", "json", "samples/ingest"])
    );
}
