//! The classifier on hand-built timelines: one connection per test, built packet by packet,
//! for every class and for the distinctions that matter most (FIN against RST, race against
//! crash, response timeout against client abort, graceful against error GOAWAY, idle close
//! against keep-alive race). Real captures of the same failures are in tests/verdicts.rs.

use std::net::{IpAddr, Ipv4Addr};

use rstscope::classify::{Class, CloseKind, Confidence, Verdict, classify};
use rstscope::decode::{IpVersion, TcpFlags, TcpPacket};
use rstscope::detect::Detector;
use rstscope::flow::{FlowConfig, FlowTable, Side};

const MS: i64 = 1_000_000;
const S: i64 = 1_000_000_000;

/// A connection written as a script: who sends what, when.
struct Script {
    now: i64,
    seq: [u32; 2],
    packets: Vec<(i64, usize, u8, Vec<u8>, u32, u32)>,
}

const CLIENT: usize = 0;
const SERVER: usize = 1;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN | TcpFlags::ACK;
const RST: u8 = TcpFlags::RST | TcpFlags::ACK;
const PSH: u8 = TcpFlags::PSH | TcpFlags::ACK;

impl Script {
    fn new() -> Self {
        Script {
            now: 1_700_000_000 * S,
            seq: [1000, 50_000],
            packets: Vec::new(),
        }
    }
    fn at(mut self, dt: i64) -> Self {
        self.now += dt;
        self
    }
    fn send(mut self, who: usize, flags: u8, data: &[u8]) -> Self {
        let seq = self.seq[who];
        let ack =
            if self.seq[1 - who] == [1000, 50_000][1 - who] && flags & SYN != 0 && who == CLIENT {
                0
            } else {
                self.seq[1 - who]
            };
        self.packets
            .push((self.now, who, flags, data.to_vec(), seq, ack));
        self.seq[who] = seq.wrapping_add(
            data.len() as u32 + u32::from(flags & (TcpFlags::SYN | TcpFlags::FIN) != 0),
        );
        self.now += 100_000; // 0.1 ms between packets
        self
    }
    fn handshake(self) -> Self {
        self.send(CLIENT, SYN, b"")
            .send(SERVER, SYN | ACK, b"")
            .send(CLIENT, ACK, b"")
    }
    fn verdict(self) -> Verdict {
        self.verdict_with(FlowConfig::default())
    }
}

