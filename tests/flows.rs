//! The connection engine on real captures: instances, roles, handshakes, closes, bytes each
//! way, gaps, against what tshark says of the same files.

mod common;

use std::collections::BTreeMap;

use common::*;
use rstscope::flow::{ConnectionRecord, EndReason, EventKind, GapCause, RoleBasis, Side};

fn first_fin(c: &ConnectionRecord<()>) -> &'static str {
    match (c.client_sent.fin_ns, c.server_sent.fin_ns) {
        (Some(a), Some(b)) if b < a => "server",
        (Some(_), _) => "client",
        (None, Some(_)) => "server",
        (None, None) => "none",
    }
}

fn rst_senders(c: &ConnectionRecord<()>) -> String {
    let mut s = Vec::new();
    if c.client_sent.rst_ns.is_some() {
        s.push("client");
    }
    if c.server_sent.rst_ns.is_some() {
        s.push("server");
    }
    if s.is_empty() {
        "none".into()
    } else {
        s.join(",")
    }
}

#[test]
fn every_flow_sample_matches_what_tshark_recorded() {
    let rows = read_tsv(&flow_sample("expected.tsv"));
    let mut by_file: BTreeMap<String, Vec<&Expected>> = BTreeMap::new();
    for r in &rows {
        by_file
            .entry(r.get("file").to_string())
            .or_default()
            .push(r);
    }
    assert!(by_file.len() >= 9);
    for (file, expected) in by_file {
        let flows = flows_of(&flow_sample(&file));
        assert_eq!(flows.len(), expected.len(), "{file}: connections");
        for (c, e) in flows.iter().zip(expected) {
            let what = format!("{file} stream {}", e.get("stream"));
            assert_eq!(c.client.to_string(), e.get("client"), "{what}: client");
            assert_eq!(c.server.to_string(), e.get("server"), "{what}: server");
            assert_eq!(
                c.client_sent.packets,
                e.num("frames_c2s"),
                "{what}: frames c>s"
            );
            assert_eq!(
                c.server_sent.packets,
                e.num("frames_s2c"),
                "{what}: frames s>c"
            );
            assert_eq!(
                c.client_sent.frame_bytes,
                e.num("bytes_c2s"),
                "{what}: bytes c>s"
            );
            assert_eq!(
                c.server_sent.frame_bytes,
                e.num("bytes_s2c"),
                "{what}: bytes s>c"
            );
            let syns = c
                .handshake
                .syn_ns
                .map_or(0, |_| 1 + c.handshake.syn_retransmissions);
            assert_eq!(u64::from(syns), e.num("syn_count"), "{what}: SYNs");
            assert_eq!(first_fin(c), e.get("first_fin"), "{what}: first FIN");
            assert_eq!(rst_senders(c), e.get("rst_senders"), "{what}: RST senders");
            assert_eq!(
                c.start_ns,
                epoch_text_to_ns(e.get("start_time")),
                "{what}: start"
            );
            // tshark's payload sums count retransmitted bytes again; where there were none and
            // nothing is missing, they equal the stream's bytes.
            for (h, col) in [
                (&c.client_sent, "payload_c2s"),
                (&c.server_sent, "payload_s2c"),
            ] {
                if h.counters.retransmissions == 0 && h.counters.gap_bytes == 0 {
                    assert_eq!(h.stream_bytes, e.num(col), "{what}: {col}");
                }
            }
        }
    }
}

/// Per conversation and direction, frames and frame bytes, from tshark's own dissection.
fn tshark_conversations(path: &std::path::Path) -> Vec<BTreeMap<String, (u64, u64)>> {
    let out = run(
        "tshark",
        &[
            "-n",
            "-r",
            path.to_str().unwrap(),
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "frame.len",
        ],
    );
    let mut convs: Vec<BTreeMap<String, (u64, u64)>> = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let stream: usize = f[0].parse().unwrap();
        let ip = if f[1].is_empty() {
            format!("[{}]", f[2])
        } else {
            f[1].split(',').next().unwrap().to_string()
        };
        let src = format!("{ip}:{}", f[3]);
        if convs.len() <= stream {
            convs.resize(stream + 1, BTreeMap::new());
        }
        let e = convs[stream].entry(src).or_default();
        e.0 += 1;
        e.1 += f[4].parse::<u64>().unwrap();
    }
    convs
}

