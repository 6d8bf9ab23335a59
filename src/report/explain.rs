//! `rstscope explain`: one connection as a ladder diagram, a client column and a server
//! column with every event at its time relative to the connection's start, then the
//! verdict, what each proxy prints for it, and the causes and fixes to check.

use std::io::{self, Write};

use super::clip;
use crate::classify::Verdict;
use crate::classify::vocabulary::{h2_error_name, tls_alert_name};
use crate::detect::{Detector, ProtoKind};
use crate::flow::{ConnectionRecord, Endpoint, EventKind, GapCause, Side};
use crate::timefmt::rfc3339_ns;

/// Which connections the user asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSelector {
    /// The connection whose first packet is this frame (the id the reports print).
    Frame(u64),
    /// Every connection from this client port.
    ClientPort(u16),
    /// Every connection from this client endpoint, optionally to this server endpoint.
    Endpoints(String, Option<String>),
}

impl FlowSelector {
    /// `N` (a frame number), `:PORT` (a client port), `IP:PORT` (a client endpoint) or
    /// `CLIENT-SERVER` (both endpoints, as printed: `127.0.0.1:5000-127.0.0.1:80`).
    pub fn parse(s: &str) -> Option<FlowSelector> {
        let s = s.trim().trim_start_matches('#');
        if let Ok(n) = s.parse::<u64>() {
            return Some(FlowSelector::Frame(n));
        }
        if let Some(p) = s.strip_prefix(':') {
            return p.parse().ok().map(FlowSelector::ClientPort);
        }
        // Endpoints may hold ':' (IPv6 in brackets) but never '-' or '>'.
        let s = s.replace("->", "-");
        match s.split_once('-') {
            Some((c, srv)) if !c.is_empty() && !srv.is_empty() => Some(FlowSelector::Endpoints(
                c.trim().to_string(),
                Some(srv.trim().to_string()),
            )),
            _ if s.contains(':') => Some(FlowSelector::Endpoints(s.trim().to_string(), None)),
            _ => None,
        }
    }

    pub fn matches(&self, first_frame: u64, client: &Endpoint, server: &Endpoint) -> bool {
        match self {
            FlowSelector::Frame(n) => first_frame == *n,
            FlowSelector::ClientPort(p) => client.port == *p,
            FlowSelector::Endpoints(c, s) => {
                client.to_string() == *c && s.as_ref().is_none_or(|s| server.to_string() == *s)
            }
        }
    }
}

/// One line of the ladder: when, who, what.
pub struct Rung {
    pub ts_ns: i64,
    /// The sender; none for what belongs to the connection (idle periods, capture end).
    pub from: Option<Side>,
    pub what: String,
    pub tone: Tone,
}

/// How a rung reads in a diagram that can mark it: plain traffic, an orderly close, or what
/// went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Close,
    Fault,
}

/// The ladder of one connection: its TCP events and what its bytes carried, in time order.
pub fn rungs(rec: &ConnectionRecord<Detector>) -> Vec<Rung> {
    let mut rungs = tcp_rungs(rec);
    rungs.extend(proto_rungs(&rec.handler));
    // Stable: at the same instant, TCP events (pushed first) come before what their bytes
    // carried.
    rungs.sort_by_key(|r| r.ts_ns);
    rungs
}

fn tcp_tone(kind: &EventKind) -> Tone {
    match kind {
        EventKind::Fin => Tone::Close,
        EventKind::Rst { .. }
        | EventKind::Gap { .. }
        | EventKind::DifferingRetransmission { .. } => Tone::Fault,
        _ => Tone::Plain,
    }
}

fn proto_tone(kind: &ProtoKind) -> Tone {
    match kind {
        // close_notify is TLS's orderly close.
        ProtoKind::TlsAlert {
            description: Some(0),
            ..
        } => Tone::Close,
        ProtoKind::TlsAlert { .. }
        | ProtoKind::HttpInvalid { .. }
        | ProtoKind::H2RstStream { .. }
        | ProtoKind::H2ProtocolError { .. } => Tone::Fault,
        // GOAWAY with NO_ERROR is a graceful shutdown.
        ProtoKind::H2GoAway { error_code: 0, .. } => Tone::Close,
        ProtoKind::H2GoAway { .. } => Tone::Fault,
        _ => Tone::Plain,
    }
}

