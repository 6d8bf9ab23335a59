//! Stage 5: one connection's timeline -> a [`Verdict`].
//!
//! A pure function of the connection record and what the detectors found: no I/O, no clock,
//! no globals. The first abnormal event decides the class, in the order a connection lives:
//! connect, TLS or protocol agreement, then each request and its response. Class ids and
//! wire signatures are those of ../shared/DESIGN.md.

pub mod vocabulary;

use std::borrow::Cow;

use serde::Serialize;

use crate::detect::{Detector, Exchange, Framing, ProtoKind, Protocol};
use crate::flow::{ConnectionRecord, EndReason, EventKind, GapCause, Side};
use vocabulary::{
    CONNECT_TIMEOUTS, IDLE_TIMEOUTS, ProxyMessages, RESPONSE_TIMEOUTS, h2_error_name,
    match_timeout, proxy_messages, round_seconds, tls_alert_name,
};

/// The failure classes (stable ids, used in every output format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Ok,
    IdleClose,
    ConnectRefused,
    ConnectTimeout,
    TlsToPlaintextPort,
    PlaintextToTlsPort,
    AlpnMismatch,
    TlsAlert,
    TlsHandshakeAborted,
    H2PrefaceToHttp1,
    Http1ToH2Only,
    ClosedBeforeResponse,
    ResetBeforeResponse,
    KeepaliveRace,
    PartialResponseHeaders,
    InvalidResponse,
    ResponseTimeout,
    TruncatedResponseBody,
    H2StreamReset,
    H2Goaway,
    ClientAbort,
    IncompleteCapture,
}

impl Class {
    /// Every class, in the order of the taxonomy.
    pub const ALL: [Class; 22] = [
        Class::Ok,
        Class::IdleClose,
        Class::ConnectRefused,
        Class::ConnectTimeout,
        Class::TlsToPlaintextPort,
        Class::PlaintextToTlsPort,
        Class::AlpnMismatch,
        Class::TlsAlert,
        Class::TlsHandshakeAborted,
        Class::H2PrefaceToHttp1,
        Class::Http1ToH2Only,
        Class::ClosedBeforeResponse,
        Class::ResetBeforeResponse,
        Class::KeepaliveRace,
        Class::PartialResponseHeaders,
        Class::InvalidResponse,
        Class::ResponseTimeout,
        Class::TruncatedResponseBody,
        Class::H2StreamReset,
        Class::H2Goaway,
        Class::ClientAbort,
        Class::IncompleteCapture,
    ];

    /// The id as printed everywhere.
    pub fn id(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::IdleClose => "idle_close",
            Class::ConnectRefused => "connect_refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::TlsToPlaintextPort => "tls_to_plaintext_port",
            Class::PlaintextToTlsPort => "plaintext_to_tls_port",
            Class::AlpnMismatch => "alpn_mismatch",
            Class::TlsAlert => "tls_alert",
            Class::TlsHandshakeAborted => "tls_handshake_aborted",
            Class::H2PrefaceToHttp1 => "h2_preface_to_http1",
            Class::Http1ToH2Only => "http1_to_h2_only",
            Class::ClosedBeforeResponse => "closed_before_response",
            Class::ResetBeforeResponse => "reset_before_response",
            Class::KeepaliveRace => "keepalive_race",
            Class::PartialResponseHeaders => "partial_response_headers",
            Class::InvalidResponse => "invalid_response",
            Class::ResponseTimeout => "response_timeout",
            Class::TruncatedResponseBody => "truncated_response_body",
            Class::H2StreamReset => "h2_stream_reset",
            Class::H2Goaway => "h2_goaway",
            Class::ClientAbort => "client_abort",
            Class::IncompleteCapture => "incomplete_capture",
        }
    }

    /// Whether this class is a failure (everything but ok and the benign idle close).
    pub fn is_failure(self) -> bool {
        !matches!(self, Class::Ok | Class::IdleClose)
    }
}

/// Where in the connection's life the class struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Connect,
    Tls,
    Request,
    ResponseHead,
    ResponseBody,
    Idle,
    Done,
}

impl Phase {
    pub fn id(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Request => "request",
            Phase::ResponseHead => "response-head",
            Phase::ResponseBody => "response-body",
            Phase::Idle => "idle",
            Phase::Done => "done",
        }
    }
}

/// How sure the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// The wire shows it.
    Certain,
    /// The wire shows it, but another reading is possible.
    Likely,
    /// Inferred from encrypted record flow or from timing.
    Inferred,
}

impl Confidence {
    pub fn id(self) -> &'static str {
        match self {
            Confidence::Certain => "certain",
            Confidence::Likely => "likely",
            Confidence::Inferred => "inferred",
        }
    }
}

/// How a side closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    Fin,
    Rst,
    None,
}

/// The timings that matter, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub syn_to_syn_ack_ms: Option<f64>,
    /// When each SYN was sent, relative to the first.
    pub syn_schedule_ms: Vec<f64>,
    pub request_to_close_ms: Option<f64>,
    pub first_response_byte_to_close_ms: Option<f64>,
    /// Idle time on a reused connection before the request that failed.
    pub idle_before_request_ms: Option<f64>,
    /// The idle time before an idle close.
    pub idle_before_close_ms: Option<f64>,
    /// How long the client waited for a response before giving up.
    pub wait_ms: Option<f64>,
}

/// A TLS alert as seen.
#[derive(Debug, Clone, Serialize)]
pub struct AlertInfo {
    pub from: Side,
    /// "warning", "fatal", or null when the alert was encrypted.
    pub level: Option<&'static str>,
    /// The RFC 8446 name ("no_application_protocol"), or null when encrypted.
    pub description: Option<String>,
    pub encrypted: bool,
}

/// The TLS facts of the connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub alpn_offered: Vec<String>,
    /// Visible up to TLS 1.2; null in TLS 1.3, where the choice is encrypted.
    pub alpn_selected: Option<String>,
    pub version: Option<String>,
    pub alert: Option<AlertInfo>,
}

/// An HTTP/2 GOAWAY or RST_STREAM.
#[derive(Debug, Clone, Serialize)]
pub struct H2Code {
    pub from: Side,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stream_id: Option<u32>,
    pub error_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_data: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct H2Info {
    pub goaway: Vec<H2Code>,
    pub rst_stream: Vec<H2Code>,
}

/// What happened to one request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestOutcome {
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub time_to_first_byte_ms: Option<f64>,
    /// "complete", "no_response", "partial_headers", "truncated_body", "reset", "open".
    pub outcome: &'static str,
}

/// The verdict on one connection.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub class: Class,
    pub phase: Phase,
    pub confidence: Confidence,
    pub closed_by: Option<Side>,
    pub close: CloseKind,
    /// The first RST has a TTL unlike its sender's other packets: probably a middlebox.
    pub rst_from_middlebox: bool,
    /// "http/1.1", "h2", "h2c", "tls", or null.
    pub protocol: Option<String>,
    pub timings: Timings,
    pub tls: TlsInfo,
    pub h2: H2Info,
    pub requests: Vec<RequestOutcome>,
    /// 5xx statuses in responses on this connection (the symptom, not the class).
    pub server_errors: Vec<u16>,
    /// The longest idle time after which the client reused this connection for a new
    /// request (HTTP/1), in milliseconds: what the server's idle timeout must exceed.
    pub longest_reuse_idle_ms: Option<f64>,
    /// The known default an observed timeout or idle time matches.
    pub timeout_match: Option<String>,
    pub explanation: String,
    pub proxies: Option<ProxyMessages>,
}

/// A close this soon after the first bytes (or within three round trips) is a reaction to
/// those bytes, not to work done for them.
const FAST_CLOSE_NS: i64 = 20_000_000;

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Facts gathered once from the record.
struct Facts<'a> {
    rec: &'a ConnectionRecord<Detector>,
    det: &'a Detector,
    first_close: Option<(i64, Side, CloseKind)>,
}