#[test]
fn connections_and_bytes_equal_tshark_on_every_sample() {
    if !have_tshark() {
        eprintln!("tshark not installed: comparison skipped");
        return;
    }
    let mut files = Vec::new();
    for dir in ["ingest", "flows"] {
        for entry in std::fs::read_dir(samples().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            if rstscope::capture::sniff_path(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 30);
    let mut with_trailing = 0;
    for path in files {
        let (ours, summary) = flows_and_summary(&path, 1);
        let theirs = tshark_conversations(&path);
        assert_eq!(ours.len(), theirs.len(), "{}: connections", path.display());
        // Segments that came after their connection was over (both FINs acknowledged) are
        // in tshark's conversation but in no record of ours: then the totals must agree.
        let trailing = summary.table.trailing;
        if trailing > 0 {
            with_trailing += 1;
            let packets = |r: &ConnectionRecord<()>| r.client_sent.packets + r.server_sent.packets;
            let ours_total: u64 = ours.iter().map(packets).sum();
            let theirs_total: u64 = theirs.iter().flat_map(|t| t.values()).map(|v| v.0).sum();
            assert_eq!(ours_total + trailing, theirs_total, "{}", path.display());
        }
        for (c, t) in ours.iter().zip(&theirs) {
            let c2s = t.get(&c.client.to_string()).copied().unwrap_or_default();
            let s2c = t.get(&c.server.to_string()).copied().unwrap_or_default();
            if trailing > 0 {
                assert!(c.client_sent.packets <= c2s.0 && c.server_sent.packets <= s2c.0);
                continue;
            }
            assert_eq!(
                (c.client_sent.packets, c.client_sent.frame_bytes),
                c2s,
                "{}: {} client side",
                path.display(),
                c.client
            );
            assert_eq!(
                (c.server_sent.packets, c.server_sent.frame_bytes),
                s2c,
                "{}: {} server side",
                path.display(),
                c.client
            );
        }
    }
    // two-interfaces.pcapng (and its big-endian copy) holds each packet twice, the second
    // interface's copies after the first's.
    assert!(with_trailing >= 1);
}

#[test]
fn a_reused_five_tuple_is_several_connections() {
    let flows = flows_of(&flow_sample("port-reuse.pcap"));
    assert_eq!(flows.len(), 5);
    let isns: std::collections::HashSet<_> = flows.iter().map(|c| c.client_sent.isn).collect();
    assert_eq!(isns.len(), 5, "each instance has its own ISN");
    for c in &flows {
        assert_eq!(c.client.to_string(), "127.0.0.1:41000");
        assert_eq!(c.roles, RoleBasis::Syn);
        assert_eq!(c.end, EndReason::Closed);
        assert_eq!(first_fin(c), "server");
        assert_eq!(c.server_sent.counters.gap_bytes, 0);
    }
}

#[test]
fn a_capture_that_starts_mid_connection_infers_the_roles() {
    let flows = flows_of(&flow_sample("mid-connection.pcap"));
    let c = &flows[0];
    assert!(c.roles.inferred());
    assert_eq!(c.server.port, 8080);
    assert!(c.handshake.syn_ns.is_none() && c.handshake.syn_ack_ns.is_none());
    // Every byte from the first one captured is there.
    assert_eq!(c.server_sent.counters.gap_bytes, 0);
    assert_eq!(c.client_sent.counters.gap_bytes, 0);
    assert!(c.server_sent.stream_bytes > 40_000);
    assert_eq!(flows[1].roles, RoleBasis::Syn);
}

#[test]
fn retransmitted_syns_are_counted_and_timed() {
    let c = &flows_of(&flow_sample("syn-retransmit.pcap"))[0];
    assert_eq!(c.handshake.syn_retransmissions, 3);
    let syns: Vec<(i64, bool)> = c
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Syn { retransmission } => Some((e.ts_ns, retransmission)),
            _ => None,
        })
        .collect();
    assert_eq!(syns.len(), 4);
    assert!(!syns[0].1 && syns[1..].iter().all(|s| s.1));
    // The kernel resent the SYN about a second apart; the SYN-ACK answered the last one.
    for w in syns.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!((900_000_000..1_200_000_000).contains(&gap), "{gap}");
    }
    assert!(c.handshake.syn_ack_ns.unwrap() >= syns[3].0);
    assert!(c.handshake.established_ns.is_some());

    let t = &flows_of(&flow_sample("syn-timeout.pcap"))[0];
    assert_eq!(
        (t.handshake.syn_retransmissions, t.handshake.syn_ack_ns),
        (3, None)
    );
    assert_eq!(t.end, EndReason::CaptureEnd);
}

