//! A connection whose two streams have ended (both FINs acknowledged, nothing missing, no RST)
//! is finished at that packet instead of lingering 2 s (`FlowConfig::finish_when_over`), on
//! the claim that nothing arriving later can reach the protocol detectors. On every sample
//! capture, finishing early must then find the same protocol events and give the same
//! verdict as lingering; only the counts and the end time of a record can differ, by the
//! segments that came after its end.

mod common;

use std::path::Path;

use common::{captures, samples};
use rstscope::capture::{Input, InputSource};
use rstscope::classify::classify;
use rstscope::detect::Detector;
use rstscope::flow::FlowConfig;
use rstscope::pipeline::analyze_with_progress;

/// Each connection of `path`, by first frame: what the detectors found, the stream bytes
/// they were given and the verdict's class and phase, as JSON, and its packet count.
fn told(path: &Path, finish_when_over: bool) -> (Vec<(u64, String, u64)>, u64) {
    let input = Input {
        display: path.display().to_string(),
        source: InputSource::File(path.to_path_buf()),
    };
    let cfg = FlowConfig {
        finish_when_over,
        ..FlowConfig::default()
    };
    let mut out = Vec::new();
    let summary = analyze_with_progress::<Detector, _>(
        &input,
        &cfg,
        1,
        &|r| {
            let v = classify(&r);
            // The stream bytes each way (delivered or given up as gaps) are what reached
            // the detectors; the end reason is left out, as a late RST after the end makes
            // a lingering connection's end `reset`.
            let text = serde_json::to_string(&(
                r.handler.detected(),
                &r.handler.events,
                r.client_sent.stream_bytes,
                r.server_sent.stream_bytes,
                v.class,
                v.phase,
            ))
            .unwrap();
            let packets = r.client_sent.packets + r.server_sent.packets;
            ((r.first_frame, text, packets), Some(r))
        },
        &mut |t| out.push(t),
        &|_| {},
    );
    out.sort_by_key(|t| t.0);
    (out, summary.table.trailing)
}

#[test]
fn finishing_connections_that_ended_tells_every_sample_as_lingering_does() {
    let mut files = Vec::new();
    captures(&samples(), &mut files);
    assert!(files.len() > 50, "{} captures", files.len());
    let (mut ended_early, mut trailing_seen) = (0, 0);
    for path in &files {
        let (early, trailing) = told(path, true);
        let (lingered, none) = told(path, false);
        assert_eq!(
            none,
            0,
            "{}: trailing without finishing early",
            path.display()
        );
        assert_eq!(early.len(), lingered.len(), "{}", path.display());
        let (mut early_packets, mut lingered_packets) = (0, 0);
        for (e, l) in early.iter().zip(&lingered) {
            assert_eq!((e.0, &e.1), (l.0, &l.1), "{}", path.display());
            assert!(e.2 <= l.2);
            early_packets += e.2;
            lingered_packets += l.2;
        }
        // Every segment a record no longer counts came after its connection's end.
        assert_eq!(
            early_packets + trailing,
            lingered_packets,
            "{}",
            path.display()
        );
        ended_early += usize::from(early.iter().zip(&lingered).any(|(e, l)| e.2 < l.2));
        trailing_seen += trailing;
    }
    // two-interfaces.pcapng and its big-endian copy carry their connection twice.
    assert!(
        ended_early >= 1 && trailing_seen >= 12,
        "{ended_early} {trailing_seen}"
    );
}
