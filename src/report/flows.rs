//! `rstscope flows`: every connection with its endpoints, roles, bytes each way, handshake
//! and close, to check the connection engine against tshark's conversation table and
//! Wireshark's view.

use std::io::{self, Write};

use serde::Serialize;

use crate::flow::{ConnectionRecord, EndReason, EventKind, HalfRecord, RoleBasis, Side};
use crate::pipeline::InputSummary;
use crate::timefmt::rfc3339_ns;

fn ms(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms.abs() >= 1000.0 {
        format!("{:.3}s", ms / 1000.0)
    } else {
        format!("{ms:.3}ms")
    }
}

fn handshake_text<H>(c: &ConnectionRecord<H>) -> String {
    let h = &c.handshake;
    match (h.syn_ns, h.syn_ack_ns) {
        (Some(syn), Some(synack)) => {
            let mut s = format!("SYN-ACK after {}", ms(synack - syn));
            if h.syn_retransmissions > 0 {
                s.push_str(&format!(", SYN sent {}x", h.syn_retransmissions + 1));
            }
            s
        }
        (Some(_), None) => format!("SYN sent {}x, no SYN-ACK", h.syn_retransmissions + 1),
        (None, Some(_)) => "SYN not captured".into(),
        (None, None) => "started before the capture".into(),
    }
}

/// Who closed first, how, and when relative to the connection's start.
fn close_text<H>(c: &ConnectionRecord<H>) -> String {
    let mut closes: Vec<(i64, &str, &str)> = Vec::new();
    for (side, h) in [("client", &c.client_sent), ("server", &c.server_sent)] {
        if let Some(t) = h.fin_ns {
            closes.push((t, side, "FIN"));
        }
        if let Some(t) = h.rst_ns {
            closes.push((t, side, "RST"));
        }
    }
    closes.sort();
    closes
        .iter()
        .map(|(t, side, how)| format!("{side} {how} +{}", ms(t - c.start_ns)))
        .collect::<Vec<_>>()
        .join(", ")
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

fn notes<H>(c: &ConnectionRecord<H>) -> String {
    let mut n = Vec::new();
    match c.roles {
        RoleBasis::Payload => n.push("roles inferred from the first bytes".to_string()),
        RoleBasis::Ports => n.push("roles inferred from the ports".to_string()),
        _ => {}
    }
    for (side, h) in [("client", &c.client_sent), ("server", &c.server_sent)] {
        let k = &h.counters;
        if k.gap_bytes > 0 {
            n.push(format!(
                "{side} stream: {} bytes missing in {} gaps",
                k.gap_bytes, k.gaps
            ));
        }
        if k.retransmissions > 0 {
            n.push(format!("{side}: {} retransmissions", k.retransmissions));
        }
        if k.differing_retransmissions > 0 {
            n.push(format!(
                "{side}: {} retransmissions with different bytes",
                k.differing_retransmissions
            ));
        }
        if k.buffer_cap_hits > 0 {
            n.push(format!(
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
            n.push(format!(
                "{side} RST has TTL {ttl}, its other packets {u}: probably a middlebox"
            ));
        }
        if let EventKind::Rst {
            in_window: Some(false),
            ..
        } = e.kind
        {
            n.push("RST outside the window".to_string());
        }
    }
    n.join("; ")
}

fn pair(h1: &HalfRecord, h2: &HalfRecord, f: impl Fn(&HalfRecord) -> u64) -> String {
    format!("{}/{}", f(h1), f(h2))
}

/// Time of day of a capture timestamp, UTC, to the microsecond: what people match against
/// proxy logs.
fn time_of_day(ts_ns: i64) -> String {
    let t = rfc3339_ns(ts_ns);
    t.get(11..26).unwrap_or(&t).to_string()
}

/// One connection, as text.
pub fn write_text<H>(out: &mut dyn Write, c: &ConnectionRecord<H>) -> io::Result<()> {
    writeln!(
        out,
        "  #{:<7} {}  {} -> {}",
        c.first_frame,
        time_of_day(c.start_ns),
        c.client,
        c.server
    )?;
    writeln!(
        out,
        "      packets c>s/s>c {}  bytes {}  duration {}",
        pair(&c.client_sent, &c.server_sent, |h| h.packets),
        pair(&c.client_sent, &c.server_sent, |h| h.stream_bytes),
        ms(c.end_ns - c.start_ns)
    )?;
    let close = close_text(c);
    let close = if close.is_empty() {
        "no FIN or RST".to_string()
    } else {
        close
    };
    writeln!(
        out,
        "      {}; {}; {}",
        handshake_text(c),
        close,
        end_text(c.end)
    )?;
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
    writeln!(out, "\n")
}

#[derive(Serialize)]
#[serde(bound(serialize = ""))]
struct FlowLine<'a, H> {
    capture: &'a str,
    start: String,
    duration_ms: f64,
    #[serde(flatten)]
    record: &'a ConnectionRecord<H>,
}

/// One connection as one line of JSON.
pub fn write_ndjson<H>(
    out: &mut dyn Write,
    capture: &str,
    c: &ConnectionRecord<H>,
) -> io::Result<()> {
    let line = FlowLine {
        capture,
        start: rfc3339_ns(c.start_ns),
        duration_ms: (c.end_ns - c.start_ns) as f64 / 1e6,
        record: c,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}