impl<'a> Facts<'a> {
    fn new(rec: &'a ConnectionRecord<Detector>) -> Self {
        let (c, s) = (&rec.client_sent, &rec.server_sent);
        // The earliest close; at the same instant a RST outranks a FIN, then the client's
        // close comes first (only a strictly earlier one replaces the one found).
        let mut first_close: Option<(i64, Side, CloseKind)> = None;
        for (at, side, kind) in [
            (c.fin_ns, Side::Client, CloseKind::Fin),
            (c.rst_ns, Side::Client, CloseKind::Rst),
            (s.fin_ns, Side::Server, CloseKind::Fin),
            (s.rst_ns, Side::Server, CloseKind::Rst),
        ] {
            let Some(t) = at else { continue };
            let earlier = first_close
                .is_none_or(|(ft, _, fk)| (t, kind == CloseKind::Fin) < (ft, fk == CloseKind::Fin));
            if earlier {
                first_close = Some((t, side, kind));
            }
        }
        Facts {
            rec,
            det: &rec.handler,
            first_close,
        }
    }

    fn close_of(&self, side: Side) -> Option<(i64, CloseKind)> {
        let h = match side {
            Side::Client => &self.rec.client_sent,
            Side::Server => &self.rec.server_sent,
        };
        match (h.fin_ns, h.rst_ns) {
            (Some(f), Some(r)) if r < f => Some((r, CloseKind::Rst)),
            (Some(f), _) => Some((f, CloseKind::Fin)),
            (None, Some(r)) => Some((r, CloseKind::Rst)),
            (None, None) => None,
        }
    }

    fn proto_events(&self, from: Side) -> impl Iterator<Item = (i64, &'a ProtoKind)> + '_ {
        self.det
            .events
            .iter()
            .filter(move |e| e.from == from)
            .map(|e| (e.ts_ns, &e.kind))
    }
}

/// A verdict under construction.
struct Draft {
    class: Class,
    phase: Phase,
    confidence: Confidence,
    /// Fixed text stays borrowed: most connections are only counted, and their explanation
    /// never becomes a [`Verdict`]'s.
    explanation: Cow<'static, str>,
    detail: Option<String>,
    timeout_match: Option<String>,
}

fn draft(
    class: Class,
    phase: Phase,
    confidence: Confidence,
    explanation: impl Into<Cow<'static, str>>,
) -> Draft {
    Draft {
        class,
        phase,
        confidence,
        explanation: explanation.into(),
        detail: None,
        timeout_match: None,
    }
}

/// Classifies one finished connection.
pub fn classify(rec: &ConnectionRecord<Detector>) -> Verdict {
    judge(rec).verdict(rec)
}

/// A connection's class and what a summary counts of it: the first half of [`classify`].
/// What only a listing shows (the requests, the protocol, the proxies' messages, the SYN
/// schedule) is added by [`Judgement::verdict`], so that a connection that is only counted
/// costs no more than its class.
pub struct Judgement {
    draft: Draft,
    timings: Timings,
    tls: TlsInfo,
    h2: H2Info,
    server_errors: Vec<u16>,
    longest_reuse_idle_ms: Option<f64>,
}

/// Decides the class of one finished connection.
pub fn judge(rec: &ConnectionRecord<Detector>) -> Judgement {
    let f = Facts::new(rec);
    let mut timings = Timings::default();
    let tls = tls_info(&f);
    let h2 = h2_info(&f);
    if let (Some(syn), Some(synack)) = (rec.handshake.syn_ns, rec.handshake.syn_ack_ns) {
        timings.syn_to_syn_ack_ms = Some(ms(synack - syn));
    }
    let draft = decide(&f, &tls, &h2, &mut timings);
    let server_errors = f
        .det
        .exchanges()
        .iter()
        .filter_map(|x| x.status)
        .filter(|s| *s >= 500)
        .chain(f.proto_events(Side::Server).filter_map(|(_, k)| match k {
            ProtoKind::H2Headers {
                status: Some(s), ..
            } if *s >= 500 => Some(*s),
            _ => None,
        }))
        .collect();
    Judgement {
        draft,
        timings,
        tls,
        h2,
        server_errors,
        longest_reuse_idle_ms: longest_reuse_idle(f.det.exchanges()),
    }
}

impl Judgement {
    pub fn class(&self) -> Class {
        self.draft.class
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// As [`Verdict::server_errors`].
    pub fn server_errors(&self) -> &[u16] {
        &self.server_errors
    }

    /// As [`Verdict::longest_reuse_idle_ms`].
    pub fn longest_reuse_idle_ms(&self) -> Option<f64> {
        self.longest_reuse_idle_ms
    }

    /// As [`Verdict::timeout_match`].
    pub fn timeout_match(&self) -> Option<&str> {
        self.draft.timeout_match.as_deref()
    }

    /// The full verdict; `rec` is the record this judgement was made of.
    pub fn verdict(self, rec: &ConnectionRecord<Detector>) -> Verdict {
        let Judgement {
            draft: d,
            mut timings,
            tls,
            h2,
            server_errors,
            longest_reuse_idle_ms,
        } = self;
        let f = Facts::new(rec);
        let requests = request_outcomes(&f);
        timings.syn_schedule_ms = rec
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Syn { .. }))
            .map(|e| ms(e.ts_ns - rec.handshake.syn_ns.unwrap_or(e.ts_ns)))
            .collect();
        let (closed_by, close) = match f.first_close {
            Some((_, side, kind)) => (Some(side), kind),
            None => (None, CloseKind::None),
        };
        let rst_from_middlebox = rec
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Rst { ttl, usual_ttl: Some(u), .. } if ttl != u));
        let [cp, sp] = f.det.protocols();
        let protocol = match (cp, sp) {
            (Protocol::Tls, _) => Some(
                tls.alpn_selected
                    .as_deref()
                    .map_or("tls".to_string(), |a| format!("tls/{a}")),
            ),
            (Protocol::H2, _) => Some("h2c".into()),
            (Protocol::Http1, _) => Some("http/1.1".into()),
            (_, Protocol::Http1) => Some("http/1.1".into()),
            _ => None,
        };
        let proxies = proxy_messages(d.class, d.detail.as_deref());
        Verdict {
            class: d.class,
            phase: d.phase,
            confidence: d.confidence,
            closed_by,
            close,
            rst_from_middlebox,
            protocol,
            timings,
            tls,
            h2,
            requests,
            server_errors,
            longest_reuse_idle_ms,
            timeout_match: d.timeout_match,
            explanation: d.explanation.into_owned(),
            proxies,
        }
    }
}

fn tls_info(f: &Facts<'_>) -> TlsInfo {
    let mut info = TlsInfo::default();
    for e in &f.det.events {
        match &e.kind {
            ProtoKind::TlsClientHello { sni, alpn, .. } => {
                info.sni = sni.clone();
                info.alpn_offered = alpn.clone();
            }
            ProtoKind::TlsServerHello { version, alpn, .. } => {
                info.version = Some(tls_version_name(*version));
                info.alpn_selected = alpn.clone();
            }
            ProtoKind::TlsAlert {
                level,
                description,
                encrypted,
                ..
            } if info.alert.is_none()
                // close_notify is an orderly close, not a failure alert.
                && *description != Some(0) =>
            {
                info.alert = Some(AlertInfo {
                    from: e.from,
                    level: level.map(|l| if l == 1 { "warning" } else { "fatal" }),
                    description: description.map(tls_alert_name),
                    encrypted: *encrypted,
                });
            }
            _ => {}
        }
    }
    info
}

fn tls_version_name(v: u16) -> String {
    match v {
        0x0304 => "TLS 1.3".into(),
        0x0303 => "TLS 1.2".into(),
        0x0302 => "TLS 1.1".into(),
        0x0301 => "TLS 1.0".into(),
        v => format!("0x{v:04x}"),
    }
}

