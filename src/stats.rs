//! `rstscope stats`: what is in each capture input, counted from the capture and decode
//! stages alone.
//!
//! The packet and TCP conversation counts are the ones `capinfos` and
//! `tshark -q -z conv,tcp` report for the same file; tests compare them.

// No unwrap or expect outside tests: input bytes never panic this module (clippy enforces it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::capture::{CaptureReader, Compression, Frame, Input, LinkType, MAX_KEPT_FAULTS};
use crate::decode::{Decoded, IpVersion, TcpPacket};
use crate::error::CaptureError;
use crate::timefmt::rfc3339_ns;

/// A fault met while reading an input.
#[derive(Debug, Clone, Serialize)]
pub struct InputFault {
    /// Byte offset in the input (in the decompressed stream for compressed input).
    pub offset: u64,
    pub message: String,
    /// Whether reading this input stopped here.
    pub fatal: bool,
}

/// Everything `stats` reports about one input.
#[derive(Debug, Clone, Serialize)]
pub struct InputStats {
    pub path: String,
    /// "pcap" or "pcapng"; null when the input could not be opened as a capture.
    pub format: Option<&'static str>,
    pub compression: Option<Compression>,
    pub timestamp_precision: Option<String>,
    pub byte_order: Option<&'static str>,
    pub link_types: Vec<String>,
    pub packets: u64,
    /// Captured bytes of all packets (what capinfos calls the data size).
    pub bytes: u64,
    /// Bytes of all packets on the wire, before the snaplen cut them.
    pub wire_bytes: u64,
    /// Earliest and latest packet time, RFC 3339 with nanoseconds.
    pub first: Option<String>,
    pub last: Option<String>,
    /// `first` in nanoseconds since the epoch, for relative times in reports.
    #[serde(skip)]
    pub first_ns: Option<i64>,
    pub duration_s: f64,
    pub ipv4_packets: u64,
    pub ipv6_packets: u64,
    pub tcp_packets: u64,
    pub udp_packets: u64,
    pub other_ip_packets: u64,
    pub non_ip_packets: u64,
    pub unsupported_link_packets: u64,
    /// Distinct TCP 5-tuples, direction-independent (counted by `rstscope stats`; 0 where the
    /// connection engine ran instead).
    pub tcp_connections: u64,
    pub ip_fragments: u64,
    pub reassembled_datagrams: u64,
    pub fragments_dropped: u64,
    /// Packets whose captured length is shorter than their length on the wire.
    pub snaplen_cut_packets: u64,
    /// TCP payload bytes that were on the wire but not in the capture.
    pub tcp_payload_bytes_missing: u64,
    /// Packets whose headers could not be read (cut inside a header, or lying).
    pub decode_errors: u64,
    /// Records skipped because of faults (their offsets are in `errors`, up to a limit).
    pub skipped_records: u64,
    pub errors: Vec<InputFault>,
}

impl InputStats {
    /// Whether reading this input met a fault (the input is corrupt or cut short).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.skipped_records > 0
    }

    /// Whether nothing of this input could be read: it could not be opened, or a fatal fault
    /// came before its first packet. A fault after some packets leaves a partial result, which
    /// is still reported.
    pub fn unreadable(&self) -> bool {
        self.packets == 0 && self.errors.iter().any(|e| e.fatal)
    }
}

type ConnKey = ((IpAddr, u16), (IpAddr, u16));

/// Counts one input's packets.
pub(crate) struct Counter {
    s: InputStats,
    link_types: BTreeSet<LinkType>,
    last_link: Option<LinkType>,
    /// Distinct 5-tuples, only when asked for: a second hash lookup per packet that the
    /// connection engine does not need.
    connections: Option<HashSet<ConnKey, foldhash::fast::FixedState>>,
    first_ns: Option<i64>,
    last_ns: Option<i64>,
}

impl Counter {
    /// A counter that also counts distinct TCP 5-tuples (`tcp_connections`) when
    /// `conversations` is set; otherwise that count stays 0.
    pub(crate) fn new(path: &str, conversations: bool) -> Self {
        Counter {
            s: InputStats {
                path: path.to_string(),
                format: None,
                compression: None,
                timestamp_precision: None,
                byte_order: None,
                link_types: Vec::new(),
                packets: 0,
                bytes: 0,
                wire_bytes: 0,
                first: None,
                last: None,
                first_ns: None,
                duration_s: 0.0,
                ipv4_packets: 0,
                ipv6_packets: 0,
                tcp_packets: 0,
                udp_packets: 0,
                other_ip_packets: 0,
                non_ip_packets: 0,
                unsupported_link_packets: 0,
                tcp_connections: 0,
                ip_fragments: 0,
                reassembled_datagrams: 0,
                fragments_dropped: 0,
                snaplen_cut_packets: 0,
                tcp_payload_bytes_missing: 0,
                decode_errors: 0,
                skipped_records: 0,
                errors: Vec::new(),
            },
            link_types: BTreeSet::new(),
            last_link: None,
            connections: conversations.then(HashSet::default),
            first_ns: None,
            last_ns: None,
        }
    }

