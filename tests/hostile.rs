//! Hostile captures through the command line, as a user meets them: files cut at every block
//! and record boundary and inside them, bad magic, a zero snaplen, lying lengths at every
//! layer (capture records, IPv4, TCP, TLS, HTTP/2) and a header block that never ends.
//!
//! Every capture is a real recorded one from `samples/` with a few fields changed, written to
//! a temporary directory; the expected counts come from walking the headers here, never from
//! rstscope's own output. Each run must end on its own with an exit status (0 or 1 when what
//! was readable was analysed, faults and all; 2 only when nothing of an input could be read),
//! never a panic,
//! and within a generous hang guard. `tests/broken_inputs.rs` covers the capture reader at
//! every byte offset through the library; this file covers what the user sees.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use common::*;
use serde_json::Value;

/// Only a hang guard: each run here takes milliseconds. A run still going after this is
/// killed, and then has no exit status, which fails the test. Never a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// What one run of the binary left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ndjson(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `rstscope ARGS INPUT` and checks what every run must satisfy: it ended by itself
/// within the hang guard, with 0, 1 or 2 (a panic exits 101), and printed no panic message.
fn rstscope(args: &[&str], input: &Path) -> Run {
    let out = Command::cargo_bin("rstscope")
        .unwrap()
        .args(args)
        .arg(input)
        .timeout(HANG_GUARD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let what = format!("rstscope {args:?} {}", input.display());
    let code = out.status.code().unwrap_or_else(|| {
        panic!("{what}: no exit status (killed by the hang guard or a signal); stderr: {stderr}")
    });
    assert!(
        (0..=2).contains(&code) && !stderr.contains("panicked"),
        "{what}: exit {code}, stderr: {stderr}"
    );
    Run {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// `rstscope stats --format ndjson`: the one input's object.
fn stats(input: &Path) -> (Run, Value) {
    let run = rstscope(&["stats", "--format", "ndjson"], input);
    let objects = run.ndjson();
    assert_eq!(objects.len(), 1, "{}", run.stdout);
    let s = objects[0].clone();
    (run, s)
}

/// The analysis of every connection, as ndjson.
fn analysis(input: &Path) -> (Run, Vec<Value>) {
    let run = rstscope(&["--all", "--format", "ndjson"], input);
    let connections = run.ndjson();
    (run, connections)
}

fn scenario(name: &str) -> PathBuf {
    samples().join("scenarios").join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// A little-endian, microsecond legacy pcap of Ethernet frames, walked and rebuilt here.

/// One record: its timestamp fields and the captured frame (written with orig_len = caplen).
#[derive(Clone)]
struct Record {
    ts: [u8; 8],
    frame: Vec<u8>,
}

#[derive(Clone)]
struct Pcap {
    header: Vec<u8>,
    records: Vec<Record>,
}

impl Pcap {
    fn read(path: &Path) -> Pcap {
        let b = std::fs::read(path).unwrap();
        assert_eq!(b[..4], [0xd4, 0xc3, 0xb2, 0xa1], "{}", path.display());
        assert_eq!(le32(&b, 20), 1, "Ethernet samples only");
        let mut records = Vec::new();
        let mut at = 24;
        while at + 16 <= b.len() {
            let caplen = le32(&b, at + 8);
            records.push(Record {
                ts: b[at..at + 8].try_into().unwrap(),
                frame: b[at + 16..at + 16 + caplen].to_vec(),
            });
            at += 16 + caplen;
        }
        assert_eq!(at, b.len());
        Pcap {
            header: b[..24].to_vec(),
            records,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = self.header.clone();
        for r in &self.records {
            let len = (r.frame.len() as u32).to_le_bytes();
            b.extend_from_slice(&r.ts);
            b.extend_from_slice(&len);
            b.extend_from_slice(&len);
            b.extend_from_slice(&r.frame);
        }
        b
    }

    /// Byte offset of each record's header in [`Self::bytes`], then the file's length.
    fn record_starts(&self) -> Vec<usize> {
        let mut at = 24;
        let mut starts = vec![at];
        for r in &self.records {
            at += 16 + r.frame.len();
            starts.push(at);
        }
        starts
    }
}

// Field positions of an Ethernet + IPv4 + TCP frame (RFC 791 §3.1, RFC 9293 §3.1).
const ETH: usize = 14;

fn ip_header_len(f: &[u8]) -> usize {
    usize::from(f[ETH] & 0x0f) * 4
}

fn tcp_at(f: &[u8]) -> usize {
    ETH + ip_header_len(f)
}

fn payload_at(f: &[u8]) -> usize {
    tcp_at(f) + usize::from(f[tcp_at(f) + 12] >> 4) * 4
}

fn payload(f: &[u8]) -> &[u8] {
    &f[payload_at(f)..]
}

fn seq(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[tcp_at(f) + 4..tcp_at(f) + 8].try_into().unwrap())
}

fn ports(f: &[u8]) -> (u16, u16) {
    let t = tcp_at(f);
    (
        u16::from_be_bytes([f[t], f[t + 1]]),
        u16::from_be_bytes([f[t + 2], f[t + 3]]),
    )
}

fn set_ip_total_len(f: &mut [u8], len: usize) {
    f[ETH + 2..ETH + 4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// The same frame with another TCP payload; the IPv4 total length follows. Checksums are
/// left as they are: rstscope verifies none (loopback captures carry unfinished ones).
fn with_payload(f: &[u8], new_payload: &[u8]) -> Vec<u8> {
    let mut out = f[..payload_at(f)].to_vec();
    out.extend_from_slice(new_payload);
    let total = out.len() - ETH;
    set_ip_total_len(&mut out, total);
    out
}

/// The same frame with other sequence and acknowledgment numbers and flags.
fn with_seq_ack_flags(f: &[u8], seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut out = f.to_vec();
    let t = tcp_at(f);
    out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    out[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
    out[t + 13] = flags;
    out
}

const FIN_ACK: u8 = 0x11;
const PSH_ACK: u8 = 0x18;
const ACK: u8 = 0x10;

/// `ip:port` of a frame's sender and receiver, as the reports print them.
fn endpoints(f: &[u8]) -> (String, String) {
    let ip = |at: usize| format!("{}.{}.{}.{}", f[at], f[at + 1], f[at + 2], f[at + 3]);
    let (sport, dport) = ports(f);
    (
        format!("{}:{sport}", ip(ETH + 12)),
        format!("{}:{dport}", ip(ETH + 16)),
    )
}

/// The one connection an analysis listed, checked to be the one between the SYN's endpoints.
fn the_connection<'a>(connections: &'a [Value], syn: &[u8], what: &str) -> &'a Value {
    assert_eq!(connections.len(), 1, "{what}: {connections:?}");
    let c = &connections[0];
    let (client, server) = endpoints(syn);
    assert_eq!(c["client"], client.as_str(), "{what}");
    assert_eq!(c["server"], server.as_str(), "{what}");
    c
}

// ---------------------------------------------------------------------------------------
// Truncation at every boundary and inside every record or block.

#[test]
fn a_pcap_cut_at_each_record_boundary_is_clean_and_inside_a_record_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = Pcap::read(&scenario("healthy-h2c.pcap"));
    let full = pcap.bytes();
    let starts = pcap.record_starts();
    for (complete, &start) in starts.iter().enumerate() {
        // At the boundary: `complete` whole records, nothing wrong with the file.
        let path = write(dir.path(), "cut.pcap", &full[..start]);
        let (run, s) = stats(&path);
        assert_eq!(
            s["packets"], complete as u64,
            "cut at record boundary {start}"
        );
        assert_eq!(run.code, 0, "cut at boundary {start}: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        if start == full.len() {
            continue;
        }
        // Inside the next record's 16-byte header, and inside its frame: the same whole
        // records, and a truncation fault at the start of the cut record.
        let frame_len = starts[complete + 1] - start - 16;
        for cut in [start + 8, start + 16 + frame_len / 2] {
            let path = write(dir.path(), "cut.pcap", &full[..cut]);
            let (run, s) = stats(&path);
            assert_eq!(s["packets"], complete as u64, "cut at {cut}");
            // Status 2 only when not one packet could be read; a partial result is a result.
            let unreadable = complete == 0;
            assert_eq!(run.code, if unreadable { 2 } else { 0 }, "cut at {cut}");
            assert!(
                run.stderr
                    .contains(&format!("cut.pcap: at byte offset {start}: "))
                    && run.stderr.contains("truncated"),
                "cut at {cut}: {}",
                run.stderr
            );
            // The analysis still reports the connection once its first packet was read.
            let (run, connections) = analysis(&path);
            if unreadable {
                assert_eq!(run.code, 2, "analysis, cut at {cut}");
            } else {
                assert!(run.code < 2, "analysis, cut at {cut}: {}", run.code);
            }
            assert_eq!(
                connections.len(),
                usize::from(complete > 0),
                "cut at {cut}: {}",
                run.stdout
            );
        }
    }
}

#[test]
fn a_pcapng_cut_at_each_block_boundary_is_clean_and_inside_a_block_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(scenario("upstream-fin-after-request-variant-pcapng.pcapng")).unwrap();
    let blocks = pcapng_blocks(&full);
    assert_eq!(
        blocks.last().map(|(s, _)| s + le32(&full, s + 4)),
        Some(full.len())
    );
    // Enhanced (6) and Simple (3) Packet Blocks carry packets.
    let packets_before = |at: usize| {
        blocks
            .iter()
            .filter(|(s, t)| (*t == 6 || *t == 3) && s + le32(&full, s + 4) <= at)
            .count() as u64
    };
    let mut boundaries: Vec<usize> = blocks.iter().map(|(s, _)| *s).collect();
    boundaries.push(full.len());
    for &start in &boundaries {
        let path = write(dir.path(), "cut.pcapng", &full[..start]);
        let (run, s) = stats(&path);
        assert_eq!(s["packets"], packets_before(start), "cut at {start}");
        if start == 0 {
            // An empty file is not a capture: unreadable.
            assert_eq!(run.code, 2);
            assert!(run.stderr.contains("cut.pcapng"), "{}", run.stderr);
        } else {
            assert_eq!(run.code, 0, "cut at block boundary {start}: {}", run.stderr);
        }
    }
    for &(start, _) in &blocks {
        let len = le32(&full, start + 4);
        for cut in [start + 4, start + len / 2, start + len - 1] {
            let path = write(dir.path(), "cut.pcapng", &full[..cut]);
            let (run, s) = stats(&path);
            assert_eq!(s["packets"], packets_before(cut), "cut at {cut}");
            let unreadable = packets_before(cut) == 0;
            assert_eq!(run.code, if unreadable { 2 } else { 0 }, "cut at {cut}");
            assert!(
                run.stderr
                    .contains(&format!("cut.pcapng: at byte offset {start}: ")),
                "cut at {cut} inside the block at {start}: {}",
                run.stderr
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file header.

#[test]
fn a_bad_magic_is_unreadable_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = std::fs::read(scenario("healthy-h2c.pcap")).unwrap();
    let ng = std::fs::read(scenario("upstream-fin-after-request-variant-pcapng.pcapng")).unwrap();
    let mut cases = Vec::new();
    // A pcap magic one bit off.
    let mut b = pcap.clone();
    b[0] ^= 0x01;
    cases.push(("magic.pcap", b));
    // A pcapng whose section header type is right but whose byte-order magic is garbage.
    let mut b = ng.clone();
    b[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    cases.push(("byte-order.pcapng", b));
    // A pcapng whose section header block type is wrong.
    let mut b = ng.clone();
    b[..4].copy_from_slice(&0x0A0D_0D0Bu32.to_le_bytes());
    cases.push(("block-type.pcapng", b));
    for (name, bytes) in cases {
        let path = write(dir.path(), name, &bytes);
        let (run, s) = stats(&path);
        assert_eq!(run.code, 2, "{name}");
        assert_eq!(s["packets"], 0, "{name}");
        assert!(
            run.stderr.contains(&format!("{name}: at byte offset 0: ")),
            "{name}: {}",
            run.stderr
        );
        let (run, connections) = analysis(&path);
        assert_eq!(run.code, 2, "{name}");
        assert!(connections.is_empty(), "{name}");
    }
}

#[test]
fn snaplen_zero_in_the_file_header_changes_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let original = scenario("upstream-rst-after-request.pcap");
    let mut b = std::fs::read(&original).unwrap();
    b[16..20].copy_from_slice(&0u32.to_le_bytes());
    let zero = write(dir.path(), "upstream-rst-after-request.pcap", &b);
    let (run_original, want) = analysis(&original);
    let (run_zero, got) = analysis(&zero);
    assert_eq!(run_zero.code, run_original.code);
    assert!(!want.is_empty());
    let without_capture = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|c| {
                let mut c = c.clone();
                c["capture"] = Value::Null;
                c
            })
            .collect()
    };
    assert_eq!(without_capture(&got), without_capture(&want));
}

// ---------------------------------------------------------------------------------------
// Lying capture lengths and interface ids, through the analysis.

/// Direction-independent (address, port) pairs of the Ethernet/IPv4 TCP packets in pcapng
/// EPBs before `until`: the connections whose first packet was read (no port reuse in the
/// sample).
fn connections_before(b: &[u8], blocks: &[(usize, usize)], until: usize) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for &(start, _) in blocks.iter().filter(|(s, t)| *t == 6 && *s < until) {
        // An EPB's captured length is at byte 20, its packet data at byte 28.
        let f = &b[start + 28..start + 28 + le32(b, start + 20)];
        let (a, z) = endpoints(f);
        seen.insert(if a < z { (a, z) } else { (z, a) });
    }
    seen.len()
}

#[test]
fn lying_block_lengths_keep_the_connections_read_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(scenario("upstream-fin-after-request-variant-pcapng.pcapng")).unwrap();
    let blocks = pcapng_blocks(&full);
    let epbs: Vec<usize> = blocks
        .iter()
        .filter(|(_, t)| *t == 6)
        .map(|(s, _)| *s)
        .collect();
    // A block in the middle of the second connection's packets.
    let target = epbs[epbs.len() / 2];
    let expected = connections_before(&full, &blocks, target);
    assert!(expected > 0);
    for len in [0u32, 1, 1 << 30, u32::MAX] {
        let mut b = full.clone();
        b[target + 4..target + 8].copy_from_slice(&len.to_le_bytes());
        let path = write(dir.path(), "length.pcapng", &b);
        let (run, connections) = analysis(&path);
        // Packets came before the lying block: a partial result, not an unreadable input.
        assert!(run.code < 2, "block length {len}: {}", run.code);
        assert_eq!(connections.len(), expected, "block length {len}");
        assert!(
            run.stderr
                .contains(&format!("length.pcapng: at byte offset {target}: ")),
            "block length {len}: {}",
            run.stderr
        );
    }
}

#[test]
fn lying_record_lengths_keep_the_connections_read_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = Pcap::read(&scenario("upstream-rst-after-request.pcap"));
    let full = pcap.bytes();
    let starts = pcap.record_starts();
    let k = pcap.records.len() / 2;
    let mut seen = std::collections::BTreeSet::new();
    for r in &pcap.records[..k] {
        let (a, z) = endpoints(&r.frame);
        seen.insert(if a < z { (a, z) } else { (z, a) });
    }
    // 1 GiB and 4 GiB: larger than any record may be, a clear fault at the record. A length
    // of 0 or 1 makes the frame's own bytes be read as record headers: whatever those say,
    // the records before are kept.
    for caplen in [0u32, 1, 1 << 30, u32::MAX] {
        let mut b = full.clone();
        b[starts[k] + 8..starts[k] + 12].copy_from_slice(&caplen.to_le_bytes());
        let path = write(dir.path(), "length.pcap", &b);
        let (run, s) = stats(&path);
        assert!(
            s["packets"].as_u64().unwrap() >= k as u64,
            "caplen {caplen}"
        );
        if caplen > 1 {
            assert_eq!(s["packets"], k as u64);
            assert_eq!(run.code, 0, "caplen {caplen}: the records before were read");
            assert!(
                run.stderr
                    .contains(&format!("length.pcap: at byte offset {}: ", starts[k])),
                "caplen {caplen}: {}",
                run.stderr
            );
        }
        let (_, connections) = analysis(&path);
        assert!(connections.len() >= seen.len(), "caplen {caplen}");
    }
}

#[test]
fn an_interface_id_out_of_range_skips_one_packet_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario("upstream-fin-after-request-variant-pcapng.pcapng");
    let full = std::fs::read(&path).unwrap();
    let blocks = pcapng_blocks(&full);
    let (_, all) = analysis(&path);
    let epbs: Vec<usize> = blocks
        .iter()
        .filter(|(_, t)| *t == 6)
        .map(|(s, _)| *s)
        .collect();
    // The section describes one interface (id 0): 1 is the first id past it.
    assert_eq!(blocks.iter().filter(|(_, t)| *t == 1).count(), 1);
    // A packet in the middle: its connection loses it but is still listed.
    let target = epbs[epbs.len() / 2];
    for id in [1u32, 7, u32::MAX] {
        let mut b = full.clone();
        b[target + 8..target + 12].copy_from_slice(&id.to_le_bytes());
        let bad = write(dir.path(), "ifid.pcapng", &b);
        let (run, s) = stats(&bad);
        assert_eq!(s["packets"], epbs.len() as u64 - 1, "interface {id}");
        assert_eq!(run.code, 0, "one packet skipped, the rest read");
        assert!(
            run.stderr
                .contains(&format!("ifid.pcapng: at byte offset {target}: "))
                && run.stderr.contains(&format!("interface {id}")),
            "{}",
            run.stderr
        );
        let (run, connections) = analysis(&bad);
        assert!(run.code < 2, "interface {id}: {}", run.code);
        assert_eq!(connections.len(), all.len(), "interface {id}");
    }
}