fn tcp_rungs(rec: &ConnectionRecord<Detector>) -> Vec<Rung> {
    rec.events
        .iter()
        .filter_map(|e| {
            let what = match e.kind {
                EventKind::Syn { retransmission } => if retransmission {
                    "SYN (retransmitted)"
                } else {
                    "SYN"
                }
                .to_string(),
                EventKind::SynAck { retransmission } => if retransmission {
                    "SYN-ACK (retransmitted)"
                } else {
                    "SYN-ACK"
                }
                .to_string(),
                EventKind::HandshakeComplete => "ACK (handshake complete)".to_string(),
                EventKind::FirstData => return None,
                EventKind::Fin => "FIN".to_string(),
                EventKind::Rst {
                    in_window,
                    ttl,
                    usual_ttl,
                } => {
                    let mut s = "RST".to_string();
                    if in_window == Some(false) {
                        s.push_str(" (outside the window)");
                    }
                    if let Some(u) = usual_ttl
                        && u != ttl
                    {
                        s.push_str(&format!(" (TTL {ttl}, usually {u}: a middlebox?)"));
                    }
                    s
                }
                EventKind::Gap { len, cause, .. } => format!(
                    "[{len} bytes missing: {}]",
                    match cause {
                        GapCause::Snaplen => "cut by the snaplen",
                        GapCause::NotCaptured => "not captured",
                        GapCause::BufferCap => "out-of-order buffer cap",
                    }
                ),
                EventKind::DifferingRetransmission { len, .. } => {
                    format!("retransmission of {len} bytes that differ from the first copy")
                }
                EventKind::Idle { duration_ns } => {
                    format!("... {:.3} s idle ...", duration_ns as f64 / 1e9)
                }
                EventKind::CaptureEnd => "(capture ends)".to_string(),
                EventKind::IdleTimeout => "(idle timeout: record closed)".to_string(),
                EventKind::Evicted => "(evicted by the connection cap)".to_string(),
            };
            Some(Rung {
                ts_ns: e.ts_ns,
                from: e.from,
                what,
                tone: tcp_tone(&e.kind),
            })
        })
        .collect()
}

fn proto_rungs(d: &Detector) -> Vec<Rung> {
    d.events
        .iter()
        .filter_map(|e| {
            let what = match &e.kind {
                ProtoKind::TlsClientHello { sni, alpn, .. } => format!(
                    "TLS ClientHello{}{}",
                    sni.as_ref()
                        .map(|s| format!(" SNI {s}"))
                        .unwrap_or_default(),
                    if alpn.is_empty() {
                        String::new()
                    } else {
                        format!(" ALPN [{}]", alpn.join(", "))
                    }
                ),
                ProtoKind::TlsServerHello {
                    version,
                    alpn,
                    hello_retry_request,
                    ..
                } => format!(
                    "TLS {}{}{}",
                    if *hello_retry_request {
                        "HelloRetryRequest"
                    } else {
                        "ServerHello"
                    },
                    match version {
                        0x0304 => " 1.3",
                        0x0303 => " 1.2",
                        _ => "",
                    },
                    alpn.as_ref()
                        .map(|a| format!(" ALPN {a}"))
                        .unwrap_or_default()
                ),
                ProtoKind::TlsChangeCipherSpec => "TLS ChangeCipherSpec".to_string(),
                ProtoKind::TlsAlert {
                    description: Some(d),
                    level,
                    ..
                } => {
                    format!(
                        "TLS alert {} ({})",
                        tls_alert_name(*d),
                        if *level == Some(1) {
                            "warning"
                        } else {
                            "fatal"
                        }
                    )
                }
                ProtoKind::TlsAlert { record_len, .. } => {
                    format!("TLS encrypted alert ({record_len} bytes)")
                }
                ProtoKind::TlsFirstApplicationData => "TLS application data".to_string(),
                ProtoKind::HttpRequest {
                    method,
                    target,
                    version,
                } => format!("{method} {target} {version}"),
                ProtoKind::HttpResponseStart => return None,
                ProtoKind::HttpResponseHead {
                    status, version, ..
                } => format!("{version} {status}"),
                ProtoKind::HttpBodyEnd { bytes } => format!("(body complete, {bytes} bytes)"),
                ProtoKind::HttpInvalid { first_bytes } => format!("not HTTP: '{first_bytes}'"),
                ProtoKind::H2Preface => "HTTP/2 preface".to_string(),
                ProtoKind::H2Settings { ack } => {
                    if *ack { "SETTINGS ACK" } else { "SETTINGS" }.to_string()
                }
                ProtoKind::H2Headers {
                    stream_id,
                    status,
                    method,
                    path,
                    end_stream,
                    ..
                } => {
                    format!(
                        "HEADERS stream {stream_id}{}{}{}",
                        method.as_ref().map(|m| format!(" {m}")).unwrap_or_default(),
                        path.as_ref().map(|p| format!(" {p}")).unwrap_or_default(),
                        status.map(|s| format!(" :status {s}")).unwrap_or_default()
                    ) + if *end_stream { " END_STREAM" } else { "" }
                }
                ProtoKind::H2DataEnd { stream_id } => format!("DATA stream {stream_id} END_STREAM"),
                ProtoKind::H2RstStream {
                    stream_id,
                    error_code,
                } => format!(
                    "RST_STREAM stream {stream_id} {}",
                    h2_error_name(*error_code)
                ),
                ProtoKind::H2GoAway {
                    last_stream_id,
                    error_code,
                    debug_data,
                } => format!(
                    "GOAWAY last stream {last_stream_id} {}{}",
                    h2_error_name(*error_code),
                    if debug_data.is_empty() {
                        String::new()
                    } else {
                        format!(" '{debug_data}'")
                    }
                ),
                ProtoKind::H2ProtocolError { detail } => format!("HTTP/2 error: {detail}"),
                ProtoKind::Unrecognized { first_bytes } => format!("'{first_bytes}'"),
            };
            Some(Rung {
                ts_ns: e.ts_ns,
                from: Some(e.from),
                what,
                tone: proto_tone(&e.kind),
            })
        })
        .collect()
}