    fn count_ip(&mut self, ip: IpVersion) {
        match ip {
            IpVersion::V4 => self.s.ipv4_packets += 1,
            IpVersion::V6 => self.s.ipv6_packets += 1,
        }
    }

    /// Counts a frame, and what it decoded to.
    pub(crate) fn add(&mut self, frame: &Frame<'_>, d: &Decoded<'_>) {
        let (ts_ns, link) = (frame.ts_ns, frame.link_type);
        let (captured, wire) = (frame.data.len(), frame.orig_len);
        let s = &mut self.s;
        s.packets += 1;
        s.bytes += captured as u64;
        s.wire_bytes += u64::from(wire).max(captured as u64);
        if (wire as usize) > captured {
            s.snaplen_cut_packets += 1;
        }
        // Simple Packet Blocks carry no time: they do not move the span.
        if ts_ns != 0 {
            self.first_ns = Some(self.first_ns.map_or(ts_ns, |f| f.min(ts_ns)));
            self.last_ns = Some(self.last_ns.map_or(ts_ns, |l| l.max(ts_ns)));
        }
        if self.last_link != Some(link) {
            // Nearly every packet has the link type of the one before.
            self.link_types.insert(link);
            self.last_link = Some(link);
        }
        match *d {
            Decoded::Tcp(ref t) => {
                self.count_ip(t.ip);
                self.count_tcp(t);
            }
            Decoded::Udp { ip } => {
                self.count_ip(ip);
                self.s.udp_packets += 1;
            }
            Decoded::OtherIp { ip, .. } => {
                self.count_ip(ip);
                self.s.other_ip_packets += 1;
            }
            Decoded::NonIp { .. } => self.s.non_ip_packets += 1,
            // Counted as held, should a caller count it here; the split analysis counts each
            // fragment once, with what the decoder that reassembles fragments made of it.
            Decoded::FragmentHeld { ip } | Decoded::FragmentDeferred { ip } => {
                self.count_ip(ip);
                self.s.ip_fragments += 1;
            }
            Decoded::FragmentDropped { ip, .. } => {
                self.count_ip(ip);
                self.s.ip_fragments += 1;
                self.s.fragments_dropped += 1;
            }
            Decoded::UnsupportedLink => self.s.unsupported_link_packets += 1,
            Decoded::Malformed { ip, .. } => {
                if let Some(ip) = ip {
                    self.count_ip(ip);
                }
                self.s.decode_errors += 1;
            }
        }
    }

    fn count_tcp(&mut self, t: &TcpPacket<'_>) {
        self.s.tcp_packets += 1;
        if t.reassembled {
            // The frame that completed the datagram is a fragment too.
            self.s.ip_fragments += 1;
            self.s.reassembled_datagrams += 1;
        }
        self.s.tcp_payload_bytes_missing += u64::from(t.bytes_missing());
        if let Some(connections) = &mut self.connections {
            let a = (t.src, t.src_port);
            let b = (t.dst, t.dst_port);
            connections.insert(if a <= b { (a, b) } else { (b, a) });
        }
    }

    /// Adds what `other` counted, of another part of the same input.
    pub(crate) fn merge(&mut self, other: Counter) {
        let (s, o) = (&mut self.s, other.s);
        s.packets += o.packets;
        s.bytes += o.bytes;
        s.wire_bytes += o.wire_bytes;
        s.ipv4_packets += o.ipv4_packets;
        s.ipv6_packets += o.ipv6_packets;
        s.tcp_packets += o.tcp_packets;
        s.udp_packets += o.udp_packets;
        s.other_ip_packets += o.other_ip_packets;
        s.non_ip_packets += o.non_ip_packets;
        s.unsupported_link_packets += o.unsupported_link_packets;
        s.ip_fragments += o.ip_fragments;
        s.reassembled_datagrams += o.reassembled_datagrams;
        s.fragments_dropped += o.fragments_dropped;
        s.snaplen_cut_packets += o.snaplen_cut_packets;
        s.tcp_payload_bytes_missing += o.tcp_payload_bytes_missing;
        s.decode_errors += o.decode_errors;
        s.skipped_records += o.skipped_records;
        s.errors.extend(o.errors);
        self.link_types.extend(other.link_types);
        if let (Some(mine), Some(theirs)) = (&mut self.connections, other.connections) {
            mine.extend(theirs);
        }
        let pick = |a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        self.first_ns = pick(self.first_ns, other.first_ns, i64::min);
        self.last_ns = pick(self.last_ns, other.last_ns, i64::max);
    }

    pub(crate) fn fault(&mut self, e: &CaptureError, fatal: bool) {
        self.s.errors.push(InputFault {
            offset: e.offset,
            message: e.kind.to_string(),
            fatal,
        });
    }