// ---------------------------------------------------------------------------------------
// Lying IPv4 and TCP headers: a decode error on one packet, never a fault of the input.

#[test]
fn lying_ip_and_tcp_lengths_are_packet_errors_and_the_connection_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = Pcap::read(&scenario("healthy-h2c.pcap"));
    let syn = pcap.records[0].frame.clone();
    // Frame 4 carries the client's preface and request; frame 5 is a bare ACK.
    let request = 3;
    let bare_ack = 4;
    assert!(payload(&pcap.records[request].frame).starts_with(b"PRI * HTTP/2.0"));
    assert!(payload(&pcap.records[bare_ack].frame).is_empty());
    let ip_len = |f: &[u8]| f.len() - ETH;
    let set_data_offset = |f: &mut Vec<u8>, words: u8| {
        let t = tcp_at(f);
        f[t + 12] = (words << 4) | (f[t + 12] & 0x0f);
    };
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, usize, Mutation, Outcome)> = vec![
        (
            "IHL 4, below the minimum of 5",
            request,
            Box::new(|f| f[ETH] = 0x44),
            Outcome::NotTcp,
        ),
        (
            "IHL 0",
            request,
            Box::new(|f| f[ETH] = 0x40),
            Outcome::NotTcp,
        ),
        (
            "IHL 15, past the packet",
            bare_ack,
            Box::new(|f| f[ETH] = 0x4f),
            Outcome::NotTcp,
        ),
        (
            "total length 10, less than the header",
            request,
            Box::new(|f| set_ip_total_len(f, 10)),
            Outcome::NotTcp,
        ),
        (
            "total length 0xffff, past the frame",
            request,
            Box::new(|f| set_ip_total_len(f, 0xffff)),
            Outcome::SnaplenCut,
        ),
        (
            "TCP data offset 2, below the minimum of 5",
            request,
            Box::new(move |f| set_data_offset(f, 2)),
            Outcome::NotTcp,
        ),
        (
            "TCP data offset 15, past the segment",
            bare_ack,
            Box::new(move |f| set_data_offset(f, 15)),
            Outcome::NotTcp,
        ),
    ];
    for (what, index, mutate, outcome) in cases {
        let mut p = pcap.clone();
        let original_ip_len = ip_len(&p.records[index].frame);
        mutate(&mut p.records[index].frame);
        let path = write(dir.path(), "lie.pcap", &p.bytes());
        let (run, s) = stats(&path);
        // The capture itself is sound: every record read, no fault, exit 0.
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        assert_eq!(s["packets"], p.records.len() as u64, "{what}");
        assert_eq!(s["errors"], Value::Array(vec![]), "{what}");
        let (decode_errors, tcp_packets, missing) = match outcome {
            // A total length below the header's own length is a lie like the others here;
            // only 0, what TSO leaves in sender-side captures, is read as captured.
            Outcome::NotTcp => (1, p.records.len() - 1, 0),
            // A total length past the frame reads as a snaplen cut: the payload bytes the IP
            // header claims and the frame does not hold are counted as missing.
            Outcome::SnaplenCut => (0, p.records.len(), 0xffff - original_ip_len),
        };
        assert_eq!(s["decode_errors"], decode_errors, "{what}");
        assert_eq!(s["tcp_packets"], tcp_packets as u64, "{what}");
        assert_eq!(s["tcp_payload_bytes_missing"], missing as u64, "{what}");
        // The connection is still listed, from its other packets.
        let (run, connections) = analysis(&path);
        assert!(run.code <= 1, "{what}: exit {}: {}", run.code, run.stderr);
        the_connection(&connections, &syn, what);
    }
}