const GET: &[u8] = b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n";
const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn client_hello(alpn: &[&str]) -> Vec<u8> {
    let mut alpn_list = Vec::new();
    for a in alpn {
        alpn_list.push(a.len() as u8);
        alpn_list.extend_from_slice(a.as_bytes());
    }
    let mut ext = vec![0x00, 0x10];
    ext.extend_from_slice(&((alpn_list.len() + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(alpn_list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&alpn_list);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    handshake_record(1, &body)
}

fn server_hello(tls13: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[9u8; 32]);
    body.extend_from_slice(&[0x00, 0x13, 0x01, 0x00]);
    let ext: Vec<u8> = if tls13 {
        vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]
    } else {
        vec![]
    };
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    handshake_record(2, &body)
}

fn handshake_record(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![msg_type, 0, (body.len() >> 8) as u8, body.len() as u8];
    msg.extend_from_slice(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(&msg);
    rec
}

fn alert(description: u8) -> Vec<u8> {
    vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Client preface, SETTINGS and a GET on each of `streams` (HPACK static table: :method GET,
/// :path /, :scheme http).
fn h2_client(streams: &[u32]) -> Vec<u8> {
    let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    b.extend(h2_frame(4, 0, 0, &[]));
    for s in streams {
        b.extend(h2_frame(1, 0x5, *s, &[0x82, 0x84, 0x86]));
    }
    b
}

/// Server SETTINGS and a 200 (HPACK :status 200) ending each of `streams`.
fn h2_server_answers(streams: &[u32]) -> Vec<u8> {
    let mut b = h2_frame(4, 0, 0, &[]);
    for s in streams {
        b.extend(h2_frame(1, 0x5, *s, &[0x88]));
    }
    b
}

fn goaway(last: u32, code: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    h2_frame(7, 0, 0, &p)
}

fn assert_class(v: &Verdict, class: Class) {
    assert_eq!(v.class, class, "{}", v.explanation);
}

#[test]
fn connect_refused_and_connect_timeout() {
    let v = Script::new()
        .send(CLIENT, SYN, b"")
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&v, Class::ConnectRefused);
    assert_eq!((v.closed_by, v.close), (Some(Side::Server), CloseKind::Rst));
    assert!(v.proxies.unwrap().nginx.contains("111: Connection refused"));

    let mut s = Script::new().send(CLIENT, SYN, b"");
    s.seq[CLIENT] = 1000;
    let s = s.at(S).send(CLIENT, SYN, b"");
    let mut s = s;
    s.seq[CLIENT] = 1000;
    let v = s.at(2 * S).send(CLIENT, SYN, b"").at(2 * S).verdict();
    assert_class(&v, Class::ConnectTimeout);
    assert_eq!(v.timings.syn_schedule_ms.len(), 3);
    assert_eq!(v.close, CloseKind::None);
}

#[test]
fn fin_before_response_is_closed_and_rst_is_reset() {
    let fin = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(300 * MS)
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&fin, Class::ClosedBeforeResponse);
    assert!(
        fin.proxies
            .as_ref()
            .unwrap()
            .nginx
            .contains("upstream prematurely closed connection while reading response header")
    );
    assert!(
        fin.proxies
            .as_ref()
            .unwrap()
            .envoy
            .contains("reset reason: connection termination")
    );
    let rst = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(300 * MS)
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&rst, Class::ResetBeforeResponse);
    assert!(
        rst.proxies
            .unwrap()
            .nginx
            .contains("recv() failed (104: Connection reset by peer)")
    );
    assert_eq!(
        rst.timings.request_to_close_ms.map(|m| m.round()),
        Some(300.0)
    );
}

#[test]
fn keep_alive_race_against_crash() {
    // Reused after 5 s idle; the server's idle FIN leaves just before the request arrives.
    let race = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, OK_RESPONSE)
        .at(5 * S)
        .send(SERVER, FIN, b"")
        .send(CLIENT, PSH, GET)
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&race, Class::KeepaliveRace);
    assert_eq!(race.confidence, Confidence::Certain);
    assert!(
        race.timeout_match
            .as_deref()
            .unwrap_or_default()
            .contains("Node.js keepAliveTimeout"),
        "{:?}",
        race.timeout_match
    );
    assert_eq!(
        race.timings
            .idle_before_request_ms
            .map(|m| (m / 1000.0).round()),
        Some(5.0)
    );
    // The same reused connection, but the server takes the request and dies 300 ms into it.
    let crash = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, OK_RESPONSE)
        .at(S)
        .send(CLIENT, PSH, GET)
        .at(300 * MS)
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&crash, Class::ResetBeforeResponse);
}

#[test]
fn response_timeout_against_client_abort() {
    let timeout = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(15 * S)
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&timeout, Class::ResponseTimeout);
    assert!(
        timeout
            .timeout_match
            .unwrap()
            .contains("Envoy route timeout")
    );
    let abort = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(3_700 * MS)
        .send(CLIENT, RST, b"")
        .verdict();
    assert_class(&abort, Class::ClientAbort);
    assert_eq!(abort.close, CloseKind::Rst);
}

#[test]
fn graceful_goaway_against_error_goaway() {
    let graceful = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1]))
        .send(
            SERVER,
            PSH,
            &[h2_server_answers(&[1]), goaway(1, 0)].concat(),
        )
        .send(SERVER, FIN, b"")
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&graceful, Class::Ok);
    assert_eq!(graceful.h2.goaway[0].error_code, "NO_ERROR");
    let error = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1]))
        .send(
            SERVER,
            PSH,
            &[h2_server_answers(&[1]), goaway(1, 11)].concat(),
        )
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&error, Class::H2Goaway);
    assert_eq!(error.h2.goaway[0].error_code, "ENHANCE_YOUR_CALM");
    // A graceful GOAWAY that leaves streams above the last stream id unanswered.
    let refused = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1, 3, 5]))
        .send(
            SERVER,
            PSH,
            &[h2_server_answers(&[1]), goaway(1, 0)].concat(),
        )
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&refused, Class::H2Goaway);
    assert!(refused.explanation.contains("[3, 5]"));
}

