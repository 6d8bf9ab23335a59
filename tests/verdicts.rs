//! The expected verdict of every connection in every failure scenario recorded in
//! samples/scenarios/ (what tshark shows of each capture, written next to it by the lab).

mod common;

use common::*;
use rstscope::capture::{Input, InputSource};
use rstscope::classify::{CloseKind, Verdict, classify};
use rstscope::detect::Detector;
use rstscope::flow::{ConnectionRecord, FlowConfig, Side};

fn judged(path: &std::path::Path) -> Vec<(ConnectionRecord<Detector>, Verdict)> {
    let input = Input {
        display: path.display().to_string(),
        source: InputSource::File(path.to_path_buf()),
    };
    let mut out = Vec::new();
    let summary =
        rstscope::pipeline::analyze::<Detector>(&input, &FlowConfig::default(), 1, &mut |r| {
            let v = classify(&r);
            out.push((r, v));
        });
    assert!(
        summary.stats.errors.is_empty(),
        "{:?}",
        summary.stats.errors
    );
    out.sort_by_key(|(r, _)| r.first_frame);
    out
}

fn side(s: Option<Side>) -> &'static str {
    match s {
        Some(Side::Client) => "client",
        Some(Side::Server) => "server",
        None => "none",
    }
}

fn close(c: CloseKind) -> &'static str {
    match c {
        CloseKind::Fin => "fin",
        CloseKind::Rst => "rst",
        CloseKind::None => "none",
    }
}

/// Checks the `key=value` details of an expected row against the verdict.
fn check_details(what: &str, details: &str, v: &Verdict) {
    if details == "-" {
        return;
    }
    for item in details.split(';') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key {
            "alert" => assert_eq!(
                v.tls.alert.as_ref().and_then(|a| a.description.as_deref()),
                Some(value),
                "{what}: alert"
            ),
            "alert_from" => assert_eq!(
                v.tls.alert.as_ref().map(|a| side(Some(a.from))),
                Some(value),
                "{what}: alert from"
            ),
            "alpn_offered" => {
                assert_eq!(v.tls.alpn_offered.join("+"), value, "{what}: ALPN offered")
            }
            "alpn_selected" => assert_eq!(
                v.tls.alpn_selected.as_deref(),
                Some(value),
                "{what}: ALPN selected"
            ),
            "tls" => assert_eq!(
                v.tls.version.as_deref(),
                Some(format!("TLS {value}").as_str()),
                "{what}: TLS version"
            ),
            "status" => {
                let seen: Vec<String> = v
                    .requests
                    .iter()
                    .filter_map(|r| r.status)
                    .map(|s| s.to_string())
                    .collect();
                for s in value.split(',') {
                    assert!(
                        seen.iter().any(|x| x == s),
                        "{what}: status {s} not in {seen:?}"
                    );
                }
            }
            "h2_rst_stream" => {
                let seen: Vec<String> =
                    v.h2.rst_stream
                        .iter()
                        .filter(|r| r.from == Side::Server)
                        .map(|r| format!("{}:{}", r.stream_id.unwrap_or(0), r.error_code))
                        .collect();
                assert_eq!(seen.join(","), value, "{what}: RST_STREAM");
            }
            "goaway" => {
                // The expected rows list each distinct GOAWAY once; servers repeat them.
                let mut seen: Vec<String> =
                    v.h2.goaway
                        .iter()
                        .filter(|g| g.from == Side::Server)
                        .map(|g| {
                            format!(
                                "last:{},code:{}",
                                g.last_stream_id.unwrap_or(0),
                                g.error_code
                            )
                        })
                        .collect();
                seen.dedup();
                assert_eq!(seen.join(","), value, "{what}: GOAWAY");
            }
            "syns" => assert_eq!(
                v.timings.syn_schedule_ms.len().to_string(),
                value,
                "{what}: SYNs"
            ),
            "idle" | "wait" => {
                let expected: f64 = value.trim_end_matches('s').parse().unwrap();
                let got = if key == "wait" {
                    v.timings.wait_ms
                } else {
                    v.timings
                        .idle_before_request_ms
                        .or(v.timings.idle_before_close_ms)
                };
                let got = got.unwrap_or(-1e9) / 1000.0;
                assert!(
                    (got - expected).abs() < 0.05,
                    "{what}: {key} {got} s, expected {expected} s"
                );
            }
            // first_server_bytes is a note for people; the classes above depend on it.
            _ => {}
        }
    }
}

#[test]
fn every_connection_in_every_scenario_gets_its_expected_verdict() {
    let dir = samples().join("scenarios");
    let mut expected_files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".expected.tsv"))
        .collect();
    expected_files.sort();
    assert!(
        expected_files.len() >= 30,
        "{} scenarios",
        expected_files.len()
    );
    let mut classes = std::collections::BTreeSet::new();
    for exp in expected_files {
        let stem = exp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".expected.tsv")
            .to_string();
        let capture = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with(&format!("{stem}."))
                    && !name.ends_with(".tsv")
                    && !name.ends_with(".log")
            })
            .unwrap_or_else(|| panic!("no capture for {stem}"));
        let rows = read_tsv(&exp);
        let got = judged(&capture);
        assert_eq!(got.len(), rows.len(), "{stem}: connections");
        for (row, (rec, v)) in rows.iter().zip(&got) {
            let what = format!("{stem} {} -> {}", row.get("client"), row.get("server"));
            assert_eq!(rec.client.to_string(), row.get("client"), "{what}: client");
            assert_eq!(rec.server.to_string(), row.get("server"), "{what}: server");
            assert_eq!(
                v.class.id(),
                row.get("class"),
                "{what}: class ({})",
                v.explanation
            );
            assert_eq!(side(v.closed_by), row.get("closed_by"), "{what}: closed by");
            assert_eq!(close(v.close), row.get("close"), "{what}: close");
            check_details(&what, row.get("details"), v);
            assert!(!v.explanation.is_empty());
            if v.class.is_failure() && v.class.id() != "incomplete_capture" {
                assert!(v.proxies.is_some(), "{what}: proxy messages");
            }
            classes.insert(v.class.id());
        }
    }
    // The scenarios cover most of the taxonomy.
    assert!(classes.len() >= 18, "{classes:?}");
}

/// The format and engine samples hold healthy traffic (every HTTP response a complete 200, no
/// RST, per tshark) except the one unanswered SYN of samples/flows/syn-timeout.pcap: no
/// false alarms there, in any format or link type.
#[test]
fn format_and_engine_samples_have_their_expected_verdicts() {
    for dir in ["ingest", "flows"] {
        let rows = read_tsv(&samples().join(dir).join("expected-verdicts.tsv"));
        assert!(rows.len() > 10);
        let mut by_capture: std::collections::BTreeMap<String, Vec<&Expected>> = Default::default();
        for r in &rows {
            by_capture
                .entry(r.get("capture").to_string())
                .or_default()
                .push(r);
        }
        for (capture, expected) in by_capture {
            let got = judged(&samples().join(dir).join(&capture));
            assert_eq!(got.len(), expected.len(), "{dir}/{capture}: connections");
            for (row, (rec, v)) in expected.iter().zip(&got) {
                let what = format!(
                    "{dir}/{capture} {} -> {}",
                    row.get("client"),
                    row.get("server")
                );
                assert_eq!(rec.client.to_string(), row.get("client"), "{what}");
                assert_eq!(v.class.id(), row.get("class"), "{what}: {}", v.explanation);
            }
        }
    }
}
