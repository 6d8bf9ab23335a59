//! The command line as a user runs it: inputs, stdin, folders, formats, exit statuses.

mod common;

use assert_cmd::Command;
use common::*;
use predicates::prelude::*;

fn rstscope() -> Command {
    Command::cargo_bin("rstscope").unwrap()
}

#[test]
fn clean_capture_exits_zero_with_its_counts() {
    rstscope()
        .args(["stats", ingest("http-v4.pcap").to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("packets       92"))
        .stdout(predicate::str::contains("TCP conns     3"));
}

#[test]
fn stdin_is_read_when_the_input_is_a_dash() {
    let bytes = std::fs::read(ingest("http-v4.pcap.zst")).unwrap();
    let out = rstscope()
        .args(["stats", "--format", "ndjson", "-"])
        .write_stdin(bytes)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["path"], "-");
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["packets"], 92);
}

#[test]
fn json_has_one_object_per_input_with_the_documented_keys() {
    let out = rstscope()
        .args(["stats", "--format", "json"])
        .arg(ingest("http-v6.pcap"))
        .arg(ingest("two-interfaces.pcapng"))
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    for key in [
        "path",
        "format",
        "link_types",
        "packets",
        "bytes",
        "tcp_packets",
        "tcp_connections",
        "first",
        "last",
        "errors",
    ] {
        assert!(arr[0].get(key).is_some(), "missing key {key}");
    }
    assert_eq!(arr[1]["format"], "pcapng");
    assert_eq!(
        arr[1]["link_types"],
        serde_json::json!(["ETHERNET", "LINUX_SLL"])
    );
}

#[test]
fn folders_are_walked_and_captures_found_by_magic_bytes_not_names() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::copy(ingest("http-v4.pcap"), dir.path().join("capture.txt")).unwrap();
    std::fs::copy(ingest("http-v4.pcap.gz"), nested.join("archived")).unwrap();
    std::fs::write(dir.path().join("notes.pcap"), "not a capture").unwrap();
    std::fs::write(nested.join("log.gz"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let out = rstscope()
        .args(["stats", "--format", "ndjson"])
        .arg(dir.path())
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let paths: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].ends_with("a/b/archived"));
    assert!(paths[1].ends_with("capture.txt"));
}