#[test]
fn rst_stream_before_headers() {
    let mut rst = 7u32.to_be_bytes().to_vec();
    rst.truncate(4);
    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1, 3]))
        .send(
            SERVER,
            PSH,
            &[h2_server_answers(&[1]), h2_frame(3, 0, 3, &rst)].concat(),
        )
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&v, Class::H2StreamReset);
    assert_eq!(v.h2.rst_stream[0].error_code, "REFUSED_STREAM");
    assert!(
        v.proxies
            .unwrap()
            .envoy
            .contains("remote refused stream reset")
    );
}

#[test]
fn idle_close_against_keep_alive_race() {
    let idle = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, OK_RESPONSE)
        .at(5 * S)
        .send(SERVER, FIN, b"")
        .at(MS)
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&idle, Class::IdleClose);
    assert!(!idle.class.is_failure());
    assert_eq!(
        idle.timings
            .idle_before_close_ms
            .map(|m| (m / 1000.0).round()),
        Some(5.0)
    );
    assert!(idle.timeout_match.unwrap().contains("Node.js"));
}

#[test]
fn tls_and_plaintext_on_the_wrong_ports() {
    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["h2", "http/1.1"]))
        .send(
            SERVER,
            PSH,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        )
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::TlsToPlaintextPort);
    assert_eq!(v.tls.alpn_offered, vec!["h2", "http/1.1"]);
    assert!(v.proxies.unwrap().envoy.contains("WRONG_VERSION_NUMBER"));

    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, &alert(10))
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::PlaintextToTlsPort);
    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1]))
        .at(2 * MS)
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::PlaintextToTlsPort);
}

#[test]
fn alerts_alpn_and_aborted_handshakes() {
    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["h2"]))
        .send(SERVER, PSH, &alert(120))
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::AlpnMismatch);
    let a = v.tls.alert.unwrap();
    assert_eq!(
        (a.from, a.description.as_deref()),
        (Side::Server, Some("no_application_protocol"))
    );

    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["http/1.1"]))
        .send(SERVER, PSH, &server_hello(false))
        .send(CLIENT, PSH, &alert(48))
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&v, Class::TlsAlert);
    assert_eq!(
        v.tls.alert.unwrap().description.as_deref(),
        Some("unknown_ca")
    );
    assert_eq!(v.tls.version.as_deref(), Some("TLS 1.2"));

    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["h2"]))
        .send(SERVER, PSH, &server_hello(true))
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&v, Class::TlsHandshakeAborted);
    assert_eq!(v.tls.version.as_deref(), Some("TLS 1.3"));
}

#[test]
fn broken_responses() {
    let partial = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, b"HTTP/1.1 200 OK\r\nContent-Ty")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&partial, Class::PartialResponseHeaders);
    assert_eq!(partial.requests[0].status, Some(200));
    let truncated = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(
            SERVER,
            PSH,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .send(SERVER, RST, b"")
        .verdict();
    assert_class(&truncated, Class::TruncatedResponseBody);
    assert_eq!(truncated.requests[0].outcome, "truncated_body");
    let invalid = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, b"SSH-2.0-OpenSSH_9.2\r\n")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&invalid, Class::InvalidResponse);
    let h2_to_h1 = Script::new()
        .handshake()
        .send(CLIENT, PSH, &h2_client(&[1]))
        .send(SERVER, PSH, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&h2_to_h1, Class::H2PrefaceToHttp1);
    let h1_to_h2 = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(
            SERVER,
            PSH,
            &[h2_frame(4, 0, 0, &[]), goaway(0, 1)].concat(),
        )
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&h1_to_h2, Class::Http1ToH2Only);
    let abort = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(
            SERVER,
            PSH,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
        .at(250 * MS)
        .send(CLIENT, RST, b"")
        .verdict();
    assert_class(&abort, Class::ClientAbort);
}