/// How a lying IPv4 or TCP header is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// The packet cannot be read as TCP: one decode error, the rest of the capture goes on.
    NotTcp,
    /// The IP header claims more than the frame holds: a snaplen cut.
    SnaplenCut,
}

// ---------------------------------------------------------------------------------------
// Lying protocol lengths inside the streams.

#[test]
fn a_tls_record_longer_than_what_was_sent_before_the_fin_is_a_handshake_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let real = Pcap::read(&scenario("healthy-tls-h1.pcap"));
    let r = &real.records;
    let hello = &r[3].frame;
    assert_eq!(payload(hello)[0], 0x16, "frame 4 is the ClientHello record");
    // The record header claims 16 KB; 100 bytes of it are sent, then the client closes.
    let mut sent = payload(hello)[..100].to_vec();
    sent[3..5].copy_from_slice(&16_384u16.to_be_bytes());
    let client_isn = seq(hello);
    let server_next = seq(&r[4].frame);
    let client_ack = &r[6].frame; // a bare ACK from the client, as a template
    let server_ack = &r[4].frame; // a bare ACK from the server
    let mut p = Pcap {
        header: real.header.clone(),
        records: r[..3].to_vec(),
    };
    let mut push = |ts: &[u8; 8], frame: Vec<u8>| p.records.push(Record { ts: *ts, frame });
    push(&r[3].ts, with_payload(hello, &sent));
    push(
        &r[4].ts,
        with_seq_ack_flags(server_ack, server_next, client_isn + 100, ACK),
    );
    push(
        &r[5].ts,
        with_seq_ack_flags(client_ack, client_isn + 100, server_next, FIN_ACK),
    );
    push(
        &r[6].ts,
        with_seq_ack_flags(server_ack, server_next, client_isn + 101, FIN_ACK),
    );
    push(
        &r[7].ts,
        with_seq_ack_flags(client_ack, client_isn + 101, server_next + 1, ACK),
    );
    let path = write(dir.path(), "tls-record.pcap", &p.bytes());
    let (run, connections) = analysis(&path);
    assert_eq!(
        run.code, 1,
        "a handshake cut short is a failure: {}",
        run.stdout
    );
    let c = the_connection(&connections, &r[0].frame, "TLS");
    assert_eq!(c["closed_by"], "client");
    assert_eq!(c["close"], "fin");
    assert_eq!(c["phase"], "tls", "{c}");
    // The client gave up on its own ClientHello; the server's FIN only answered the client's,
    // and the explanation must not make it the server's doing.
    assert_eq!(c["class"], "client_abort", "{c}");
    let why = c["explanation"].as_str().unwrap();
    assert!(why.starts_with("The client closed"), "{why}");
    assert!(!why.contains("server closed"), "{why}");
}

