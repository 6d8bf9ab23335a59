//! `rstscope flows`: every connection with its endpoints, roles, bytes each way, handshake
//! and close, to check the connection engine against tshark's conversation table and
//! Wireshark's view.

use std::io::{self, Write};

use serde::Serialize;

use crate::detect::{Detected, Detector, ProtoKind, Protocol};
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

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::None => "nothing",
        Protocol::Tls => "TLS",
        Protocol::Http1 => "HTTP/1",
        Protocol::H2 => "HTTP/2",
        Protocol::Unknown => "unrecognized bytes",
    }
}

fn tls_version(v: u16) -> String {
    match v {
        0x0304 => "1.3".into(),
        0x0303 => "1.2".into(),
        0x0302 => "1.1".into(),
        0x0301 => "1.0".into(),
        v => format!("0x{v:04x}"),
    }
}

/// What the detectors found, in a few words.
fn protocol_text(d: &Detector) -> String {
    let [c, s] = d.protocols();
    let mut parts = vec![format!(
        "client spoke {}, server {}",
        protocol_name(c),
        protocol_name(s)
    )];
    for e in &d.events {
        let who = if e.from == Side::Client {
            "client"
        } else {
            "server"
        };
        match &e.kind {
            ProtoKind::TlsClientHello { sni, alpn, .. } => parts.push(format!(
                "ClientHello{}{}",
                sni.as_ref()
                    .map(|s| format!(" SNI {s}"))
                    .unwrap_or_default(),
                if alpn.is_empty() {
                    String::new()
                } else {
                    format!(" ALPN [{}]", alpn.join(", "))
                }
            )),
            ProtoKind::TlsServerHello {
                version,
                alpn,
                hello_retry_request,
                ..
            } => parts.push(format!(
                "{} TLS {}{}",
                if *hello_retry_request {
                    "HelloRetryRequest"
                } else {
                    "ServerHello"
                },
                tls_version(*version),
                alpn.as_ref()
                    .map(|a| format!(" ALPN {a}"))
                    .unwrap_or_default()
            )),
            ProtoKind::TlsAlert {
                description: Some(d),
                ..
            } => parts.push(format!("{who} TLS alert {d}")),
            ProtoKind::TlsAlert {
                encrypted: true,
                record_len,
                ..
            } => parts.push(format!("{who} encrypted alert ({record_len} bytes)")),
            ProtoKind::H2RstStream {
                stream_id,
                error_code,
            } => parts.push(format!("{who} RST_STREAM {stream_id} code {error_code}")),
            ProtoKind::H2GoAway {
                last_stream_id,
                error_code,
                ..
            } => parts.push(format!(
                "{who} GOAWAY last {last_stream_id} code {error_code}"
            )),
            ProtoKind::H2ProtocolError { detail } => parts.push(format!("{who} HTTP/2: {detail}")),
            ProtoKind::HttpInvalid { first_bytes } => {
                parts.push(format!("{who} sent no valid HTTP/1: '{first_bytes}'"))
            }
            ProtoKind::Unrecognized { first_bytes } => {
                parts.push(format!("{who} sent '{first_bytes}'"))
            }
            _ => {}
        }
    }
    let x = d.exchanges();
    if !x.is_empty() {
        let shown: Vec<String> = x
            .iter()
            .take(4)
            .map(|x| {
                format!(
                    "{} {} -> {}",
                    x.method.as_deref().unwrap_or("?"),
                    x.target.as_deref().unwrap_or("?"),
                    x.status
                        .map_or("no response".to_string(), |s| s.to_string())
                )
            })
            .collect();
        parts.push(format!(
            "{} requests: {}{}",
            x.len(),
            shown.join(", "),
            if x.len() > 4 { ", ..." } else { "" }
        ));
    }
    let h2_headers = d
        .events
        .iter()
        .filter(|e| matches!(e.kind, ProtoKind::H2Headers { .. }))
        .count();
    if h2_headers > 0 {
        parts.push(format!("{h2_headers} HTTP/2 header blocks"));
    }
    parts.join("; ")
}

/// One connection, as text.
pub fn write_text(out: &mut dyn Write, c: &ConnectionRecord<Detector>) -> io::Result<()> {
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
    if c.handler.protocols() != [Protocol::None; 2] {
        writeln!(out, "      {}", protocol_text(&c.handler))?;
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