#[test]
fn healthy_and_unknowable() {
    let ok = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, OK_RESPONSE)
        .send(CLIENT, FIN, b"")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&ok, Class::Ok);
    assert_eq!(ok.requests[0].outcome, "complete");
    let error_status = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(
            SERVER,
            PSH,
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        )
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&error_status, Class::Ok);
    assert_eq!(error_status.server_errors, vec![502]);
    let waiting = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(2 * S)
        .verdict();
    assert_class(&waiting, Class::IncompleteCapture);
    let mut stray = Script::new();
    stray.seq = [77_000, 88_000];
    let v = stray
        .send(SERVER, ACK, b"")
        .send(CLIENT, ACK, b"")
        .verdict();
    assert_class(&v, Class::IncompleteCapture);
}

// ---------------------------------------------------------------------------------------
// Connections the caps cut short, and closes that must not be read as the server's answer.

/// Packets of several connections between 127.0.0.1:`client_port` and 127.0.0.1:8080, in one
/// table holding at most `max_live` connections: (time, client port, sender, flags, payload,
/// seq, ack).
type Packet<'a> = (i64, u16, usize, u8, &'a [u8], u32, u32);

/// The records of `packets` (in the order the table finished them) and the table's counts.
fn records(
    max_live: usize,
    packets: &[Packet<'_>],
) -> (
    Vec<rstscope::flow::ConnectionRecord<Detector>>,
    rstscope::flow::TableCounters,
) {
    let mut table = FlowTable::<Detector>::new(FlowConfig::default(), max_live);
    for (i, &(ts, client_port, who, flags, data, seq, ack)) in packets.iter().enumerate() {
        let (sp, dp) = if who == CLIENT {
            (client_port, 8080)
        } else {
            (8080, client_port)
        };
        let p = TcpPacket::loopback(ts, (sp, dp), flags, (seq, ack), data);
        table.packet(&p, i as u64 + 1);
    }
    let end = packets.last().map_or(0, |p| p.0);
    table.finish(end);
    let mut done = Vec::new();
    table.take_finished(&mut done);
    (done.into_iter().map(|(_, r)| *r).collect(), table.counters)
}

/// The record of the connection from `client_port`.
fn record_of(
    records: &[rstscope::flow::ConnectionRecord<Detector>],
    client_port: u16,
) -> &rstscope::flow::ConnectionRecord<Detector> {
    let found: Vec<_> = records
        .iter()
        .filter(|r| r.client.port == client_port)
        .collect();
    assert_eq!(found.len(), 1, "one connection from port {client_port}");
    found[0]
}

const T0: i64 = 1_700_000_000 * S;
/// Client and server initial sequence numbers of the connections below.
const CI: u32 = 1000;
const SI: u32 = 50_000;

#[test]
fn an_evicted_half_open_connection_says_the_connection_cap_cut_it_short() {
    // Room for one connection: the second SYN evicts the first, still unanswered.
    let (recs, counters) = records(
        1,
        &[
            (T0, 40_000, CLIENT, SYN, b"", CI, 0),
            (T0 + MS, 40_001, CLIENT, SYN, b"", CI, 0),
        ],
    );
    assert_eq!(counters.evicted, 1);
    let evicted = record_of(&recs, 40_000);
    assert_eq!(evicted.end, rstscope::flow::EndReason::Evicted);
    let v = classify(evicted);
    assert_class(&v, Class::IncompleteCapture);
    assert!(
        v.explanation.contains("live-connection cap"),
        "{}",
        v.explanation
    );
    assert!(
        v.explanation.contains("--max-connections"),
        "{}",
        v.explanation
    );
    assert!(!v.explanation.contains("One SYN"), "{}", v.explanation);
    assert_ne!(v.confidence, Confidence::Certain);
    // The one the capture ended on is no eviction.
    let last = classify(record_of(&recs, 40_001));
    assert_class(&last, Class::IncompleteCapture);
    assert!(
        !last.explanation.contains("--max-connections"),
        "{}",
        last.explanation
    );
}

#[test]
fn an_evicted_connection_waiting_for_its_response_is_cut_short_not_unanswered() {
    let (recs, _) = records(
        1,
        &[
            (T0, 40_000, CLIENT, SYN, b"", CI, 0),
            (T0 + MS, 40_000, SERVER, SYN | ACK, b"", SI, CI + 1),
            (T0 + 2 * MS, 40_000, CLIENT, ACK, b"", CI + 1, SI + 1),
            (T0 + 3 * MS, 40_000, CLIENT, PSH, GET, CI + 1, SI + 1),
            (T0 + 4 * MS, 40_001, CLIENT, SYN, b"", CI, 0),
        ],
    );
    let v = classify(record_of(&recs, 40_000));
    assert_class(&v, Class::IncompleteCapture);
    assert!(
        v.explanation.contains("--max-connections"),
        "{}",
        v.explanation
    );
    assert!(
        !v.explanation.contains("capture ended"),
        "{}",
        v.explanation
    );
}

#[test]
fn an_evicted_connection_the_server_had_closed_keeps_its_verdict_and_names_the_cap() {
    // The server's FIN before any response decides; only the client's side was still open.
    let (recs, counters) = records(
        1,
        &[
            (T0, 40_000, CLIENT, SYN, b"", CI, 0),
            (T0 + MS, 40_000, SERVER, SYN | ACK, b"", SI, CI + 1),
            (T0 + 2 * MS, 40_000, CLIENT, ACK, b"", CI + 1, SI + 1),
            (T0 + 3 * MS, 40_000, CLIENT, PSH, GET, CI + 1, SI + 1),
            (
                T0 + 300 * MS,
                40_000,
                SERVER,
                FIN,
                b"",
                SI + 1,
                CI + 1 + GET.len() as u32,
            ),
            (T0 + 400 * MS, 40_001, CLIENT, SYN, b"", CI, 0),
        ],
    );
    assert_eq!(counters.evicted, 1);
    let v = classify(record_of(&recs, 40_000));
    assert_class(&v, Class::ClosedBeforeResponse);
    assert!(
        v.explanation.contains("--max-connections"),
        "{}",
        v.explanation
    );
}

#[test]
fn connections_that_had_closed_are_not_counted_as_evicted_and_end_as_they_closed() {
    let response_end = SI + 1 + OK_RESPONSE.len() as u32;
    let request_end = CI + 1 + GET.len() as u32;
    let (recs, counters) = records(
        1,
        &[
            // Both FINs: closed, lingering for trailing packets.
            (T0, 40_000, CLIENT, SYN, b"", CI, 0),
            (T0 + MS, 40_000, SERVER, SYN | ACK, b"", SI, CI + 1),
            (T0 + 2 * MS, 40_000, CLIENT, ACK, b"", CI + 1, SI + 1),
            (T0 + 3 * MS, 40_000, CLIENT, PSH, GET, CI + 1, SI + 1),
            (
                T0 + 4 * MS,
                40_000,
                SERVER,
                PSH,
                OK_RESPONSE,
                SI + 1,
                request_end,
            ),
            (
                T0 + 5 * MS,
                40_000,
                CLIENT,
                FIN,
                b"",
                request_end,
                response_end,
            ),
            (
                T0 + 6 * MS,
                40_000,
                SERVER,
                FIN,
                b"",
                response_end,
                request_end + 1,
            ),
            // Refused: closed by the RST. Taking its place evicts the closed one above.
            (T0 + 7 * MS, 40_001, CLIENT, SYN, b"", CI, 0),
            (T0 + 8 * MS, 40_001, SERVER, RST, b"", 0, CI + 1),
            // And this one evicts the refused one.
            (T0 + 9 * MS, 40_002, CLIENT, SYN, b"", CI, 0),
        ],
    );
    assert_eq!(counters.evicted, 0, "closed connections are not cut short");
    let closed = record_of(&recs, 40_000);
    assert_eq!(closed.end, rstscope::flow::EndReason::Closed);
    let v = classify(closed);
    assert_class(&v, Class::Ok);
    assert!(!v.explanation.contains("cap"), "{}", v.explanation);
    let refused = record_of(&recs, 40_001);
    assert_eq!(refused.end, rstscope::flow::EndReason::Reset);
    assert_class(&classify(refused), Class::ConnectRefused);
}

impl Script {
    /// A segment at an explicit sequence number, leaving the script's numbering alone.
    fn send_seq(mut self, who: usize, flags: u8, data: &[u8], seq: u32) -> Self {
        let ack = self.seq[1 - who];
        self.packets
            .push((self.now, who, flags, data.to_vec(), seq, ack));
        self.now += 100_000;
        self
    }

    /// The verdict with another engine configuration.
    fn verdict_with(self, cfg: FlowConfig) -> Verdict {
        let mut table = FlowTable::<Detector>::new(cfg, 16);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (i, (ts, who, flags, data, seq, ack)) in self.packets.iter().enumerate() {
            let (sp, dp) = if *who == CLIENT {
                (40000, 8080)
            } else {
                (8080, 40000)
            };
            let p = TcpPacket {
                ts_ns: *ts,
                ip: IpVersion::V4,
                src: ip,
                dst: ip,
                src_port: sp,
                dst_port: dp,
                seq: *seq,
                ack: *ack,
                flags: TcpFlags(*flags),
                window: 512,
                ttl: 64,
                options: &[],
                payload: data,
                payload_len: data.len() as u32,
                reassembled: false,
                frame_len: 54 + data.len() as u32,
                payload_fingerprint: None,
            };
            table.packet(&p, i as u64 + 1);
        }
        table.finish(self.now);
        let mut done = Vec::new();
        table.take_finished(&mut done);
        assert_eq!(done.len(), 1, "one connection");
        classify(&done[0].1)
    }
}

#[test]
fn a_response_given_up_by_the_out_of_order_buffer_cap_is_no_close_before_response() {
    // The response arrives back to front: its last two pieces overflow a 16-byte buffer, so
    // the hole before them (the status line) is given up. Then the server closes.
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789";
    let (head, rest) = response.split_at(17);
    let (middle, tail) = rest.split_at(rest.len() - 12);
    let script = Script::new().handshake().send(CLIENT, PSH, GET);
    let base = script.seq[SERVER];
    let mut s = script
        .at(5 * MS)
        .send_seq(SERVER, PSH, tail, base + (head.len() + middle.len()) as u32)
        .send_seq(SERVER, PSH, middle, base + head.len() as u32)
        .send_seq(SERVER, PSH, head, base);
    s.seq[SERVER] = base + response.len() as u32;
    let cfg = FlowConfig {
        // 16 bytes of payload, and each piece's bookkeeping.
        max_buffered_per_direction: 16 + rstscope::flow::reassembly::PIECE_COST,
        ..FlowConfig::default()
    };
    let v = s
        .send(SERVER, FIN, b"")
        .send(CLIENT, FIN, b"")
        .verdict_with(cfg);
    assert_class(&v, Class::IncompleteCapture);
    for what in ["out-of-order buffer cap", "--max-buffer", "17 bytes"] {
        assert!(v.explanation.contains(what), "{what}: {}", v.explanation);
    }
    assert!(
        !v.explanation.contains("without sending any"),
        "{}",
        v.explanation
    );
    assert_eq!((v.closed_by, v.close), (Some(Side::Server), CloseKind::Fin));
}

#[test]
fn a_response_the_capture_lost_on_a_reused_connection_is_no_close_before_response() {
    // The second response was sent but not captured: the client acknowledges it, then the
    // server closes the idle connection.
    let lost = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut s = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, OK_RESPONSE)
        .at(S)
        .send(CLIENT, PSH, GET);
    s.seq[SERVER] += lost.len() as u32;
    let v = s
        .at(10 * MS)
        .send(CLIENT, ACK, b"")
        .at(S)
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::IncompleteCapture);
    assert!(v.explanation.contains("capture lost"), "{}", v.explanation);
    assert!(
        v.explanation.contains(&format!("{} bytes", lost.len())),
        "{}",
        v.explanation
    );
}

