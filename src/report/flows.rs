//! `rstscope flows`: every connection with its endpoints, roles, bytes each way, handshake
//! and close, to check the connection engine against tshark's conversation table and
//! Wireshark's view.

use std::fmt::{self, Write as _};
use std::io::{self, Write};

use serde::Serialize;

use crate::detect::{Detected, Detector, ProtoKind, Protocol};
use crate::flow::{ConnectionRecord, EndReason, EventKind, RoleBasis, Side};
use crate::pipeline::InputSummary;
use crate::timefmt::rfc3339_ns;

/// A duration in milliseconds, or in seconds from a second up. Written where it is used:
/// a connection's text is written straight to the output, without a `String` per part.
struct Ms(i64);

impl fmt::Display for Ms {
    /// Three decimals, rounded half away from zero, in integers: formatting floats was a
    /// tenth of `rstscope flows` on short connections.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let ns = self.0.unsigned_abs();
        let (unit, per_thousandth) = if ns >= 1_000_000_000 {
            ("s", 1_000_000)
        } else {
            ("ms", 1_000)
        };
        let thousandths = (ns + per_thousandth / 2) / per_thousandth;
        write!(
            f,
            "{sign}{}.{:03}{unit}",
            thousandths / 1000,
            thousandths % 1000
        )
    }
}

fn write_handshake<H>(out: &mut dyn Write, c: &ConnectionRecord<H>) -> io::Result<()> {
    let h = &c.handshake;
    match (h.syn_ns, h.syn_ack_ns) {
        (Some(syn), Some(synack)) => {
            write!(out, "SYN-ACK after {}", Ms(synack - syn))?;
            if h.syn_retransmissions > 0 {
                write!(out, ", SYN sent {}x", h.syn_retransmissions + 1)?;
            }
            Ok(())
        }
        (Some(_), None) => write!(out, "SYN sent {}x, no SYN-ACK", h.syn_retransmissions + 1),
        (None, Some(_)) => write!(out, "SYN not captured"),
        (None, None) => write!(out, "started before the capture"),
    }
}

/// Who closed first, how, and when relative to the connection's start.
fn write_close<H>(out: &mut dyn Write, c: &ConnectionRecord<H>) -> io::Result<()> {
    let mut closes = [(0i64, "", ""); 4];
    let mut n = 0;
    for (side, h) in [("client", &c.client_sent), ("server", &c.server_sent)] {
        for (at, how) in [(h.fin_ns, "FIN"), (h.rst_ns, "RST")] {
            if let (Some(t), Some(slot)) = (at, closes.get_mut(n)) {
                *slot = (t, side, how);
                n += 1;
            }
        }
    }
    let closes = closes.get_mut(..n).unwrap_or_default();
    if closes.is_empty() {
        return write!(out, "no FIN or RST");
    }
    closes.sort();
    for (i, (t, side, how)) in closes.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        write!(out, "{sep}{side} {how} +{}", Ms(t - c.start_ns))?;
    }
    Ok(())
}

fn end_text(e: EndReason) -> &'static str {
    match e {
        EndReason::Closed => "closed",
        EndReason::Reset => "reset",
        EndReason::CaptureEnd => "open at capture end",
        EndReason::IdleTimeout => "idle timeout",
        EndReason::Superseded => "superseded by a new SYN",
        EndReason::Evicted => "evicted (connection cap)",
    }
}