// ---------------------------------------------------------------------------------------
// Connections the caps cut short: the report says which cap and which flag.

#[test]
fn connections_evicted_by_the_connection_cap_name_the_cap_and_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let real = Pcap::read(&scenario("connect-refused.pcap"));
    let syn = &real.records[0];
    assert_eq!(syn.frame[tcp_at(&syn.frame) + 13], 0x02, "frame 1 is a SYN");
    // Three unanswered SYNs from three client ports, with room for one live connection: the
    // second SYN evicts the first, the third the second.
    let (client_port, _) = ports(&syn.frame);
    let mut p = Pcap {
        header: real.header.clone(),
        records: Vec::new(),
    };
    for i in 0..3u16 {
        let mut frame = syn.frame.clone();
        let t = tcp_at(&frame);
        frame[t..t + 2].copy_from_slice(&(client_port + i).to_be_bytes());
        p.records.push(Record { ts: syn.ts, frame });
    }
    let path = write(dir.path(), "halfopen.pcap", &p.bytes());
    let run = rstscope(
        &[
            "--all",
            "--format",
            "ndjson",
            "-j1",
            "--max-connections",
            "1",
        ],
        &path,
    );
    let connections = run.ndjson();
    assert_eq!(connections.len(), 3, "{}", run.stdout);
    let evicted: Vec<&Value> = connections
        .iter()
        .filter(|c| {
            c["explanation"].as_str().is_some_and(|e| {
                e.contains("live-connection cap") && e.contains("--max-connections")
            })
        })
        .collect();
    assert_eq!(evicted.len(), 2, "{}", run.stdout);
    for c in evicted {
        assert_eq!(c["class"], "incomplete_capture", "{c}");
        assert_ne!(c["confidence"], "certain", "{c}");
    }
    // Without the cap none is evicted.
    let (_, free) = analysis(&path);
    assert!(
        free.iter().all(|c| !c["explanation"]
            .as_str()
            .unwrap()
            .contains("--max-connections")),
        "{free:?}"
    );
}