#[test]
fn a_gap_inside_an_earlier_body_leaves_a_later_close_before_response_alone() {
    // The first response's body misses 10 bytes the client acknowledges with its second
    // request; the server then closes without answering that request.
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n0123456789";
    let mut s = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .send(SERVER, PSH, head);
    s.seq[SERVER] += 10;
    let s = s
        .send(SERVER, PSH, b"0123456789")
        .at(S)
        .send(CLIENT, PSH, GET);
    let v = s.at(300 * MS).send(SERVER, FIN, b"").verdict();
    assert_class(&v, Class::ClosedBeforeResponse);
    assert_eq!(v.requests[0].outcome, "complete");
}

/// A ClientHello whose record header claims 16 KB, cut after `keep` bytes.
fn cut_client_hello(keep: usize) -> Vec<u8> {
    let mut b = client_hello(&["h2"]);
    b[3..5].copy_from_slice(&16_384u16.to_be_bytes());
    b.truncate(keep);
    b
}

#[test]
fn a_client_that_closes_in_the_middle_of_its_client_hello_aborted_it() {
    let v = Script::new()
        .handshake()
        .send(CLIENT, PSH, &cut_client_hello(40))
        .at(50 * MS)
        .send(CLIENT, FIN, b"")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&v, Class::ClientAbort);
    assert_eq!((v.closed_by, v.close), (Some(Side::Client), CloseKind::Fin));
    assert_eq!(v.phase.id(), "tls");
    assert!(
        v.explanation.starts_with("The client closed"),
        "{}",
        v.explanation
    );
    assert!(
        !v.explanation.contains("server closed"),
        "{}",
        v.explanation
    );
}