fn h2_info(f: &Facts<'_>) -> H2Info {
    let mut info = H2Info::default();
    for e in &f.det.events {
        match &e.kind {
            ProtoKind::H2GoAway {
                last_stream_id,
                error_code,
                debug_data,
            } => info.goaway.push(H2Code {
                from: e.from,
                stream_id: None,
                last_stream_id: Some(*last_stream_id),
                error_code: h2_error_name(*error_code),
                debug_data: (!debug_data.is_empty()).then(|| debug_data.clone()),
            }),
            ProtoKind::H2RstStream {
                stream_id,
                error_code,
            } => info.rst_stream.push(H2Code {
                from: e.from,
                stream_id: Some(*stream_id),
                last_stream_id: None,
                error_code: h2_error_name(*error_code),
                debug_data: None,
            }),
            _ => {}
        }
    }
    info
}

fn request_outcomes(f: &Facts<'_>) -> Vec<RequestOutcome> {
    let mut out: Vec<RequestOutcome> = f
        .det
        .exchanges()
        .iter()
        .map(|x| RequestOutcome {
            method: x.method.as_deref().map(str::to_string),
            path: x.target.as_deref().map(str::to_string),
            status: x.status,
            time_to_first_byte_ms: x
                .request_ns
                .zip(x.response_start_ns)
                .map(|(a, b)| ms(b - a)),
            outcome: exchange_outcome(x),
        })
        .collect();
    // HTTP/2: one outcome per client stream.
    let mut streams: Vec<(u32, i64, Option<String>, Option<String>)> = Vec::new();
    for (ts, k) in f.proto_events(Side::Client) {
        if let ProtoKind::H2Headers {
            stream_id,
            method,
            path,
            ..
        } = k
            && !streams.iter().any(|s| s.0 == *stream_id)
        {
            streams.push((*stream_id, ts, method.clone(), path.clone()));
        }
    }
    for (id, ts, method, path) in streams {
        let mut status = None;
        let mut ttfb = None;
        let mut outcome = "no_response";
        for (t, k) in f.proto_events(Side::Server) {
            match k {
                ProtoKind::H2Headers {
                    stream_id,
                    status: s,
                    end_stream,
                    ..
                } if *stream_id == id => {
                    if status.is_none() {
                        status = *s;
                        ttfb = Some(ms(t - ts));
                        outcome = "open";
                    }
                    if *end_stream {
                        outcome = "complete";
                    }
                }
                ProtoKind::H2DataEnd { stream_id } if *stream_id == id && status.is_some() => {
                    outcome = "complete"
                }
                ProtoKind::H2RstStream { stream_id, .. }
                    if *stream_id == id && outcome != "complete" =>
                {
                    outcome = "reset"
                }
                _ => {}
            }
        }
        out.push(RequestOutcome {
            method,
            path,
            status,
            time_to_first_byte_ms: ttfb,
            outcome,
        });
    }
    out
}

fn longest_reuse_idle(exchanges: &[Exchange]) -> Option<f64> {
    exchanges
        .windows(2)
        .filter_map(|w| Some(w[1].request_ns? - w[0].response_end_ns?))
        .filter(|idle| *idle > 0)
        .max()
        .map(ms)
}

fn exchange_outcome(x: &Exchange) -> &'static str {
    if x.response_end_ns.is_some() {
        "complete"
    } else if x.response_head_ns.is_some() {
        if x.framing == Some(Framing::UntilClose) {
            "open"
        } else {
            "truncated_body"
        }
    } else if x.response_start_ns.is_some() {
        "partial_headers"
    } else {
        "no_response"
    }
}

/// The class. A connection the live-connection cap evicted before either side closed is cut
/// short whatever it was doing, and says so before any rule reads its open end as an answer
/// that never came.
fn decide(f: &Facts<'_>, tls: &TlsInfo, h2: &H2Info, t: &mut Timings) -> Draft {
    let evicted_by_cap = f.rec.end == EndReason::Evicted;
    if evicted_by_cap && f.first_close.is_none() {
        return evicted(f);
    }
    // A side had closed (FIN) before the eviction: the wire may already have decided, and
    // the rules that read an open end name the cap themselves (`open_end`).
    let mut d = decide_on_wire(f, tls, h2, t);
    if evicted_by_cap && !d.explanation.contains(MAX_CONNECTIONS_FLAG) {
        d.explanation.to_mut().push_str(&format!(
            " The live-connection cap ({MAX_CONNECTIONS_FLAG}) then evicted the connection before it closed both ways, so nothing after its last packet is in the analysis."
        ));
    }
    d
}

/// The command-line flags of the engine's limits that can end a connection's record early.
const MAX_CONNECTIONS_FLAG: &str = "--max-connections";
const MAX_BUFFER_FLAG: &str = "--max-buffer";
const IDLE_TIMEOUT_FLAG: &str = "--idle-timeout";

/// An open connection the live-connection cap closed early: what had happened so far, and
/// that how it ended is unknown.
fn evicted(f: &Facts<'_>) -> Draft {
    let rec = f.rec;
    let hs = &rec.handshake;
    let (client, server) = (rec.client_sent.stream_bytes, rec.server_sent.stream_bytes);
    let (phase, so_far) = if hs.syn_ns.is_some() && hs.syn_ack_ns.is_none() && client == 0 {
        (
            Phase::Connect,
            format!(
                "{} SYN(s) sent, none answered yet",
                hs.syn_retransmissions + 1
            ),
        )
    } else if client == 0 && server == 0 {
        (
            Phase::Connect,
            "no data sent yet by either side".to_string(),
        )
    } else if server == 0 {
        (
            Phase::Request,
            format!("the client had sent {client} bytes and the server none yet"),
        )
    } else {
        (
            Phase::Done,
            format!("the client had sent {client} bytes and the server {server}"),
        )
    };
    draft(
        Class::IncompleteCapture,
        phase,
        Confidence::Likely,
        format!(
            "The live-connection cap ({MAX_CONNECTIONS_FLAG}) evicted this connection while it was still open ({so_far}), {:.3} s after its first packet: it was the least recently active when new connections needed room, so how it ended is not in the analysis. Raise {MAX_CONNECTIONS_FLAG} (or split the capture) to follow it to the end.",
            secs(rec.end_ns - rec.start_ns)
        ),
    )
}

/// How the record of a connection still open ended before the capture did, `since` an event
/// of it; `None` when the capture ended first. (The idle timeout is no cap: the capture went
/// on without a packet of the connection.)
fn open_end(f: &Facts<'_>, since: i64) -> Option<String> {
    let rec = f.rec;
    let end = match rec.end {
        EndReason::IdleTimeout => {
            let closed = rec
                .events
                .iter()
                .rev()
                .find(|e| e.kind == EventKind::IdleTimeout)
                .map_or(rec.end_ns, |e| e.ts_ns);
            format!(
                "when the idle timeout ({IDLE_TIMEOUT_FLAG}) closed its record, {:.1} s later, after {:.0} s without a packet of it",
                secs(closed - since),
                secs(closed - rec.end_ns)
            )
        }
        EndReason::Evicted => format!(
            "when the live-connection cap ({MAX_CONNECTIONS_FLAG}) evicted its record {:.1} s later, as the least recently active connection when new ones needed room (raise {MAX_CONNECTIONS_FLAG} to follow it to the end)",
            secs(rec.end_ns - since)
        ),
        EndReason::Superseded => format!(
            "when a new connection (a SYN with another sequence number) took over its addresses and ports {:.1} s later",
            secs(rec.end_ns - since)
        ),
        _ => return None,
    };
    Some(end)
}

/// A gap in the server's stream.
#[derive(Clone, Copy)]
struct ServerGap {
    offset: u64,
    len: u64,
    cause: GapCause,
}

/// The first gap in the server's stream, stamped at or after `since`, that `wanted` accepts,
/// among gaps of bytes the capture lost or the out-of-order buffer cap gave up. (Bytes the
/// snaplen cut are read as cut by the rules that see them.)
fn server_gap(f: &Facts<'_>, since: i64, wanted: impl Fn(&ServerGap) -> bool) -> Option<ServerGap> {
    f.rec.events.iter().find_map(|e| match e.kind {
        EventKind::Gap { offset, len, cause }
            if e.from == Some(Side::Server)
                && e.ts_ns >= since
                && matches!(cause, GapCause::BufferCap | GapCause::NotCaptured) =>
        {
            let gap = ServerGap { offset, len, cause };
            wanted(&gap).then_some(gap)
        }
        _ => None,
    })
}