#[test]
fn a_response_given_up_by_the_out_of_order_buffer_cap_is_no_close_before_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pcap::read(&scenario("healthy-large-download.pcap"));
    // Frames 6 to 10: the server's first five data segments, the first with the status line.
    let first = 5;
    let segments: Vec<Vec<u8>> = p.records[first..first + 5]
        .iter()
        .map(|r| r.frame.clone())
        .collect();
    assert!(payload(&segments[0]).starts_with(b"HTTP/1.1 200"));
    let (server_port, _) = ports(&segments[0]);
    assert!(segments.iter().all(|f| ports(f).0 == server_port));
    let mss = payload(&segments[0]).len();
    assert!(segments.iter().all(|f| payload(f).len() == mss));
    // Sent back to front (each record keeps its time stamp), with a buffer that holds two
    // segments but not three: at the third, the hole before it, the first two segments with
    // the status line, is given up.
    for (record, frame) in p.records[first..first + 5]
        .iter_mut()
        .zip(segments.iter().rev())
    {
        record.frame = frame.clone();
    }
    let path = write(dir.path(), "reorder.pcap", &p.bytes());
    let cap = (2 * mss + mss / 2).to_string();
    let run = rstscope(
        &["--all", "--format", "ndjson", "--max-buffer", &cap],
        &path,
    );
    let connections = run.ndjson();
    let c = the_connection(&connections, &p.records[0].frame, "reorder");
    assert_eq!(c["class"], "incomplete_capture", "{c}");
    let why = c["explanation"].as_str().unwrap();
    for what in [
        "out-of-order buffer cap".to_string(),
        "--max-buffer".to_string(),
        format!("{} bytes of the server's stream", 2 * mss),
    ] {
        assert!(why.contains(&what), "{what}: {why}");
    }
    assert!(!why.contains("without sending any"), "{why}");
    // The default buffer holds the reordering: the download is whole.
    let (_, whole) = analysis(&path);
    assert_eq!(whole[0]["class"], "ok", "{}", whole[0]);
}