#[test]
fn a_server_close_is_its_answer_to_the_client_hello_only_when_it_came_first() {
    // The server closes first: it does not speak TLS on this port.
    let server_first = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["h2"]))
        .send(SERVER, FIN, b"")
        .send(CLIENT, FIN, b"")
        .verdict();
    assert_class(&server_first, Class::TlsToPlaintextPort);
    // The client gives up first on a silent server: the server's FIN only answers it.
    let client_first = Script::new()
        .handshake()
        .send(CLIENT, PSH, &client_hello(&["h2"]))
        .at(3 * S)
        .send(CLIENT, FIN, b"")
        .send(SERVER, FIN, b"")
        .verdict();
    assert_class(&client_first, Class::TlsHandshakeAborted);
    assert_eq!(client_first.closed_by, Some(Side::Client));
    assert!(
        client_first.explanation.starts_with("The client closed"),
        "{}",
        client_first.explanation
    );
}

#[test]
fn a_record_closed_by_the_idle_timeout_does_not_claim_the_capture_ended() {
    // One SYN, then 1000 s of capture without a packet of it (past the 900 s idle timeout).
    let syn = Script::new().send(CLIENT, SYN, b"").at(1000 * S).verdict();
    assert_class(&syn, Class::IncompleteCapture);
    assert!(
        syn.explanation.contains("--idle-timeout"),
        "{}",
        syn.explanation
    );
    assert!(
        !syn.explanation.contains("capture ended"),
        "{}",
        syn.explanation
    );
    let waiting = Script::new()
        .handshake()
        .send(CLIENT, PSH, GET)
        .at(1000 * S)
        .verdict();
    assert_class(&waiting, Class::IncompleteCapture);
    assert!(
        waiting.explanation.contains("--idle-timeout"),
        "{}",
        waiting.explanation
    );
    assert!(
        !waiting.explanation.contains("capture ended"),
        "{}",
        waiting.explanation
    );
}