/// What is unusual about the connection, `; `-separated; empty (and not allocated) when
/// nothing is.
fn notes<H>(c: &ConnectionRecord<H>) -> String {
    let mut n = String::new();
    let mut note = |args: fmt::Arguments<'_>| {
        let sep = if n.is_empty() { "" } else { "; " };
        // Writing to a String cannot fail.
        let _ = write!(n, "{sep}{args}");
    };
    match c.roles {
        RoleBasis::Payload => note(format_args!("roles inferred from the first bytes")),
        RoleBasis::Ports => note(format_args!("roles inferred from the ports")),
        _ => {}
    }
    for (side, h) in [("client", &c.client_sent), ("server", &c.server_sent)] {
        let k = &h.counters;
        if k.gap_bytes > 0 {
            note(format_args!(
                "{side} stream: {} bytes missing in {} gaps",
                k.gap_bytes, k.gaps
            ));
        }
        if k.retransmissions > 0 {
            note(format_args!(
                "{side}: {} retransmissions",
                k.retransmissions
            ));
        }
        if k.differing_retransmissions > 0 {
            note(format_args!(
                "{side}: {} retransmissions with different bytes",
                k.differing_retransmissions
            ));
        }
        if k.buffer_cap_hits > 0 {
            note(format_args!(
                "{side}: out-of-order buffer cap reached {}x",
                k.buffer_cap_hits
            ));
        }
    }
    for e in &c.events {
        if let EventKind::Rst {
            usual_ttl: Some(u),
            ttl,
            ..
        } = e.kind
            && u != ttl
        {
            let side = if e.from == Some(Side::Client) {
                "client"
            } else {
                "server"
            };
            note(format_args!(
                "{side} RST has TTL {ttl}, its other packets {u}: probably a middlebox"
            ));
        }
        if let EventKind::Rst {
            in_window: Some(false),
            ..
        } = e.kind
        {
            note(format_args!("RST outside the window"));
        }
    }
    n
}

/// Time of day of a capture timestamp, UTC, to the microsecond: what people match against
/// proxy logs.
fn write_time_of_day(out: &mut dyn Write, ts_ns: i64) -> io::Result<()> {
    let t = rfc3339_ns(ts_ns);
    write!(out, "{}", t.get(11..26).unwrap_or(&t))
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::None => "nothing",
        Protocol::Tls => "TLS",
        Protocol::Http1 => "HTTP/1",
        Protocol::H2 => "HTTP/2",
        Protocol::Unknown => "unrecognized bytes",
    }
}

struct TlsVersion(u16);

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x0304 => write!(f, "1.3"),
            0x0303 => write!(f, "1.2"),
            0x0302 => write!(f, "1.1"),
            0x0301 => write!(f, "1.0"),
            v => write!(f, "0x{v:04x}"),
        }
    }
}

/// What the detectors found, in a few words, `; `-separated.
fn write_protocols(out: &mut dyn Write, d: &Detector) -> io::Result<()> {
    let [c, s] = d.protocols();
    write!(
        out,
        "client spoke {}, server {}",
        protocol_name(c),
        protocol_name(s)
    )?;
    for e in &d.events {
        let who = if e.from == Side::Client {
            "client"
        } else {
            "server"
        };
        match &e.kind {
            ProtoKind::TlsClientHello { sni, alpn, .. } => {
                write!(out, "; ClientHello")?;
                if let Some(sni) = sni {
                    write!(out, " SNI {sni}")?;
                }
                if !alpn.is_empty() {
                    write!(out, " ALPN [{}]", alpn.join(", "))?;
                }
            }
            ProtoKind::TlsServerHello {
                version,
                alpn,
                hello_retry_request,
                ..
            } => {
                let hello = if *hello_retry_request {
                    "HelloRetryRequest"
                } else {
                    "ServerHello"
                };
                write!(out, "; {hello} TLS {}", TlsVersion(*version))?;
                if let Some(alpn) = alpn {
                    write!(out, " ALPN {alpn}")?;
                }
            }
            ProtoKind::TlsAlert {
                description: Some(d),
                ..
            } => write!(out, "; {who} TLS alert {d}")?,
            ProtoKind::TlsAlert {
                encrypted: true,
                record_len,
                ..
            } => write!(out, "; {who} encrypted alert ({record_len} bytes)")?,
            ProtoKind::H2RstStream {
                stream_id,
                error_code,
            } => write!(out, "; {who} RST_STREAM {stream_id} code {error_code}")?,
            ProtoKind::H2GoAway {
                last_stream_id,
                error_code,
                ..
            } => write!(
                out,
                "; {who} GOAWAY last {last_stream_id} code {error_code}"
            )?,
            ProtoKind::H2ProtocolError { detail } => write!(out, "; {who} HTTP/2: {detail}")?,
            ProtoKind::HttpInvalid { first_bytes } => {
                write!(out, "; {who} sent no valid HTTP/1: '{first_bytes}'")?
            }
            ProtoKind::Unrecognized { first_bytes } => write!(out, "; {who} sent '{first_bytes}'")?,
            _ => {}
        }
    }
    let x = d.exchanges();
    if !x.is_empty() {
        write!(out, "; {} requests: ", x.len())?;
        for (i, x) in x.iter().take(4).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let method = x.method.as_deref().unwrap_or("?");
            let target = x.target.as_deref().unwrap_or("?");
            write!(out, "{sep}{method} {target} -> ")?;
            match x.status {
                Some(status) => write!(out, "{status}")?,
                None => write!(out, "no response")?,
            }
        }
        if x.len() > 4 {
            write!(out, ", ...")?;
        }
    }
    let h2_headers = d
        .events
        .iter()
        .filter(|e| matches!(e.kind, ProtoKind::H2Headers { .. }))
        .count();
    if h2_headers > 0 {
        write!(out, "; {h2_headers} HTTP/2 header blocks")?;
    }
    Ok(())
}