/// The healthy h2c exchange with the server's response HEADERS (frame 10) replaced by
/// `server_bytes`, cut into segments of at most 1448 bytes, then the server's FIN and the
/// client's FIN; the client's GOAWAY and RST of the original are dropped.
fn h2c_with_server_bytes(server_bytes: &[u8]) -> (Pcap, Vec<u8>) {
    let real = Pcap::read(&scenario("healthy-h2c.pcap"));
    let r = &real.records;
    let headers = &r[9].frame;
    assert_eq!(
        payload(headers)[3],
        0x1,
        "frame 10 starts with the response HEADERS"
    );
    let mut p = Pcap {
        header: real.header.clone(),
        records: r[..9].to_vec(),
    };
    let ts = r[9].ts;
    let client_next = seq(&r[10].frame);
    let mut server_seq = seq(headers);
    for part in server_bytes.chunks(1448) {
        p.records.push(Record {
            ts,
            frame: with_seq_ack_flags(
                &with_payload(headers, part),
                server_seq,
                client_next,
                PSH_ACK,
            ),
        });
        server_seq = server_seq.wrapping_add(part.len() as u32);
    }
    let bare_client = &r[10].frame;
    let bare_server = &r[4].frame;
    for (template, s, a) in [
        (bare_server, server_seq, client_next),
        (bare_client, client_next, server_seq.wrapping_add(1)),
    ] {
        p.records.push(Record {
            ts: r[12].ts,
            frame: with_seq_ack_flags(template, s, a, FIN_ACK),
        });
    }
    p.records.push(Record {
        ts: r[13].ts,
        frame: with_seq_ack_flags(
            bare_server,
            server_seq.wrapping_add(1),
            client_next + 1,
            ACK,
        ),
    });
    let syn = r[0].frame.clone();
    (p, syn)
}