/// The server's response cannot be read: a gap in its stream came before it (the detectors
/// stop at a gap outside a body of known length), so a close that follows is no proof that
/// the server sent nothing. `what` says what could not be read.
fn response_unreadable(f: &Facts<'_>, what: &str, gap: ServerGap, phase: Phase) -> Draft {
    let sent = &f.rec.server_sent;
    // The short name comes first, where the table's one-line reason shows it.
    let (short, cause) = match gap.cause {
        GapCause::BufferCap => (
            "out-of-order buffer cap",
            format!(
                "the out-of-order buffer cap ({MAX_BUFFER_FLAG}) was reached and the hole before the buffered bytes was given up"
            ),
        ),
        GapCause::NotCaptured => (
            "capture loss",
            "the capture lost them (the peer acknowledged bytes the capture never saw, or a hole was still open at the end)".to_string(),
        ),
        GapCause::Snaplen => ("snaplen", "the snapshot length cut them".to_string()),
    };
    let close = match f.first_close {
        Some((_, side, kind)) => format!(
            " The {} then {} the connection.",
            if side == Side::Client {
                "client"
            } else {
                "server"
            },
            if kind == CloseKind::Rst {
                "reset"
            } else {
                "closed"
            }
        ),
        None => String::new(),
    };
    let remedy = if sent.counters.buffer_cap_hits > 0 {
        format!(
            " The cap was reached {} time(s) on this stream: its segments arrived reordered by more than the buffer holds. Raise {MAX_BUFFER_FLAG} to read the response.",
            sent.counters.buffer_cap_hits
        )
    } else {
        " Capture without loss (a larger tcpdump -B; check the kernel's drop count) to read the response.".to_string()
    };
    draft(
        Class::IncompleteCapture,
        phase,
        Confidence::Likely,
        format!(
            "{what} ({short}): {} bytes of the server's stream are missing from offset {}, because {cause}. The server sent {} bytes in all ({} of them missing, in {} gap(s)), so whether and how it answered is not known.{close}{remedy}",
            gap.len, gap.offset, sent.stream_bytes, sent.counters.gap_bytes, sent.counters.gaps
        ),
    )
}

/// The class from the wire, in the order a connection lives.
fn decide_on_wire(f: &Facts<'_>, tls: &TlsInfo, h2: &H2Info, t: &mut Timings) -> Draft {
    let rec = f.rec;
    let hs = &rec.handshake;
    // Connect.
    if hs.syn_ns.is_some() && hs.syn_ack_ns.is_none() {
        let syn = hs.syn_ns.unwrap_or(rec.start_ns);
        if let Some(rst) = rec.server_sent.rst_ns {
            return draft(
                Class::ConnectRefused,
                Phase::Connect,
                Confidence::Certain,
                format!(
                    "The server refused the connection: its SYN was answered by a RST after {:.3} ms. Nothing listens on {} (the service is down, restarting, bound to another address, or the port is wrong); check the process and the target port.",
                    ms(rst - syn),
                    rec.server
                ),
            );
        }
        let tries = hs.syn_retransmissions + 1;
        let waited = rec.end_ns - syn;
        if tries >= 2 || waited >= 1_000_000_000 {
            let mut d = draft(
                Class::ConnectTimeout,
                Phase::Connect,
                if tries >= 2 {
                    Confidence::Certain
                } else {
                    Confidence::Likely
                },
                format!(
                    "The SYN was sent {tries} times over {:.1} s and never answered: {} is unreachable or silently dropping (a firewall or security group, a dead host, a full SYN backlog); check the route and the filters to it.",
                    secs(waited),
                    rec.server
                ),
            );
            // The client gave up about one retransmission interval after its last SYN; the
            // capture end bounds what can be said.
            if let Some(m) = match_timeout(secs(waited), CONNECT_TIMEOUTS) {
                d.timeout_match = Some(m.what.to_string());
            }
            return d;
        }
        if let Some(end) = open_end(f, syn) {
            return draft(
                Class::IncompleteCapture,
                Phase::Connect,
                Confidence::Likely,
                format!(
                    "One SYN, never retransmitted and never answered, then nothing more of this connection {end}: no TCP stack gives up after one SYN, so its retransmissions went elsewhere or were not captured (or it was a scan or a spoofed SYN)."
                ),
            );
        }
        return draft(
            Class::IncompleteCapture,
            Phase::Connect,
            Confidence::Likely,
            format!(
                "One SYN and no answer before the capture ended {:.3} s later: too short to tell a slow server from a dead one.",
                secs(waited)
            ),
        );
    }
    let [cp, sp] = f.det.protocols();
    let client_sent = rec.client_sent.stream_bytes > 0;
    let server_sent = rec.server_sent.stream_bytes > 0;
    if hs.syn_ack_ns.is_none() && !client_sent && !server_sent {
        return draft(
            Class::IncompleteCapture,
            Phase::Connect,
            Confidence::Certain,
            "The capture holds neither this connection's handshake nor any data: only stray segments of a connection that started before the capture.",
        );
    }
    // The server's first bytes are missing: what it speaks, and whether it answered at all,
    // cannot be read, so no rule below may take its silence for an answer.
    if let Some(gap) = server_gap(f, i64::MIN, |g| g.offset == 0) {
        return response_unreadable(
            f,
            "The server's first bytes cannot be read",
            gap,
            Phase::ResponseHead,
        );
    }
    let server_close = f.close_of(Side::Server);
    let client_close = f.close_of(Side::Client);

    // Protocol agreement: the client speaks TLS.
    if cp == Protocol::Tls {
        if let Some(d) = tls_phase(f, tls, sp, server_close, t) {
            return d;
        }
        return encrypted_http(f, t);
    }
    // The client speaks plaintext to a TLS server.
    if matches!(cp, Protocol::Http1 | Protocol::H2)
        && (sp == Protocol::Tls || f.det.plain_http_to_https_port())
    {
        let answer = if sp == Protocol::Tls {
            "a TLS record (an alert or handshake bytes)"
        } else {
            "the 400 that TLS servers send to plain HTTP"
        };
        return draft(
            Class::PlaintextToTlsPort,
            Phase::Tls,
            Confidence::Certain,
            format!(
                "The client sent plaintext {} to a TLS port, and the server answered with {answer}: the upstream expects TLS. Either make the proxy originate TLS to it, or serve plaintext (for Node, http2.createServer / http.createServer) behind the TLS-terminating proxy.",
                if cp == Protocol::H2 {
                    "HTTP/2 (prior knowledge)"
                } else {
                    "HTTP/1"
                },
            ),
        );
    }
    // A TLS server reading plaintext fails at the first record header and closes without a
    // byte (Node, Go and Java do; nginx answers its 400 instead, handled above). After the
    // HTTP/2 preface nothing else closes that way: an HTTP/1 server answers 400, an h2c
    // server answers SETTINGS. (After an HTTP/1 request a silent close is just as often an
    // application dropping the request, so that stays closed_before_response.)
    if cp == Protocol::H2
        && sp == Protocol::None
        && let (Some(first), Some((tc, Side::Server, kind))) =
            (rec.client_sent.first_data_ns, f.first_close)
    {
        let rtt = hs.syn_ack_ns.zip(hs.syn_ns).map_or(0, |(a, s)| a - s);
        if tc >= first && tc - first <= FAST_CLOSE_NS.max(3 * rtt) {
            t.request_to_close_ms = Some(ms(tc - first));
            return draft(
                Class::PlaintextToTlsPort,
                Phase::Tls,
                Confidence::Likely,
                format!(
                    "The client sent the plaintext HTTP/2 preface and the server {} the connection {:.1} ms later without sending a single byte: that is what a TLS server (Node's http2.createSecureServer, Go, Java) does with bytes that are not a TLS record. The upstream expects TLS: make the proxy originate TLS, or serve plaintext HTTP/2 (http2.createServer) behind the TLS-terminating proxy.",
                    if kind == CloseKind::Rst {
                        "reset"
                    } else {
                        "closed"
                    },
                    (tc - first) as f64 / 1e6
                ),
            );
        }
    }
    if cp == Protocol::H2 && sp == Protocol::Http1 {
        return draft(
            Class::H2PrefaceToHttp1,
            Phase::Request,
            Confidence::Certain,
            format!(
                "The client opened with the HTTP/2 prior-knowledge preface, and the server answered in HTTP/1 ('{}'): it does not speak cleartext HTTP/2 (h2c). Send HTTP/1.1 to it, or enable h2c on the server.",
                f.det
                    .first_bytes(Side::Server)
                    .split("\\r\\n")
                    .next()
                    .unwrap_or_default()
            ),
        );
    }
    if cp == Protocol::Http1 && sp == Protocol::H2 {
        return draft(
            Class::Http1ToH2Only,
            Phase::Request,
            Confidence::Certain,
            "The client sent an HTTP/1 request, and the server answered with HTTP/2 frames: it only speaks HTTP/2 (prior knowledge, e.g. a gRPC server). Configure the proxy to use HTTP/2 (h2c) to this upstream.",
        );
    }
    if sp == Protocol::Unknown && matches!(cp, Protocol::Http1 | Protocol::H2) {
        return draft(
            Class::InvalidResponse,
            Phase::ResponseHead,
            Confidence::Certain,
            format!(
                "The server's bytes are not a response in the protocol the client spoke: '{}'.",
                f.det.first_bytes(Side::Server)
            ),
        );
    }
    if cp == Protocol::H2 {
        if let Some(d) = h2_phase(f, h2, server_close, client_close, t) {
            return d;
        }
    } else if cp == Protocol::Http1 || sp == Protocol::Http1 {
        if let Some(d) = http1_phase(f, server_close, client_close, t) {
            return d;
        }
    } else if cp == Protocol::Unknown
        && !server_sent
        && let Some((tc, kind)) = server_close
    {
        let (class, how) = if kind == CloseKind::Rst {
            (Class::ResetBeforeResponse, "reset")
        } else {
            (Class::ClosedBeforeResponse, "closed")
        };
        return draft(
            class,
            Phase::Request,
            Confidence::Likely,
            format!(
                "The client sent bytes of no protocol we know ('{}') and the server {how} the connection {:.3} s later without answering.",
                f.det.first_bytes(Side::Client),
                secs(tc - rec.client_sent.first_data_ns.unwrap_or(tc))
            ),
        );
    }
    // Request bytes went out (even if the snaplen or a gap hid what they said) and the server
    // closed without sending any.
    if client_sent
        && !server_sent
        && let Some((tc, Side::Server, kind)) = f.first_close
        && let Some(first) = rec.client_sent.first_data_ns
        && tc >= first
    {
        t.request_to_close_ms = Some(ms(tc - first));
        let (class, how) = if kind == CloseKind::Rst {
            (Class::ResetBeforeResponse, "reset")
        } else {
            (Class::ClosedBeforeResponse, "closed")
        };
        return draft(
            class,
            Phase::Request,
            Confidence::Likely,
            format!(
                "The client sent {} bytes (their content is not readable here: cut by the snaplen or missing from the capture) and the server {how} the connection {:.3} s later without sending any.",
                rec.client_sent.stream_bytes,
                secs(tc - first)
            ),
        );
    }
    idle_or_ok(f, t)
}