#[test]
fn simultaneous_close_has_both_fins_before_either_is_acknowledged() {
    let c = &flows_of(&flow_sample("simultaneous-close.pcap"))[0];
    let (cf, sf) = (c.client_sent.fin_ns.unwrap(), c.server_sent.fin_ns.unwrap());
    assert!(
        (cf - sf).abs() < 20_000_000,
        "the FINs crossed within the 20 ms hold"
    );
    assert_eq!(c.end, EndReason::Closed);
    assert_eq!(rst_senders(c), "none");
}

#[test]
fn rst_in_reply_to_data_after_a_fin() {
    let flows = flows_of(&flow_sample("rst-after-fin.pcap"));
    let c = &flows[0];
    let fin = c.server_sent.fin_ns.unwrap();
    let rst = c.server_sent.rst_ns.unwrap();
    assert!(fin < rst);
    // The client wrote after the server's FIN, and that write drew the RST.
    assert!(c.client_sent.stream_bytes > 0);
    let rst_event = c
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Rst { .. }))
        .unwrap();
    assert_eq!(rst_event.from, Some(Side::Server));
    if let EventKind::Rst { ttl, usual_ttl, .. } = rst_event.kind {
        assert_eq!(Some(ttl), usual_ttl, "the endpoint's own RST");
    }
    assert_eq!(c.end, EndReason::Reset);
    // Closing with unread bytes: a RST and no FIN.
    let d = &flows[1];
    assert!(d.server_sent.fin_ns.is_none() && d.server_sent.rst_ns.is_some());
    if let Some(EventKind::Rst { in_window, .. }) = d
        .events
        .iter()
        .map(|e| e.kind)
        .find(|k| matches!(k, EventKind::Rst { .. }))
    {
        assert_eq!(in_window, Some(true));
    }
}

#[test]
fn packets_the_capture_lost_become_gaps_of_their_size() {
    let c = &flows_of(&flow_sample("capture-loss.pcap"))[0];
    // editcap removed two 1448-byte segments of the server's.
    assert_eq!(c.server_sent.counters.gaps, 2);
    assert_eq!(c.server_sent.counters.gap_bytes, 2 * 1448);
    let gaps: Vec<_> = c
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Gap { len, cause, .. } => Some((e.from, len, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(
        gaps,
        vec![(Some(Side::Server), 1448, GapCause::NotCaptured); 2]
    );
    // Delivery went on after the gaps: the rest of the stream is there.
    assert_eq!(
        c.server_sent.counters.delivered_bytes + 2 * 1448,
        c.server_sent.stream_bytes
    );
    assert!(c.server_sent.counters.delivered_bytes > 50_000);
}

#[test]
fn snaplen_cut_payload_becomes_gaps_and_headers_still_count() {
    let flows = flows_of(&ingest("snaplen96.pcap"));
    let full = flows_of(&ingest("http-v4.pcap"));
    assert_eq!(flows.len(), 3);
    for (c, f) in flows.iter().zip(&full) {
        // Both recordings fetched the same files, so the streams have the same lengths.
        assert_eq!(c.server_sent.stream_bytes, f.server_sent.stream_bytes);
        // Handshake and close come from headers, which the snaplen kept.
        assert!(
            c.handshake.established_ns.is_some()
                && c.client_sent.fin_ns.is_some()
                && c.server_sent.fin_ns.is_some()
        );
        // The stream has its full length; what the snaplen cut is marked as such.
        assert!(c.server_sent.counters.gap_bytes > 0);
        assert!(c.events.iter().all(
            |e| !matches!(e.kind, EventKind::Gap { cause, .. } if cause != GapCause::Snaplen)
        ));
        assert_eq!(c.end, EndReason::Closed);
    }
    assert_eq!(
        flows[1].server_sent.stream_bytes,
        full[1].server_sent.stream_bytes
    );
}

#[test]
fn keepalive_probes_are_not_data_and_reordering_loses_nothing() {
    let c = &flows_of(&flow_sample("keepalive-probes.pcap"))[0];
    assert_eq!(c.client_sent.counters.retransmissions, 0);
    assert_eq!(c.client_sent.stream_bytes, 134);
    assert!(
        c.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Idle { .. }))
    );

    let r = &flows_of(&flow_sample("reorder-loss.pcap"))[0];
    let k = r.server_sent.counters;
    assert!(k.retransmissions + k.out_of_order_segments > 0);
    assert_eq!(k.gap_bytes, 0, "every byte arrived in the end");
    assert_eq!(r.end, EndReason::Closed);
}