/// The response HEADERS frame of the healthy h2c sample: (9-byte header, block fragment).
fn real_response_headers() -> (Vec<u8>, Vec<u8>) {
    let real = Pcap::read(&scenario("healthy-h2c.pcap"));
    let b = payload(&real.records[9].frame);
    let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
    (b[..9].to_vec(), b[9..9 + len].to_vec())
}

/// The SETTINGS_MAX_FRAME_SIZE the client announced in its first SETTINGS frame after the
/// preface (RFC 9113 §6.5.2), or the default 16,384.
fn client_max_frame_size() -> u32 {
    let real = Pcap::read(&scenario("healthy-h2c.pcap"));
    let b = payload(&real.records[3].frame);
    let settings = &b[24..];
    assert_eq!(settings[3], 0x4, "a SETTINGS frame follows the preface");
    let len = usize::from(settings[1]) << 8 | usize::from(settings[2]);
    settings[9..9 + len]
        .chunks(6)
        .find(|s| s[..2] == [0, 5])
        .map(|s| u32::from_be_bytes(s[2..6].try_into().unwrap()))
        .unwrap_or(16_384)
}

fn h2_verdict(name: &str, server_bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (p, syn) = h2c_with_server_bytes(server_bytes);
    let path = write(dir.path(), name, &p.bytes());
    let (run, connections) = analysis(&path);
    assert_eq!(run.code, 1, "{name}: {}", run.stdout);
    the_connection(&connections, &syn, name).clone()
}