/// What an observed idle time matches: the server's own `Keep-Alive: timeout=N` header (Node
/// closes 1 s after it on recent versions), else a known default.
fn idle_match(f: &Facts<'_>, idle_s: f64) -> Option<String> {
    if let Some(k) = keep_alive_header(f) {
        let k = f64::from(k);
        if (idle_s - k).abs() <= 0.25 {
            return Some(format!("the server's own Keep-Alive: timeout={k} header"));
        }
        if (idle_s - (k + 1.0)).abs() <= 0.25 {
            return Some(format!(
                "the server's Keep-Alive: timeout={k} header plus 1 s: Node.js closes idle sockets keepAliveTimeout + 1 s after the last response (keepAliveTimeoutBuffer)"
            ));
        }
    }
    match_timeout(idle_s, IDLE_TIMEOUTS).map(|m| m.what.to_string())
}

/// After everything completed: an orderly close after an idle gap, or plain ok.
fn idle_or_ok(f: &Facts<'_>, t: &mut Timings) -> Draft {
    let rec = f.rec;
    if let Some((tc, Side::Server, _)) = f.first_close {
        let last_activity = last_data_before(f, tc);
        if let Some(last) = last_activity {
            let idle = tc - last;
            if idle >= 1_000_000_000 {
                t.idle_before_close_ms = Some(ms(idle));
                let mut d = draft(
                    Class::IdleClose,
                    Phase::Idle,
                    Confidence::Certain,
                    format!(
                        "The server closed the idle connection after {:.1} s with nothing outstanding: normal keep-alive housekeeping.",
                        secs(idle)
                    ),
                );
                if let Some(m) = idle_match(f, secs(idle)) {
                    d.explanation.to_mut().push_str(&format!(" That matches {m}; a client or proxy reusing connections must use a shorter idle timeout than this."));
                    d.timeout_match = Some(m);
                }
                return d;
            }
        }
    }
    if rec.end == EndReason::CaptureEnd
        && rec.client_sent.stream_bytes == 0
        && rec.server_sent.stream_bytes == 0
        && rec.handshake.established_ns.is_none()
    {
        return draft(
            Class::IncompleteCapture,
            Phase::Connect,
            Confidence::Likely,
            "The handshake did not complete before the capture ended.",
        );
    }
    draft(
        Class::Ok,
        Phase::Done,
        Confidence::Certain,
        "Nothing failed on the wire.",
    )
}

/// The time of the last payload byte either side sent before `before`.
fn last_data_before(f: &Facts<'_>, before: i64) -> Option<i64> {
    let mut last = None;
    for e in &f.det.events {
        if e.ts_ns <= before {
            last = Some(last.map_or(e.ts_ns, |l: i64| l.max(e.ts_ns)));
        }
    }
    for h in [&f.rec.client_sent, &f.rec.server_sent] {
        if let Some(fd) = h.first_data_ns
            && fd <= before
        {
            last = Some(last.map_or(fd, |l: i64| l.max(fd)));
        }
    }
    if let Some(tc) = f
        .det
        .tls_counters(Side::Client)
        .and_then(|c| c.last_application_data_ns)
        && tc <= before
    {
        last = Some(last.map_or(tc, |l: i64| l.max(tc)));
    }
    if let Some(ts) = f
        .det
        .tls_counters(Side::Server)
        .and_then(|c| c.last_application_data_ns)
        && ts <= before
    {
        last = Some(last.map_or(ts, |l: i64| l.max(ts)));
    }
    last
}