/// A time relative to the connection's start: `+9.409 ms`, `+2.013 s`.
pub fn relative(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms.abs() < 1000.0 {
        format!("+{ms:.3} ms")
    } else {
        format!("+{:.3} s", ms / 1000.0)
    }
}

/// Column width of one side's labels in the ladder.
const LABEL: usize = 34;

/// Writes one connection's ladder diagram and verdict.
pub fn write_explain(
    out: &mut dyn Write,
    capture: &str,
    rec: &ConnectionRecord<Detector>,
    v: &Verdict,
) -> io::Result<()> {
    let rungs = rungs(rec);
    writeln!(
        out,
        "{capture}, frame {}: {} -> {}, from {}",
        rec.first_frame,
        rec.client,
        rec.server,
        rfc3339_ns(rec.start_ns)
    )?;
    writeln!(out)?;
    let client = format!("{} (client)", rec.client);
    let server = format!("{} (server)", rec.server);
    writeln!(out, "{:>14}  {client:<LABEL$}      {server}", "")?;
    for r in &rungs {
        let t = relative(r.ts_ns - rec.start_ns);
        match r.from {
            Some(Side::Client) => writeln!(out, "{t:>14}  {:<LABEL$} ───▶", clip(&r.what, LABEL))?,
            Some(Side::Server) => {
                writeln!(out, "{t:>14}  {:<LABEL$} ◀─── {}", "", clip(&r.what, LABEL))?
            }
            None => writeln!(out, "{t:>14}  {:^w$}", r.what, w = LABEL * 2 + 6)?,
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Verdict: {} ({}, phase {}){}",
        v.class.id(),
        v.confidence.id(),
        v.phase.id(),
        v.timeout_match
            .as_ref()
            .map(|m| format!("; matches {m}"))
            .unwrap_or_default()
    )?;
    writeln!(out, "  {}", v.explanation)?;
    if let Some(p) = &v.proxies {
        writeln!(out, "What proxies print for it:")?;
        writeln!(out, "  Envoy:   {}", p.envoy)?;
        writeln!(out, "  nginx:   {}", p.nginx)?;
        writeln!(out, "  HAProxy: {}", p.haproxy)?;
    }
    for r in &v.requests {
        writeln!(
            out,
            "  request {} {} -> {} ({}{})",
            r.method.as_deref().unwrap_or("?"),
            r.path.as_deref().unwrap_or("?"),
            r.status.map_or("no status".to_string(), |s| s.to_string()),
            r.outcome,
            r.time_to_first_byte_ms
                .map(|t| format!(", first byte after {t:.3} ms"))
                .unwrap_or_default()
        )?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!(FlowSelector::parse("#12"), Some(FlowSelector::Frame(12)));
        assert_eq!(
            FlowSelector::parse(":35074"),
            Some(FlowSelector::ClientPort(35074))
        );
        assert_eq!(
            FlowSelector::parse("127.0.0.1:1-127.0.0.1:80"),
            Some(FlowSelector::Endpoints(
                "127.0.0.1:1".into(),
                Some("127.0.0.1:80".into())
            ))
        );
        assert_eq!(
            FlowSelector::parse("[::1]:5 -> [::1]:80"),
            Some(FlowSelector::Endpoints(
                "[::1]:5".into(),
                Some("[::1]:80".into())
            ))
        );
        assert_eq!(
            FlowSelector::parse("[::1]:5"),
            Some(FlowSelector::Endpoints("[::1]:5".into(), None))
        );
        assert_eq!(FlowSelector::parse("nonsense"), None);
    }
}