/// One connection, as text.
pub fn write_text(out: &mut dyn Write, c: &ConnectionRecord<Detector>) -> io::Result<()> {
    write!(out, "  #{:<7} ", c.first_frame)?;
    write_time_of_day(out, c.start_ns)?;
    writeln!(out, "  {} -> {}", c.client, c.server)?;
    let (cs, sc) = (&c.client_sent, &c.server_sent);
    writeln!(
        out,
        "      packets c>s/s>c {}/{}  bytes {}/{}  duration {}",
        cs.packets,
        sc.packets,
        cs.stream_bytes,
        sc.stream_bytes,
        Ms(c.end_ns - c.start_ns)
    )?;
    write!(out, "      ")?;
    write_handshake(out, c)?;
    write!(out, "; ")?;
    write_close(out, c)?;
    writeln!(out, "; {}", end_text(c.end))?;
    if c.handler.protocols() != [Protocol::None; 2] {
        write!(out, "      ")?;
        write_protocols(out, &c.handler)?;
        writeln!(out)?;
    }
    let n = notes(c);
    if !n.is_empty() {
        writeln!(out, "      {n}")?;
    }
    Ok(())
}

/// The closing lines of one input's connection list.
pub fn write_text_footer(
    out: &mut dyn Write,
    s: &InputSummary,
    connections: u64,
) -> io::Result<()> {
    write!(out, "  {connections} TCP connections")?;
    if s.table.evicted > 0 {
        write!(
            out,
            " ({} closed early by the live-connection cap)",
            s.table.evicted
        )?;
    }
    if s.table.trailing > 0 {
        write!(
            out,
            "; {} segments came after their connection had ended (both FINs acknowledged) and count in none",
            s.table.trailing
        )?;
    }
    writeln!(out, "\n")
}

#[derive(Serialize)]
struct FlowLine<'a> {
    capture: &'a str,
    start: String,
    duration_ms: f64,
    #[serde(flatten)]
    record: &'a ConnectionRecord<Detector>,
    detected: Detected<'a>,
}

/// One connection as one line of JSON.
pub fn write_ndjson(
    out: &mut dyn Write,
    capture: &str,
    c: &ConnectionRecord<Detector>,
) -> io::Result<()> {
    let line = FlowLine {
        capture,
        start: rfc3339_ns(c.start_ns),
        duration_ms: (c.end_ns - c.start_ns) as f64 / 1e6,
        record: c,
        detected: c.handler.detected(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::Ms;

    #[test]
    fn durations_are_written_as_float_formatting_wrote_them() {
        // Whole microseconds (as in microsecond captures) and nanoseconds away from a
        // half: the same text as `{:.3}` of the value in milliseconds or seconds.
        let as_float = |ns: i64| {
            let ms = ns as f64 / 1e6;
            if ms.abs() >= 1000.0 {
                format!("{:.3}s", ms / 1000.0)
            } else {
                format!("{ms:.3}ms")
            }
        };
        for ns in [
            0,
            17_000,
            999_999_000,
            999_999_600,
            1_000_000_000,
            1_234_567_000,
            2_021_041_000,
            59_999_999_000,
            -17_000,
            -1_500_000_000,
            123_456_789,
            1_999_499_999,
        ] {
            assert_eq!(Ms(ns).to_string(), as_float(ns), "{ns}");
        }
        // A half rounds away from zero.
        assert_eq!(Ms(1_500).to_string(), "0.002ms");
        assert_eq!(Ms(-1_500).to_string(), "-0.002ms");
    }
}