fn tls_phase(
    f: &Facts<'_>,
    tls: &TlsInfo,
    sp: Protocol,
    server_close: Option<(i64, CloseKind)>,
    t: &mut Timings,
) -> Option<Draft> {
    if matches!(sp, Protocol::Http1 | Protocol::H2 | Protocol::Unknown) {
        return Some(draft(
            Class::TlsToPlaintextPort,
            Phase::Tls,
            Confidence::Certain,
            format!(
                "The client sent a TLS ClientHello and the server answered in plaintext ('{}'): the upstream is a plaintext port. Make the proxy speak plaintext to it (no upstream TLS), or enable TLS on the server.",
                f.det.first_bytes(Side::Server)
            ),
        ));
    }
    let hello_seen = f
        .det
        .events
        .iter()
        .any(|e| matches!(e.kind, ProtoKind::TlsServerHello { .. }));
    // Only a close the server made first is its answer to the ClientHello; after the
    // client's own close, the server's is just the reply to it.
    if sp == Protocol::None
        && let Some((_, kind)) = server_close
        && f.first_close
            .is_some_and(|(_, side, _)| side == Side::Server)
    {
        let mut d = draft(
            Class::TlsToPlaintextPort,
            Phase::Tls,
            Confidence::Likely,
            format!(
                "The client sent a TLS ClientHello and the server {} without sending any TLS record: it most likely does not speak TLS on this port (or it rejected the ClientHello without an alert). Check whether the upstream expects plaintext.",
                if kind == CloseKind::Rst {
                    "reset the connection"
                } else {
                    "closed the connection"
                }
            ),
        );
        d.detail = None;
        return Some(d);
    }
    // The client closed before even its first TLS record was complete, and the server had
    // sent nothing: the client gave up on its own handshake, nothing the server did.
    if sp == Protocol::None
        && f.det
            .tls_counters(Side::Client)
            .is_none_or(|c| c.records == 0)
        && let Some((tc, Side::Client, kind)) = f.first_close
    {
        let started = f.rec.client_sent.first_data_ns.unwrap_or(tc);
        t.wait_ms = Some(ms(tc - started));
        t.request_to_close_ms = t.wait_ms;
        return Some(draft(
            Class::ClientAbort,
            Phase::Tls,
            Confidence::Likely,
            format!(
                "The client {} the connection {:.3} s after it began its TLS ClientHello, before its first TLS record was complete ({} bytes sent) and before the server sent anything: the client abandoned its own handshake (a deadline, a cancel, a crash, or a client that sent a record length it did not mean).",
                if kind == CloseKind::Rst {
                    "reset"
                } else {
                    "closed"
                },
                secs(tc - started),
                f.rec.client_sent.stream_bytes
            ),
        ));
    }
    if let Some(alert) = &tls.alert {
        let from = if alert.from == Side::Client {
            "client"
        } else {
            "server"
        };
        if alert.description.as_deref() == Some("no_application_protocol") {
            let mut d = draft(
                Class::AlpnMismatch,
                Phase::Tls,
                Confidence::Certain,
                format!(
                    "The {from} rejected the handshake with no_application_protocol: none of the offered ALPN protocols [{}] is acceptable to it. Align the protocols (e.g. the proxy offers only h2 while the server speaks http/1.1, or a mesh ALPN reaches a non-mesh server).",
                    tls.alpn_offered.join(", ")
                ),
            );
            d.detail = Some("no_application_protocol".into());
            return Some(d);
        }
        let in_handshake = !handshake_finished(f);
        if in_handshake || alert.level == Some("fatal") {
            let (what, conf) = match &alert.description {
                Some(name) => (
                    format!("a {} alert {name}", alert.level.unwrap_or("fatal")),
                    Confidence::Certain,
                ),
                None => (
                    "an encrypted alert (in TLS 1.3, usually a certificate rejection)".to_string(),
                    Confidence::Inferred,
                ),
            };
            let cause = match alert.description.as_deref() {
                Some(
                    "unknown_ca"
                    | "bad_certificate"
                    | "certificate_unknown"
                    | "certificate_expired"
                    | "certificate_required",
                )
                | None => {
                    "the certificate was rejected: check the CA the verifying side trusts, the certificate's expiry and names, and client certificates for mTLS"
                }
                Some("handshake_failure") => {
                    "no common cipher suite, group or signature algorithm, or a required client certificate is missing"
                }
                Some("protocol_version") => {
                    "the TLS versions do not overlap: check the minimum and maximum versions on both sides"
                }
                Some("unrecognized_name") => {
                    "the server does not serve the SNI name sent: check the SNI the proxy sends"
                }
                _ => "see the alert name",
            };
            let mut d = draft(
                Class::TlsAlert,
                Phase::Tls,
                conf,
                format!("The {from} aborted the TLS handshake with {what}: {cause}."),
            );
            d.detail = alert.description.clone();
            return Some(d);
        }
    }
    // TLS 1.3 client-side certificate rejection: the client's only "application data" is
    // one short record (its encrypted alert), and then it closes.
    if let Some(c) = f.det.tls_counters(Side::Client)
        && hello_seen
        && tls.version.as_deref() == Some("TLS 1.3")
        && c.application_data_records == 1
        && c.application_data_bytes <= 48
        && f.first_close.is_some_and(|(_, s, _)| s == Side::Client)
    {
        let mut d = draft(
            Class::TlsAlert,
            Phase::Tls,
            Confidence::Inferred,
            format!(
                "The client sent one short encrypted record ({} bytes) right after the server's handshake and closed: in TLS 1.3 that is an encrypted alert, most often the client rejecting the server's certificate. Check the CA the client trusts and the certificate's names and expiry.",
                c.application_data_bytes
            ),
        );
        d.detail = Some("encrypted alert".into());
        return Some(d);
    }
    if !handshake_finished(f)
        && let Some((tc, side, kind)) = f.first_close
    {
        let who = if side == Side::Client {
            "client"
        } else {
            "server"
        };
        let how = if kind == CloseKind::Rst {
            "reset"
        } else {
            "closed"
        };
        return Some(draft(
            Class::TlsHandshakeAborted,
            Phase::Tls,
            Confidence::Certain,
            format!(
                "The {who} {how} the connection in the middle of the TLS handshake ({:.3} s after it started), without an alert: {}",
                secs(tc - f.rec.client_sent.first_data_ns.unwrap_or(tc)),
                if hello_seen {
                    "often a handshake timeout, a crash, or a certificate check that closes silently."
                } else {
                    "the server never sent its ServerHello; check that the port speaks TLS and the server's logs."
                }
            ),
        ));
    }
    None
}

/// Whether both sides got past the handshake: each sent application data (TLS 1.2), or the
/// client sent more than its Finished (TLS 1.3).
fn handshake_finished(f: &Facts<'_>) -> bool {
    let c = f.det.tls_counters(Side::Client).unwrap_or_default();
    let s = f.det.tls_counters(Side::Server).unwrap_or_default();
    c.application_data_records > 0 && s.application_data_records > 0
}

/// Inside TLS without keys: HTTP is invisible, but a close still sits against the record
/// flow. The client's last application-data record is taken as its last request.
fn encrypted_http(f: &Facts<'_>, t: &mut Timings) -> Draft {
    let c = f.det.tls_counters(Side::Client).unwrap_or_default();
    let s = f.det.tls_counters(Side::Server).unwrap_or_default();
    let tls13 = f.det.events.iter().any(|e| {
        matches!(
            e.kind,
            ProtoKind::TlsServerHello {
                version: 0x0304,
                ..
            }
        )
    });
    // In TLS 1.3 the client's first application-data record is its Finished.
    let client_requests = c.application_data_records.saturating_sub(u64::from(tls13));
    if let (Some(req), Some((tc, Side::Server, kind))) = (c.last_application_data_ns, f.first_close)
        && client_requests > 0
        && tc >= req
        && s.last_application_data_ns.is_none_or(|sl| sl < req)
    {
        // The record reader stops for good at a gap: the server's answer may be in it.
        if let Some(gap) = server_gap(f, i64::MIN, |_| true) {
            return response_unreadable(
                f,
                "Inside TLS, the server's records after the client's application data cannot be read",
                gap,
                Phase::ResponseHead,
            );
        }
        t.request_to_close_ms = Some(ms(tc - req));
        let reused = s.application_data_records > if tls13 { 2 } else { 0 };
        let (class, how) = match (kind, reused) {
            (_, true)
                if s.last_application_data_ns
                    .is_some_and(|sl| req - sl >= 1_000_000_000) =>
            {
                (Class::KeepaliveRace, "closed")
            }
            (CloseKind::Rst, _) => (Class::ResetBeforeResponse, "reset"),
            _ => (Class::ClosedBeforeResponse, "closed"),
        };
        let mut d = draft(
            class,
            Phase::Request,
            Confidence::Inferred,
            format!(
                "Inside TLS (no keys, so HTTP is not visible): the client sent application data and the server {how} the connection {:.3} s later without sending any back. The upstream closed before responding: look for crashes, restarts, or an idle timeout shorter than the client's.",
                secs(tc - req)
            ),
        );
        if class == Class::KeepaliveRace
            && let Some(sl) = s.last_application_data_ns
        {
            t.idle_before_request_ms = Some(ms(req - sl));
            d.explanation = format!(
                "Inside TLS (no keys): the connection was reused after {:.1} s idle, and the server closed it {:.3} s after the client's new data without answering: a keep-alive race. The server's idle timeout must be longer than the client's.",
                secs(req - sl),
                secs(tc - req)
            ).into();
            if let Some(m) = match_timeout(secs(req - sl), IDLE_TIMEOUTS) {
                d.timeout_match = Some(m.what.to_string());
            }
        }
        return d;
    }
    idle_or_ok(f, t)
}