#[test]
fn an_h2_frame_longer_than_settings_max_frame_size_is_an_invalid_response() {
    let (head, block) = real_response_headers();
    let limit = client_max_frame_size();
    for len in [limit + 1, 0x00ff_ffff] {
        let mut bytes = head.clone();
        bytes[..3].copy_from_slice(&len.to_be_bytes()[1..]);
        // The bytes that follow are whatever the server sent; the length alone is wrong.
        bytes.extend_from_slice(&block);
        let c = h2_verdict("frame-size.pcap", &bytes);
        assert_eq!(c["class"], "invalid_response", "length {len}: {c}");
        let why = c["explanation"].as_str().unwrap();
        assert!(
            why.contains("SETTINGS_MAX_FRAME_SIZE"),
            "length {len}: {why}"
        );
    }
}

#[test]
fn hpack_garbage_in_the_response_headers_is_an_invalid_response() {
    let (head, block) = real_response_headers();
    // 0xff: an indexed field whose integer never ends (RFC 7541 §5.1); 0x80: index 0, which
    // RFC 7541 §6.1 forbids; 0xbf: index 63, past the static table with an empty dynamic
    // one; then the real block cut in the middle of a literal.
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; block.len()],
        [vec![0x80], block[1..].to_vec()].concat(),
        [vec![0xbf], block[1..].to_vec()].concat(),
        block[..block.len() / 2 + 1].to_vec(),
    ];
    for g in garbage {
        let mut bytes = head.clone();
        bytes[..3].copy_from_slice(&(g.len() as u32).to_be_bytes()[1..]);
        bytes.extend_from_slice(&g);
        let c = h2_verdict("hpack.pcap", &bytes);
        assert_eq!(c["class"], "invalid_response", "{g:02x?}: {c}");
        let why = c["explanation"].as_str().unwrap();
        assert!(why.contains("HPACK"), "{g:02x?}: {why}");
    }
}

#[test]
fn a_header_block_that_never_ends_is_bounded_and_reported() {
    let (head, block) = real_response_headers();
    // HEADERS without END_HEADERS (flags 0), then thousands of CONTINUATION frames on the
    // same stream, none of them ending the block: 20,000 frames of 16 bytes, 500 KB of
    // header block in all, far past any sane header block.
    let mut bytes = head.clone();
    bytes[4] = 0;
    bytes[..3].copy_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
    bytes.extend_from_slice(&block);
    let stream = &head[5..9];
    for i in 0..20_000u32 {
        bytes.extend_from_slice(&[0, 0, 16, 0x9, 0]);
        bytes.extend_from_slice(stream);
        // A literal header field without indexing, new name (RFC 7541 §6.2.2), 16 bytes.
        let value = format!("{:07}", i % 10_000_000);
        bytes.extend_from_slice(&[0x00, 6]);
        bytes.extend_from_slice(b"x-junk");
        bytes.push(7);
        bytes.extend_from_slice(value.as_bytes());
    }
    let c = h2_verdict("continuation.pcap", &bytes);
    assert_eq!(c["class"], "invalid_response", "{c}");
    assert!(
        c["explanation"].as_str().unwrap().contains("header block"),
        "{c}"
    );
    // The response never got its headers.
    let statuses: Vec<&Value> = c["requests"]
        .as_array()
        .map(|r| r.iter().filter(|x| !x["status"].is_null()).collect())
        .unwrap_or_default();
    assert!(statuses.is_empty(), "{c}");
}