#[test]
fn one_or_several_shards_give_the_same_connections() {
    for path in [
        flow_sample("port-reuse.pcap"),
        flow_sample("mid-connection.pcap"),
        ingest("two-interfaces.pcapng"),
        ingest("http-v6.pcap"),
    ] {
        let one = serde_json::to_string(&flows_with(&path, 1)).unwrap();
        for shards in [2, 3, 4] {
            assert_eq!(
                one,
                serde_json::to_string(&flows_with(&path, shards)).unwrap(),
                "{}",
                path.display()
            );
        }
    }
}

/// More connections open at the end of the input than are finalized at once: the records
/// still come out in first-frame order, the same with one engine shard or several.
#[test]
fn many_connections_open_at_the_end_come_out_in_order_on_any_number_of_shards() {
    // A real SYN (the first packet of port-reuse.pcap, Ethernet and IPv4), sent from 3,000
    // client ports 1 µs apart and never answered: all are open when the capture ends.
    let file = std::fs::read(flow_sample("port-reuse.pcap")).unwrap();
    assert_eq!(le32(&file, 20), 1, "Ethernet");
    let caplen = le32(&file, 24 + 8);
    let frame = &file[40..40 + caplen];
    assert_eq!(frame[12..14], [0x08, 0x00], "IPv4");
    let tcp = 14 + usize::from(frame[14] & 0x0f) * 4;
    assert_eq!(frame[tcp + 13] & 0x12, 0x02, "a SYN");
    let mut capture = file[..24].to_vec();
    for i in 0..3000u32 {
        let mut f = frame.to_vec();
        f[tcp..tcp + 2].copy_from_slice(&(20_000 + i as u16).to_be_bytes());
        push_record(&mut capture, 1_700_000_000_000_000 + i64::from(i), &f);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syns.pcap");
    std::fs::write(&path, &capture).unwrap();
    let order = |shards: usize| {
        let records = handed_on(&path, shards).0;
        records.iter().map(|r| r.first_frame).collect::<Vec<_>>()
    };
    let one = order(1);
    assert_eq!(one, (1..=3000).collect::<Vec<u64>>());
    for shards in [2, 3] {
        assert_eq!(order(shards), one, "{shards} shards");
    }
}

/// The first connection of http-v4.pcap (12 packets: a GET and its answer, both FINs, the
/// last acknowledged by the 12th), replayed `copies` times 25 ms apart from client ports
/// 30000 on, each replay's first `keep` packets and, if `trailing`, a second copy of its last
/// packet. Every tenth replay is stamped 300 ms earlier than its place in the file, as
/// merged captures can be.
fn replayed_http_v4(copies: usize, keep: usize, trailing: bool) -> Vec<u8> {
    let file = std::fs::read(ingest("http-v4.pcap")).unwrap();
    assert_eq!(le32(&file, 0), 0xa1b2_c3d4, "microsecond pcap");
    let mut packets = Vec::new();
    let mut at = 24;
    for _ in 0..12 {
        let caplen = le32(&file, at + 8);
        let ts_us = le32(&file, at) as i64 * 1_000_000 + le32(&file, at + 4) as i64;
        packets.push((ts_us, file[at + 16..at + 16 + caplen].to_vec()));
        at += 16 + caplen;
    }
    let t0 = packets[0].0;
    packets.truncate(keep);
    if trailing {
        packets.push(packets[keep - 1].clone());
    }
    let mut capture = file[..24].to_vec();
    for k in 0..copies {
        let shift = k as i64 * 25_000 - if k % 10 == 9 { 300_000 } else { 0 };
        for (ts_us, frame) in &packets {
            let mut f = frame.clone();
            let tcp = 14 + usize::from(f[14] & 0x0f) * 4;
            let port = (30_000 + k as u16).to_be_bytes();
            if f[tcp..tcp + 2] == 50754u16.to_be_bytes() {
                f[tcp..tcp + 2].copy_from_slice(&port);
            } else {
                f[tcp + 2..tcp + 4].copy_from_slice(&port);
            }
            push_record(&mut capture, ts_us - t0 + 1_700_000_000_000_000 + shift, &f);
        }
    }
    capture
}

/// Connections that close in the middle of a long capture but are not over (the last FIN
/// is never acknowledged) linger out there (2 s of capture time after their close), swept
/// every hundredth of a second in close order, even when the capture's clock steps back;
/// the records come out the same, in the same order, on any number of shards.
#[test]
fn closed_connections_linger_out_in_close_order_on_any_number_of_shards() {
    let copies = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replayed.pcap");
    // Without the 12th packet, the acknowledgment of the client's FIN.
    std::fs::write(&path, replayed_http_v4(copies, 11, false)).unwrap();

    let one = handed_on(&path, 1).0;
    assert_eq!(one.len(), copies);
    for r in &one {
        assert_eq!(r.end, EndReason::Closed);
        assert_eq!(r.client_sent.packets + r.server_sent.packets, 11);
    }
    let json = serde_json::to_string(&one).unwrap();
    for shards in [2, 3, 4] {
        assert_eq!(
            json,
            serde_json::to_string(&handed_on(&path, shards).0).unwrap()
        );
    }
    // Closed more than the linger before the last packet (and before the last tick, which
    // comes with the first packet of the last replay): finished in the middle of the
    // capture, before every one finished at its end, in close order (within a sweep and the
    // 25 ms between replays). The rest are finished at the end, in first-frame order.
    let last = one.iter().map(|r| r.end_ns).max().unwrap();
    let closed = |r: &ConnectionRecord<()>| r.client_sent.fin_ns.max(r.server_sent.fin_ns).unwrap();
    let lingered = one
        .iter()
        .take_while(|r| last - closed(r) > 2_000_000_000)
        .count();
    assert!(lingered > copies / 2, "{lingered} lingered out mid-capture");
    assert!(
        one[lingered..]
            .iter()
            .all(|r| last - closed(r) <= 2_030_000_000)
    );
    assert!(
        one[lingered..]
            .windows(2)
            .all(|w| w[0].first_frame < w[1].first_frame)
    );
    for w in one[..lingered].windows(2) {
        assert!(closed(&w[1]) + 35_000_000 >= closed(&w[0]), "close order");
    }
    // A replay stamped 300 ms early closed before the ones just ahead of it in the file,
    // and lingered out before them.
    let stepped_back = one[..lingered]
        .windows(2)
        .filter(|w| w[1].first_frame < w[0].first_frame)
        .count();
    assert!(
        stepped_back >= 10,
        "{stepped_back} replays came out ahead of earlier frames"
    );
}

/// Appends a record to a microsecond pcap: `frame` captured whole at `ts_us`.
/// A connection that is over (both FINs sent and acknowledged) is finished at the packet
/// that made it so, not after lingering: the records come out in the order of those packets,
/// whatever their time stamps say, the same on any number of shards. A second copy of the
/// last packet joins no record: it is counted as trailing.
#[test]
fn connections_that_are_over_are_finished_at_their_last_acknowledgment() {
    let copies = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replayed.pcap");
    std::fs::write(&path, replayed_http_v4(copies, 12, true)).unwrap();

    let (one, summary) = handed_on(&path, 1);
    assert_eq!(one.len(), copies);
    for r in &one {
        assert_eq!(r.end, EndReason::Closed);
        assert_eq!(r.client_sent.packets + r.server_sent.packets, 12);
        assert_eq!(r.client_sent.counters.retransmissions, 0);
    }
    assert_eq!(summary.table.trailing, copies as u64);
    // In file order: the replays stamped 300 ms early do not come out ahead of earlier ones,
    // as they do when connections linger out in close order.
    assert!(one.windows(2).all(|w| w[0].first_frame < w[1].first_frame));
    let json = serde_json::to_string(&one).unwrap();
    for shards in [2, 3, 4] {
        let (records, summary) = handed_on(&path, shards);
        assert_eq!(json, serde_json::to_string(&records).unwrap());
        assert_eq!(summary.table.trailing, copies as u64);
    }
}

fn push_record(capture: &mut Vec<u8>, ts_us: i64, frame: &[u8]) {
    capture.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
    capture.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    capture.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    capture.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    capture.extend_from_slice(frame);
}