fn http1_phase(
    f: &Facts<'_>,
    server_close: Option<(i64, CloseKind)>,
    client_close: Option<(i64, CloseKind)>,
    t: &mut Timings,
) -> Option<Draft> {
    let rec = f.rec;
    let exchanges = f.det.exchanges();
    if let Some((ts, ProtoKind::HttpInvalid { first_bytes })) = f
        .proto_events(Side::Server)
        .find(|(_, k)| matches!(k, ProtoKind::HttpInvalid { .. }))
    {
        let _ = ts;
        return Some(draft(
            Class::InvalidResponse,
            Phase::ResponseHead,
            Confidence::Certain,
            format!(
                "The server's response is not valid HTTP/1: '{first_bytes}'. Check what the upstream really sends (a non-HTTP service on this port, a broken header, an oversized header block)."
            ),
        ));
    }
    let mut previous_end: Option<i64> = None;
    for (i, x) in exchanges.iter().enumerate() {
        if x.response_end_ns.is_some() {
            previous_end = x.response_end_ns;
            continue;
        }
        let req = x.request_ns?;
        let reused = i > 0;
        if let Some(prev) = previous_end {
            t.idle_before_request_ms = Some(ms(req - prev));
        }
        let target = format!(
            "{} {}",
            x.method.as_deref().unwrap_or("?"),
            x.target.as_deref().unwrap_or("?")
        );
        if x.response_start_ns.is_none() {
            // A gap in the server's stream after the request stopped the parser: the response
            // may be in it, or after it. (A gap is stamped no earlier than the bytes it stands
            // for, and a response comes after its request. A gap inside an earlier response's
            // body, which the parser skipped, was found at the latest by the acknowledgment
            // this request carries.)
            if let Some(gap) = server_gap(f, req + 1, |_| true) {
                return Some(response_unreadable(
                    f,
                    &format!("No response to {target} can be read"),
                    gap,
                    Phase::ResponseHead,
                ));
            }
            // No response byte. Who closed first, and how?
            let first = f
                .first_close
                .filter(|(tc, _, _)| *tc >= previous_end.unwrap_or(i64::MIN));
            match first {
                Some((tc, Side::Server, kind)) => {
                    t.request_to_close_ms = Some(ms(tc - req));
                    let idle = previous_end.map(|p| req - p);
                    // A keep-alive race: the server's close crossed a request on a reused
                    // connection (its FIN left before the request arrived), or a bare RST
                    // answered a request that came after an idle period.
                    let crossed = kind == CloseKind::Fin && tc <= req;
                    let rst_after_idle = kind == CloseKind::Rst
                        && idle.is_some_and(|i| i >= 1_000_000_000)
                        && tc - req < 100_000_000;
                    let fin_then_rst = server_close
                        .is_some_and(|(fc, k)| k == CloseKind::Fin && fc <= req)
                        && rec.server_sent.rst_ns.is_some();
                    if reused && (crossed || rst_after_idle || fin_then_rst) {
                        let idle_s = idle.map_or(0.0, secs);
                        let mut d = draft(
                            Class::KeepaliveRace,
                            Phase::Request,
                            if crossed || fin_then_rst {
                                Confidence::Certain
                            } else {
                                Confidence::Likely
                            },
                            format!(
                                "Keep-alive race: the connection was reused for {target} after {idle_s:.1} s idle, and the server's idle close ({}) crossed the request. The server's keep-alive idle timeout is shorter than the client's (or proxy's) pool idle timeout: make the upstream's timeout longer than the proxy's (or the proxy's shorter), and retry idempotent requests on reset.",
                                if kind == CloseKind::Fin { "FIN" } else { "RST" }
                            ),
                        );
                        // The server's own idle time ends at its close, which may come
                        // before the request.
                        let server_idle_s = previous_end.map_or(idle_s, |p| secs(tc.min(req) - p));
                        if let Some(m) = idle_match(f, server_idle_s) {
                            d.explanation.to_mut().push_str(&format!(
                                " The server closed after {server_idle_s:.1} s idle, which matches {m}."
                            ));
                            d.timeout_match = Some(m);
                        }
                        return Some(d);
                    }
                    let (class, how) = if kind == CloseKind::Rst {
                        (Class::ResetBeforeResponse, "reset the connection (RST)")
                    } else {
                        (Class::ClosedBeforeResponse, "closed the connection (FIN)")
                    };
                    let mut d = draft(
                        class,
                        Phase::Request,
                        Confidence::Certain,
                        format!(
                            "The server {how} {:.3} s after {target} without sending any response byte{}. The upstream dropped the request: look for a crash or restart, a worker recycled mid-request, a request it refuses to answer, or a limit that closes the connection.",
                            secs(tc - req),
                            if reused { " (a reused connection)" } else { "" }
                        ),
                    );
                    if !reused && tc - req <= FAST_CLOSE_NS {
                        d.explanation.to_mut().push_str(" A silent close this fast on a fresh connection is also what a TLS server (Node, Go, Java) does with plaintext: check whether the port expects TLS.");
                    }
                    return Some(d);
                }
                Some((tc, Side::Client, kind)) => {
                    let waited = tc - req;
                    t.wait_ms = Some(ms(waited));
                    t.request_to_close_ms = Some(ms(waited));
                    let known =
                        match_timeout(secs(waited), RESPONSE_TIMEOUTS).map(|m| m.what.to_string());
                    let configured = round_seconds(secs(waited)).map(|n| {
                        format!(
                            "a timeout configured to {n} s (the wait is a whole number of seconds)"
                        )
                    });
                    if let Some(what) = known.or(configured) {
                        let mut d = draft(
                            Class::ResponseTimeout,
                            Phase::Request,
                            Confidence::Likely,
                            format!(
                                "The client waited {:.1} s for a response to {target} and then {} the connection: that matches {}. The upstream is too slow for the proxy's timeout: find why the handler is slow, or raise the timeout.",
                                secs(waited),
                                if kind == CloseKind::Rst {
                                    "reset"
                                } else {
                                    "closed"
                                },
                                what
                            ),
                        );
                        d.timeout_match = Some(what);
                        return Some(d);
                    }
                    return Some(draft(
                        Class::ClientAbort,
                        Phase::Request,
                        Confidence::Likely,
                        format!(
                            "The client gave up on {target} after {:.3} s without a response ({}), at no known proxy timeout: the client's own deadline, a user cancel, or a timeout set to that value.",
                            secs(waited),
                            if kind == CloseKind::Rst { "RST" } else { "FIN" }
                        ),
                    ));
                }
                _ => {
                    return Some(draft(
                        Class::IncompleteCapture,
                        Phase::Request,
                        Confidence::Certain,
                        format!(
                            "{target} was still waiting for its response {}.",
                            open_end(f, req).unwrap_or_else(|| format!(
                                "when the capture ended ({:.1} s later)",
                                secs(rec.end_ns - req)
                            ))
                        ),
                    ));
                }
            }
        }
        if x.response_head_ns.is_none() {
            let start = x.response_start_ns.unwrap_or(req);
            if let Some(gap) = server_gap(f, start, |_| true) {
                return Some(response_unreadable(
                    f,
                    &format!("The end of the response head to {target} cannot be read"),
                    gap,
                    Phase::ResponseHead,
                ));
            }
            if let Some((tc, side, kind)) = f.first_close.filter(|(tc, _, _)| *tc >= start) {
                t.first_response_byte_to_close_ms = Some(ms(tc - start));
                if side == Side::Server {
                    return Some(draft(
                        Class::PartialResponseHeaders,
                        Phase::ResponseHead,
                        Confidence::Certain,
                        format!(
                            "The server started the response to {target} but {} the connection before the end of its header block ('{}'): the upstream crashed or was killed while writing the response.",
                            if kind == CloseKind::Rst {
                                "reset"
                            } else {
                                "closed"
                            },
                            f.det.first_bytes(Side::Server)
                        ),
                    ));
                }
                return Some(client_gave_up(f, &target, start, tc, kind, t));
            }
            return Some(draft(
                Class::IncompleteCapture,
                Phase::ResponseHead,
                Confidence::Certain,
                format!(
                    "The response head to {target} was still arriving {}.",
                    open_end(f, start).unwrap_or_else(|| "when the capture ended".into())
                ),
            ));
        }
        // Head complete, body not.
        let head = x.response_head_ns.unwrap_or(req);
        if let Some((tc, side, kind)) = f.first_close.filter(|(tc, _, _)| *tc >= head) {
            t.first_response_byte_to_close_ms = Some(ms(tc - x.response_start_ns.unwrap_or(head)));
            if side == Side::Server {
                let expected = match x.framing {
                    Some(Framing::ContentLength(n)) => {
                        format!("{n} bytes announced by Content-Length")
                    }
                    Some(Framing::Chunked) => "the last chunk of the chunked body".into(),
                    _ => "the end of the body".into(),
                };
                return Some(draft(
                    Class::TruncatedResponseBody,
                    Phase::ResponseBody,
                    Confidence::Certain,
                    format!(
                        "The server sent the response head to {target} (status {}) and {} the connection after {} body bytes, before {expected}: the client got a truncated body. The upstream died or was cut off mid-response.",
                        x.status.unwrap_or(0),
                        if kind == CloseKind::Rst {
                            "reset"
                        } else {
                            "closed"
                        },
                        x.body_bytes
                    ),
                ));
            }
            return Some(client_gave_up(f, &target, head, tc, kind, t));
        }
        if x.framing == Some(Framing::UntilClose) {
            continue;
        }
        return Some(draft(
            Class::IncompleteCapture,
            Phase::ResponseBody,
            Confidence::Certain,
            format!(
                "The response body to {target} was still arriving {}.",
                open_end(f, head).unwrap_or_else(|| "when the capture ended".into())
            ),
        ));
    }
    let _ = (server_close, client_close);
    None
}

