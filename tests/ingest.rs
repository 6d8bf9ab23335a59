//! Capture ingestion and decoding on the real sample captures of samples/ingest/: every
//! format and link type gives the counts that capinfos and tshark give.

mod common;

use common::*;
use rstscope::capture::{Input, InputSource, LinkType};
use rstscope::stats::{InputStats, collect};
use rstscope::timefmt::rfc3339_ns;

fn stats_of(path: &std::path::Path) -> InputStats {
    collect(
        &Input {
            display: path.display().to_string(),
            source: InputSource::File(path.to_path_buf()),
        },
        1,
    )
}

#[test]
fn every_sample_gives_the_counts_tshark_gave() {
    let rows = expected_counts();
    assert!(
        rows.len() >= 20,
        "expected-counts.tsv lists {} files",
        rows.len()
    );
    for e in rows {
        let file = e.get("file");
        let s = stats_of(&ingest(file));
        assert!(s.errors.is_empty(), "{file}: {:?}", s.errors);
        assert_eq!(s.packets, e.num("packets"), "{file}: packets");
        assert_eq!(s.ipv4_packets, e.num("ipv4_packets"), "{file}: IPv4");
        assert_eq!(s.ipv6_packets, e.num("ipv6_packets"), "{file}: IPv6");
        assert_eq!(s.tcp_packets, e.num("tcp_packets"), "{file}: TCP");
        assert_eq!(s.udp_packets, e.num("udp_packets"), "{file}: UDP");
        // The only other IP traffic in the samples is ICMP.
        assert_eq!(s.other_ip_packets, e.num("icmp_packets"), "{file}: ICMP");
        assert_eq!(
            s.ip_fragments,
            e.num("ip_fragment_frames"),
            "{file}: fragments"
        );
        assert_eq!(
            s.tcp_connections,
            e.num("tcp_conversations"),
            "{file}: connections"
        );
        assert_eq!(s.decode_errors, 0, "{file}: decode errors");
        let first = rfc3339_ns(epoch_text_to_ns(e.get("first_time")));
        let last = rfc3339_ns(epoch_text_to_ns(e.get("last_time")));
        assert_eq!(s.first.as_deref(), Some(first.as_str()), "{file}: first");
        assert_eq!(s.last.as_deref(), Some(last.as_str()), "{file}: last");
        let links: Vec<String> = e
            .get("link_types")
            .split(',')
            .map(|n| LinkType(n.parse().unwrap()).name())
            .collect();
        assert_eq!(s.link_types, links, "{file}: link types");
        let format = match (s.format.unwrap(), s.compression.unwrap()) {
            (f, rstscope::capture::Compression::None) => f.to_string(),
            (f, c) => format!(
                "{f}.{}",
                if c == rstscope::capture::Compression::Gzip {
                    "gz"
                } else {
                    "zst"
                }
            ),
        };
        assert_eq!(format, e.get("format"), "{file}: format");
        let order = if s.byte_order == Some("big") {
            "be"
        } else {
            "le"
        };
        assert_eq!(order, e.get("byte_order"), "{file}: byte order");
        let precision = if s.timestamp_precision.as_deref() == Some("ns") {
            "nsec"
        } else {
            "usec"
        };
        assert_eq!(
            precision,
            e.get("ts_precision"),
            "{file}: timestamp precision"
        );
    }
}

/// The committed counts could go stale if a sample were re-recorded without rerunning the
/// count script: compare with capinfos and tshark themselves where they are installed.
#[test]
fn packet_and_conversation_counts_equal_capinfos_and_tshark() {
    if !have_tshark() {
        eprintln!("tshark not installed: comparison skipped");
        return;
    }
    for e in expected_counts() {
        let path = ingest(e.get("file"));
        let p = path.to_str().unwrap();
        let s = stats_of(&path);
        let capinfos = run("capinfos", &["-c", "-M", "-T", "-r", p]);
        let packets: u64 = capinfos.split_whitespace().last().unwrap().parse().unwrap();
        assert_eq!(s.packets, packets, "{p}: capinfos packet count");
        let conv = run("tshark", &["-n", "-r", p, "-q", "-z", "conv,tcp"]);
        let conversations = conv.lines().filter(|l| l.contains("<->")).count() as u64;
        assert_eq!(s.tcp_connections, conversations, "{p}: tshark conv,tcp");
    }
}

#[test]
fn snaplen_cut_packets_keep_headers_and_count_missing_bytes() {
    let s = stats_of(&ingest("snaplen96.pcap"));
    // Every TCP packet still decodes: the headers fit in 96 bytes.
    assert_eq!(s.decode_errors, 0);
    assert!(s.snaplen_cut_packets > 50, "{}", s.snaplen_cut_packets);
    assert!(s.wire_bytes > s.bytes);
    // What the snaplen cut from TCP payloads is exactly what tshark says the segments
    // carried minus what the capture kept of them.
    if have_tshark() {
        let p = ingest("snaplen96.pcap");
        let fields = run(
            "tshark",
            &[
                "-r",
                p.to_str().unwrap(),
                "-Y",
                "tcp",
                "-T",
                "fields",
                "-e",
                "tcp.len",
                "-e",
                "frame.cap_len",
                "-e",
                "ip.hdr_len",
                "-e",
                "tcp.hdr_len",
            ],
        );
        let mut missing = 0u64;
        for line in fields.lines() {
            let v: Vec<u64> = line.split('\t').map(|x| x.parse().unwrap()).collect();
            let captured_payload = v[1].saturating_sub(14 + v[2] + v[3]);
            missing += v[0].saturating_sub(captured_payload);
        }
        assert_eq!(s.tcp_payload_bytes_missing, missing);
    }
}

#[test]
fn compressed_and_converted_copies_read_like_the_original() {
    let base = stats_of(&ingest("http-v4.pcap"));
    for name in [
        "http-v4.pcap.gz",
        "http-v4.pcap.zst",
        "compressed-capture.bin",
        "big-endian.pcap",
        "vlan.pcap",
        "qinq.pcap",
        "null-le.pcap",
        "null-be.pcap",
        "loop.pcap",
        "raw-101.pcap",
        "raw-228.pcap",
        "raw-12.pcap",
        "raw-14.pcap",
    ] {
        let s = stats_of(&ingest(name));
        assert_eq!(
            (
                s.packets,
                s.tcp_packets,
                s.tcp_connections,
                &s.first,
                &s.last
            ),
            (
                base.packets,
                base.tcp_packets,
                base.tcp_connections,
                &base.first,
                &base.last
            ),
            "{name}"
        );
    }
    let ng = stats_of(&ingest("two-interfaces.pcapng"));
    let ng_be = stats_of(&ingest("big-endian.pcapng"));
    assert_eq!(ng.link_types, vec!["ETHERNET", "LINUX_SLL"]);
    assert_eq!(
        (ng.packets, ng.tcp_packets, &ng.first),
        (ng_be.packets, ng_be.tcp_packets, &ng_be.first)
    );
    assert_eq!(ng.timestamp_precision.as_deref(), Some("ns"));
}