#[test]
fn a_broken_input_is_named_with_its_offset_and_its_packets_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(ingest("http-v4.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..5000]).unwrap();
    rstscope()
        .arg("stats")
        .arg(&cut)
        .arg(ingest("http-v6.pcap"))
        .assert()
        // Exit status 2 is for an input that could not be read at all.
        .code(0)
        .stderr(predicate::str::contains(
            "cut.pcap: at byte offset 4230: capture is truncated",
        ))
        // The packets before the fault and the other input are still reported.
        .stdout(predicate::str::contains("packets       17"))
        .stdout(predicate::str::contains("packets       91"));
}

#[test]
fn a_missing_path_and_a_non_capture_exit_two() {
    rstscope()
        .args(["stats", "/nonexistent/capture.pcap"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/capture.pcap"));
    rstscope()
        .arg("stats")
        .arg(ingest("README.md"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a capture file"));
}

#[test]
fn one_or_many_threads_print_the_same_bytes() {
    let run = |jobs: &str| {
        rstscope()
            .args(["stats", "--format", "json", "-j", jobs])
            .arg(samples().join("ingest"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone()
    };
    assert_eq!(run("1"), run("4"));
}

#[test]
fn flows_lists_connections_and_any_thread_count_prints_the_same_bytes() {
    let run = |jobs: &str, format: &str| {
        rstscope()
            .args(["flows", "--format", format, "-j", jobs])
            .arg(samples().join("flows/port-reuse.pcap"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone()
    };
    for format in ["table", "ndjson"] {
        let one = run("1", format);
        assert_eq!(one, run("4", format), "{format}");
        assert_eq!(one, run("2", format), "{format}");
    }
    let text = String::from_utf8(run("1", "table")).unwrap();
    assert_eq!(
        text.matches("127.0.0.1:41000 -> 127.0.0.1:8080").count(),
        5,
        "{text}"
    );
    assert!(text.contains("5 TCP connections"));
    let lines = String::from_utf8(run("2", "ndjson")).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    for key in [
        "capture",
        "client",
        "server",
        "roles",
        "start",
        "handshake",
        "client_sent",
        "server_sent",
        "end",
        "events",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
}

/// In two-interfaces.pcapng the second interface's copy of the connection follows the
/// first's: the connection ended with the first copy, and the list says how many segments
/// came after it and count in no connection.
#[test]
fn flows_says_how_many_segments_came_after_their_connection_ended() {
    let text = rstscope()
        .arg("flows")
        .arg(ingest("two-interfaces.pcapng"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("packets c>s/s>c 7/5 "), "{text}");
    assert!(
        text.contains(
            "1 TCP connections; 12 segments came after their connection had ended (both FINs acknowledged) and count in none"
        ),
        "{text}"
    );
    // Without trailing segments, no such note.
    rstscope()
        .arg("flows")
        .arg(ingest("http-v4.pcap"))
        .assert()
        .success()
        .stdout(predicate::str::contains("came after").not());
}

fn flows_ndjson(args: &[&str], capture: &str) -> Vec<serde_json::Value> {
    let out = rstscope()
        .args(["flows", "--format", "ndjson"])
        .args(args)
        .arg(samples().join(capture))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_connection_cap_closes_the_least_recently_active_and_says_so() {
    // The client-to-proxy connection is still open when the proxy connects upstream: with
    // room for one connection it is cut short, and its 5-tuple's later packets start anew.
    let capture = "scenarios/upstream-fin-after-request.pcap";
    let records = flows_ndjson(&["--max-connections", "1"], capture);
    let ends: Vec<&str> = records.iter().map(|r| r["end"].as_str().unwrap()).collect();
    assert_eq!(ends, ["evicted", "closed", "closed"], "{records:?}");
    assert_eq!(flows_ndjson(&[], capture).len(), 2);
    let text = rstscope()
        .args(["flows", "--max-connections", "1"])
        .arg(samples().join(capture))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("(1 closed early by the live-connection cap)")
    );
}

#[test]
fn a_closed_connection_that_makes_room_was_not_cut_short() {
    // The long connection had closed and was only lingering when the second one started:
    // making room for it ends the first with its own close, not as cut short by the cap.
    let records = flows_ndjson(&["--max-connections", "1"], "flows/mid-connection.pcap");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["end"], "closed");
    assert_eq!(records[1]["end"], "closed");
    let text = rstscope()
        .args(["flows", "--max-connections", "1"])
        .arg(samples().join("flows/mid-connection.pcap"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        !String::from_utf8(text)
            .unwrap()
            .contains("live-connection cap")
    );
}

#[test]
fn explain_draws_the_ladder_of_one_connection_and_its_verdict() {
    let out = rstscope()
        .arg("explain")
        .arg(samples().join("scenarios/keepalive-race.pcap"))
        .arg(":35074")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    // Client events on the left with an arrow to the server, server events on the right.
    let order = [
        "SYN ",
        "SYN-ACK",
        "GET /ka",
        "HTTP/1.1 200",
        "idle",
        "FIN",
        "GET /ka",
        "RST",
    ];
    let mut at = 0;
    for want in order {
        let found = text[at..]
            .find(want)
            .unwrap_or_else(|| panic!("'{want}' after byte {at} in:\n{text}"));
        at += found + want.len();
    }
    assert!(
        text.lines()
            .any(|l| l.contains("SYN ") && l.trim_end().ends_with("───▶"))
    );
    assert!(text.lines().any(|l| l.contains("◀─── RST")));
    assert!(text.contains("Verdict: keepalive_race (certain, phase request)"));
    assert!(text.contains("nginx:   upstream prematurely closed connection"));
    // By frame number and by endpoints too; a selector that matches nothing exits 2.
    rstscope()
        .arg("explain")
        .arg(samples().join("scenarios/keepalive-race.pcap"))
        .arg("1")
        .assert()
        .code(1);
    rstscope()
        .arg("explain")
        .arg(samples().join("scenarios/keepalive-race.pcap"))
        .arg("127.0.0.1:35074-127.0.0.1:9110")
        .assert()
        .code(1);
    rstscope()
        .arg("explain")
        .arg(samples().join("scenarios/keepalive-race.pcap"))
        .arg(":1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no connection matches"));
}

#[test]
fn the_analysis_writes_csv_and_json_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("verdicts.csv");
    rstscope()
        .args(["--format", "csv", "--all", "-o"])
        .arg(&csv_path)
        .arg(samples().join("scenarios/upstream-rst-after-request.pcap"))
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty());
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "capture",
        "client",
        "server",
        "class",
        "closed_by",
        "close",
        "explanation",
    ] {
        assert!(header.contains(&col), "missing column {col}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "both legs with --all");
    assert!(rows.iter().any(|r| r.contains(",reset_before_response,")));
    assert!(
        rows.iter()
            .any(|r| r.contains(",ok,") && r.contains(",502,")
                || r.contains(",ok,") && r.ends_with("Nothing failed on the wire."))
    );

    let out = rstscope()
        .args(["--format", "json"])
        .arg(samples().join("scenarios/upstream-rst-after-request.pcap"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["summary"]["connections"], 2);
    assert_eq!(doc["summary"]["failing"], 1);
    assert_eq!(doc["connections"].as_array().unwrap().len(), 1);
    assert_eq!(doc["connections"][0]["class"], "reset_before_response");
    assert!(doc["summary"]["server_errors"][0]["status"] == 502);
    // CSV exists only for the analysis.
    rstscope()
        .args(["stats", "--format", "csv"])
        .arg(ingest("http-v4.pcap"))
        .assert()
        .code(2);
}

#[test]
fn filters_pick_connections_by_server_port_class_and_time() {
    let classes = |args: &[&str]| -> Vec<String> {
        let out = rstscope()
            .args(["--all", "--format", "ndjson"])
            .args(args)
            .arg(samples().join("scenarios"))
            .assert()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["class"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let races = classes(&["--class", "keepalive_race,h2_goaway"]);
    assert_eq!(races.len(), 3, "{races:?}");
    assert!(
        races
            .iter()
            .all(|c| c == "keepalive_race" || c == "h2_goaway")
    );
    // The upstream of the FIN scenario and its variants, over IPv4 only with --server.
    let by_server = classes(&["--server", "127.0.0.1:9101"]);
    assert!(
        !by_server.is_empty() && by_server.iter().all(|c| c == "closed_before_response"),
        "{by_server:?}"
    );
    let by_port = classes(&["--port", "9101"]);
    assert_eq!(by_port.len(), by_server.len() + 1, "the IPv6 variant too");
    let none = classes(&["--until", "2000-01-01T00:00:00Z"]);
    assert!(none.is_empty());
    rstscope()
        .args(["--class", "no_such_class"])
        .arg(samples().join("scenarios"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no class id"));
    rstscope()
        .args(["--since", "soon"])
        .arg(samples().join("scenarios"))
        .assert()
        .code(2);
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    // Under the test harness stderr is a pipe: the report alone, on stdout; stderr stays
    // empty for clean inputs.
    let out = rstscope()
        .arg(samples().join("scenarios/healthy-large-download.pcap"))
        .assert()
        .success();
    assert!(
        out.get_output().stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.get_output().stderr)
    );
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("0 failing"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let run = |args: &[&str]| {
        let out = rstscope()
            .args(args)
            .arg(samples().join("scenarios/keepalive-race.pcap"))
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    // Not a terminal here: no escape codes by default.
    assert!(!run(&[]).contains('\x1b'));
    assert!(!run(&["--color", "never"]).contains('\x1b'));
    let coloured = run(&["--color", "always"]);
    assert!(
        coloured.contains("\x1b[1;31mkeepalive_race"),
        "failures in red"
    );
    // The table lists the connection with its key timing and the first clause of the why.
    assert!(run(&[]).lines().any(|l| l.contains("keepalive_race")
        && l.contains("server FIN")
        && l.contains("idle 2.0 s before")
        && l.contains("Keep-alive race")));
}

#[test]
fn markdown_is_a_ticket_ready_report_with_one_ladder_per_failure_class() {
    let out = rstscope()
        .args(["--format", "markdown"])
        .arg(samples().join("scenarios"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let md = String::from_utf8(out).unwrap();
    assert!(md.starts_with("# rstscope report\n"));
    for heading in [
        "## Findings",
        "## Connections by server and class",
        "## Failing connections",
    ] {
        assert!(md.contains(heading), "missing {heading}");
    }
    assert!(md.contains("| time | client → server | class | closed by | timing | why |"));
    // One ladder per distinct failing class, each in a closed code block.
    let ladders = md.matches("\n## `").count();
    let classes: std::collections::BTreeSet<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" → "))
        .filter_map(|l| l.split('|').nth(3).map(str::trim))
        .filter(|c| c.starts_with('`'))
        .map(|c| c.trim_matches('`'))
        .collect();
    assert_eq!(ladders, classes.len(), "{classes:?}");
    assert_eq!(md.matches("```").count(), 2 * ladders);
    assert!(md.contains("───▶") && md.contains("◀───"));
}

#[test]
fn the_listing_cap_keeps_the_first_connections_and_counts_the_rest() {
    let json = |extra: &[&str]| -> serde_json::Value {
        let out = rstscope()
            .args(["--format", "json"])
            .args(extra)
            .arg(samples().join("scenarios"))
            .assert()
            .code(1)
            .get_output()
            .clone();
        if extra.is_empty() {
            assert!(out.stderr.is_empty());
        } else {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("were not listed (--max-listed 5)")
            );
        }
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let whole = json(&[]);
    let capped = json(&["--max-listed", "5"]);
    let failing = whole["summary"]["failing"].as_u64().unwrap();
    assert!(failing > 5);
    assert_eq!(
        whole["connections"].as_array().unwrap().len() as u64,
        failing
    );
    assert!(whole["summary"].get("unlisted").is_none());
    // The summary is the same; only the listing is cut, and says by how much.
    assert_eq!(capped["summary"]["failing"], whole["summary"]["failing"]);
    assert_eq!(
        capped["summary"]["by_server"],
        whole["summary"]["by_server"]
    );
    assert_eq!(capped["connections"].as_array().unwrap().len(), 5);
    assert_eq!(capped["summary"]["unlisted"].as_u64().unwrap(), failing - 5);
}