fn client_gave_up(
    f: &Facts<'_>,
    target: &str,
    since: i64,
    tc: i64,
    kind: CloseKind,
    t: &mut Timings,
) -> Draft {
    let _ = f;
    t.wait_ms = Some(ms(tc - since));
    draft(
        Class::ClientAbort,
        Phase::ResponseBody,
        Confidence::Likely,
        format!(
            "The client {} the connection {:.3} s into the response to {target}, before it was complete: the client gave up (its deadline, a cancel) or stopped reading.",
            if kind == CloseKind::Rst {
                "reset"
            } else {
                "closed"
            },
            secs(tc - since)
        ),
    )
}

fn keep_alive_header(f: &Facts<'_>) -> Option<u32> {
    f.proto_events(Side::Server).find_map(|(_, k)| match k {
        ProtoKind::HttpResponseHead {
            keep_alive_timeout: Some(k),
            ..
        } => Some(*k),
        _ => None,
    })
}

fn h2_phase(
    f: &Facts<'_>,
    h2: &H2Info,
    server_close: Option<(i64, CloseKind)>,
    client_close: Option<(i64, CloseKind)>,
    t: &mut Timings,
) -> Option<Draft> {
    let _ = client_close;
    if let Some((_, ProtoKind::H2ProtocolError { detail })) = f
        .proto_events(Side::Server)
        .find(|(_, k)| matches!(k, ProtoKind::H2ProtocolError { .. }))
        && !detail.starts_with("capture gap")
    {
        return Some(draft(
            Class::InvalidResponse,
            Phase::ResponseHead,
            Confidence::Certain,
            format!("The server's HTTP/2 frames are invalid: {detail}."),
        ));
    }
    // Client streams and whether each got response headers.
    let mut opened: Vec<(u32, i64)> = Vec::new();
    for (ts, k) in f.proto_events(Side::Client) {
        if let ProtoKind::H2Headers { stream_id, .. } = k
            && !opened.iter().any(|o| o.0 == *stream_id)
        {
            opened.push((*stream_id, ts));
        }
    }
    let answered = |id: u32| {
        f.proto_events(Side::Server)
            .any(|(_, k)| matches!(k, ProtoKind::H2Headers { stream_id, .. } if *stream_id == id))
    };
    // RST_STREAM from the server before response headers.
    let reset: Vec<&H2Code> = h2
        .rst_stream
        .iter()
        .filter(|r| r.from == Side::Server && r.stream_id.is_some_and(|id| !answered(id)))
        .collect();
    if let Some(first) = reset.first() {
        let list: Vec<String> = reset
            .iter()
            .map(|r| format!("{} ({})", r.stream_id.unwrap_or(0), r.error_code))
            .collect();
        let ok = opened.iter().filter(|o| answered(o.0)).count();
        let mut d = draft(
            Class::H2StreamReset,
            Phase::Request,
            Confidence::Certain,
            format!(
                "The server reset {} stream(s) before sending response headers: {}; {ok} other stream(s) got responses. {}",
                reset.len(),
                list.join(", "),
                match first.error_code.as_str() {
                    "REFUSED_STREAM" =>
                        "REFUSED_STREAM means the server did not process them (overload, concurrency limit, shutdown): they are safe to retry.",
                    "CANCEL" =>
                        "CANCEL means the server gave up on them (a deadline or timeout on its side).",
                    "ENHANCE_YOUR_CALM" =>
                        "ENHANCE_YOUR_CALM means the server is rate-limiting this client.",
                    _ => "Check the server's logs for the error on those streams.",
                }
            ),
        );
        d.detail = Some(first.error_code.clone());
        return Some(d);
    }
    if let Some(g) = h2.goaway.iter().find(|g| g.from == Side::Server) {
        let last = g.last_stream_id.unwrap_or(u32::MAX);
        let above: Vec<u32> = opened
            .iter()
            .filter(|o| o.0 > last && !answered(o.0))
            .map(|o| o.0)
            .collect();
        if g.error_code != "NO_ERROR" || !above.is_empty() {
            let mut d = draft(
                Class::H2Goaway,
                Phase::Request,
                Confidence::Certain,
                format!(
                    "The server sent GOAWAY (last stream {last}, {}{}){}.",
                    g.error_code,
                    g.debug_data
                        .as_ref()
                        .map(|d| format!(", '{d}'"))
                        .unwrap_or_default(),
                    if above.is_empty() {
                        ": an abortive shutdown of the connection".to_string()
                    } else {
                        format!(
                            ": streams {above:?} above the last stream id were not processed and must be retried on a new connection"
                        )
                    }
                ),
            );
            d.detail = Some(g.error_code.clone());
            return Some(d);
        }
    }
    // Streams without a response when the server closed.
    let unanswered: Vec<&(u32, i64)> = opened.iter().filter(|o| !answered(o.0)).collect();
    // The HTTP/2 decoder stops for good at a gap: response HEADERS may be in it or after it.
    if let Some(&&(id, _)) = unanswered.first()
        && let Some(gap) = server_gap(f, i64::MIN, |_| true)
    {
        return Some(response_unreadable(
            f,
            &format!(
                "The responses to {} stream(s) (first: stream {id}) cannot be read",
                unanswered.len()
            ),
            gap,
            Phase::ResponseHead,
        ));
    }
    if let Some(&&(id, ts)) = unanswered.first()
        && let Some((tc, side, kind)) = f.first_close
    {
        t.request_to_close_ms = Some(ms(tc - ts));
        if side == Side::Server {
            let (class, how) = if kind == CloseKind::Rst {
                (Class::ResetBeforeResponse, "reset")
            } else {
                (Class::ClosedBeforeResponse, "closed")
            };
            return Some(draft(
                class,
                Phase::Request,
                Confidence::Certain,
                format!(
                    "The server {how} the connection with {} stream(s) unanswered (first: stream {id}), without GOAWAY or RST_STREAM.",
                    unanswered.len()
                ),
            ));
        }
        return Some(client_gave_up(f, &format!("stream {id}"), ts, tc, kind, t));
    }
    let _ = server_close;
    None
}