    /// A record skipped because of `e`; its offset is kept as the reader keeps those it
    /// skips, for the first few.
    pub(crate) fn skip(&mut self, e: &CaptureError) {
        self.s.skipped_records += 1;
        if self.s.errors.iter().filter(|e| !e.fatal).count() < MAX_KEPT_FAULTS {
            self.fault(e, false);
        }
    }

    pub(crate) fn finish(mut self, reader: Option<&CaptureReader>) -> InputStats {
        if let Some(r) = reader {
            let f = r.format();
            self.s.format = Some(f.format);
            self.s.compression = Some(f.compression);
            self.s.timestamp_precision = Some(f.timestamp_precision.clone());
            self.s.byte_order = Some(f.byte_order);
            // Besides those the threads that read in chunks skipped.
            self.s.skipped_records += r.fault_count();
            let record_faults: Vec<CaptureError> = r.faults().to_vec();
            for e in &record_faults {
                self.fault(e, false);
            }
        }
        self.s.link_types = self.link_types.iter().map(|l| l.name()).collect();
        self.s.tcp_connections = self.connections.as_ref().map_or(0, |c| c.len() as u64);
        self.s.first = self.first_ns.map(rfc3339_ns);
        self.s.first_ns = self.first_ns;
        self.s.last = self.last_ns.map(rfc3339_ns);
        if let (Some(f), Some(l)) = (self.first_ns, self.last_ns) {
            self.s.duration_s = (l - f) as f64 / 1e9;
        }
        // Faults in offset order: record faults first met, the fatal one last. Of the record
        // faults, the first few, as one thread reading front to back keeps them (threads
        // reading in chunks kept the first few each).
        self.s.errors.sort_by_key(|e| (e.fatal, e.offset));
        let mut kept = 0;
        self.s.errors.retain(|e| {
            kept += usize::from(!e.fatal);
            e.fatal || kept <= MAX_KEPT_FAULTS
        });
        self.s
    }
}

/// Reads one input to its end (or its first fatal fault) and counts what it holds; an
/// uncompressed pcap or pcapng file on `threads` threads.
pub fn collect(input: &Input, threads: usize) -> InputStats {
    crate::pipeline::count(input, threads)
}

/// Writes the human-readable report of one input.
pub fn write_text(out: &mut dyn std::io::Write, s: &InputStats) -> std::io::Result<()> {
    writeln!(out, "{}", s.path)?;
    let Some(format) = s.format else {
        return writeln!(out, "  not read (the reason is on stderr)\n");
    };
    let compression = match s.compression {
        Some(Compression::Gzip) => ", gzip",
        Some(Compression::Zstd) => ", zstd",
        _ => "",
    };
    writeln!(
        out,
        "  format        {format} ({} timestamps, {}-endian{compression})",
        s.timestamp_precision.as_deref().unwrap_or("?"),
        s.byte_order.unwrap_or("?")
    )?;
    writeln!(out, "  link types    {}", s.link_types.join(", "))?;
    if let (Some(f), Some(l)) = (&s.first, &s.last) {
        writeln!(out, "  time span     {f} .. {l} ({:.3} s)", s.duration_s)?;
    }
    writeln!(
        out,
        "  packets       {} ({} bytes captured, {} on the wire)",
        s.packets, s.bytes, s.wire_bytes
    )?;
    writeln!(
        out,
        "  network       IPv4 {}, IPv6 {}, not IP {}, unknown link type {}",
        s.ipv4_packets, s.ipv6_packets, s.non_ip_packets, s.unsupported_link_packets
    )?;
    writeln!(
        out,
        "  transport     TCP {}, UDP {}, other IP {}",
        s.tcp_packets, s.udp_packets, s.other_ip_packets
    )?;
    writeln!(
        out,
        "  TCP conns     {} distinct 5-tuples",
        s.tcp_connections
    )?;
    if s.ip_fragments > 0 {
        writeln!(
            out,
            "  IP fragments  {} ({} datagrams reassembled, {} dropped)",
            s.ip_fragments, s.reassembled_datagrams, s.fragments_dropped
        )?;
    }
    if s.snaplen_cut_packets > 0 {
        writeln!(
            out,
            "  snaplen cut   {} packets ({} TCP payload bytes not captured)",
            s.snaplen_cut_packets, s.tcp_payload_bytes_missing
        )?;
    }
    writeln!(out, "  decode errors {}", s.decode_errors)?;
    for e in &s.errors {
        writeln!(
            out,
            "  {} at byte {}: {}",
            if e.fatal { "STOPPED" } else { "skipped" },
            e.offset,
            e.message
        )?;
    }
    if s.skipped_records > s.errors.iter().filter(|e| !e.fatal).count() as u64 {
        writeln!(out, "  ({} records skipped in all)", s.skipped_records)?;
    }
    writeln!(out)
}
