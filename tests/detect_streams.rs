//! The detectors on the real byte streams of sample captures, however those streams are cut.
//!
//! A recording [`StreamHandler`] keeps every chunk (bytes copied), gap and FIN of each
//! connection, in the order the connection engine delivered them. Replayed into a fresh
//! [`Detector`], the recording must give what the live detector gave; re-cut at any byte
//! boundary of either side (one chunk split in two, the interleaving of the sides and the
//! FINs kept), and cut into single bytes, it must give the same detection: events (kinds,
//! order, times), exchanges, counters, first bytes, everything `Detector::detected` shows.
//!
//! The last tests state facts of these captures, each checked against tshark (frame numbers
//! in the comments are tshark's).

mod common;

use common::*;
use rstscope::capture::{Input, InputSource};
use rstscope::detect::{Detector, Framing, ProtoKind, Protocol};
use rstscope::flow::{Chunk, ConnectionRecord, FlowConfig, GapCause, Side, StreamHandler};

/// What the connection engine handed a stream handler, in order.
#[derive(Debug, Clone)]
enum Op {
    Data {
        from: Side,
        ts_ns: i64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Gap {
        from: Side,
        ts_ns: i64,
        offset: u64,
        len: u64,
        cause: GapCause,
    },
    Fin {
        from: Side,
        ts_ns: i64,
    },
}

#[derive(Default)]
struct Recorder {
    ops: Vec<Op>,
}

impl StreamHandler for Recorder {
    fn chunk(&mut self, from: Side, chunk: &Chunk<'_>) {
        self.ops.push(match *chunk {
            Chunk::Data {
                ts_ns,
                offset,
                bytes,
            } => Op::Data {
                from,
                ts_ns,
                offset,
                bytes: bytes.to_vec(),
            },
            Chunk::Gap {
                ts_ns,
                offset,
                len,
                cause,
            } => Op::Gap {
                from,
                ts_ns,
                offset,
                len,
                cause,
            },
        });
    }

    fn fin(&mut self, from: Side, ts_ns: i64) {
        self.ops.push(Op::Fin { from, ts_ns });
    }
}

/// The captures whose streams are replayed: TLS 1.2 and 1.3 with ALPN h2 and http/1.1, h2c
/// with many streams, GOAWAY and RST_STREAM, HTTP/1.1 keep-alive with complete and
/// truncated chunked bodies, and an h2c upgrade.
const CAPTURES: [&str; 13] = [
    "healthy-tls-h2.pcap",
    "healthy-tls-h1.pcap",
    "cert-rejected-tls12.pcap",
    "cert-rejected-tls13.pcap",
    "alpn-mismatch.pcap",
    "healthy-h2c.pcap",
    "h2-goaway-graceful.pcap",
    "h2-goaway-error.pcap",
    "h2-rst-stream.pcap",
    "healthy-h1-keepalive.pcap",
    "healthy-h1-chunked.pcap",
    "truncated-chunked-body.pcap",
    "healthy-h2c-upgrade.pcap",
];

/// Every byte boundary is tried only on streams up to this size (the work is quadratic).
const MAX_SPLIT_STREAM: usize = 16 << 10;

fn input(name: &str) -> Input {
    let path = samples().join("scenarios").join(name);
    Input {
        display: path.display().to_string(),
        source: InputSource::File(path),
    }
}

fn analyzed<H: StreamHandler + 'static>(name: &str) -> Vec<ConnectionRecord<H>> {
    let mut out = Vec::new();
    let summary =
        rstscope::pipeline::analyze::<H>(&input(name), &FlowConfig::default(), 1, &mut |r| {
            out.push(r)
        });
    assert!(
        summary.stats.errors.is_empty(),
        "{name}: {:?}",
        summary.stats.errors
    );
    out.sort_by_key(|r| r.first_frame);
    out
}

/// Replays the recording into a fresh detector; `split` = (op index, cut) feeds that data
/// chunk as two: its first `cut` bytes, then the rest, both at the chunk's time.
fn replay(ops: &[Op], split: Option<(usize, usize)>) -> Detector {
    let mut d = Detector::default();
    for (i, op) in ops.iter().enumerate() {
        match (op, split) {
            (
                Op::Data {
                    from,
                    ts_ns,
                    offset,
                    bytes,
                },
                Some((j, cut)),
            ) if j == i => {
                let (head, tail) = bytes.split_at(cut);
                for (offset, bytes) in [(*offset, head), (offset + cut as u64, tail)] {
                    d.chunk(
                        *from,
                        &Chunk::Data {
                            ts_ns: *ts_ns,
                            offset,
                            bytes,
                        },
                    );
                }
            }
            _ => feed(&mut d, op),
        }
    }
    d
}

/// Replays the recording with every data chunk cut into single bytes.
fn replay_bytewise(ops: &[Op]) -> Detector {
    let mut d = Detector::default();
    for op in ops {
        match op {
            Op::Data {
                from,
                ts_ns,
                offset,
                bytes,
            } => {
                for (k, b) in bytes.iter().enumerate() {
                    d.chunk(
                        *from,
                        &Chunk::Data {
                            ts_ns: *ts_ns,
                            offset: offset + k as u64,
                            bytes: std::slice::from_ref(b),
                        },
                    );
                }
            }
            Op::Gap { .. } | Op::Fin { .. } => feed(&mut d, op),
        }
    }
    d
}

/// Feeds one recorded operation as it was.
fn feed(d: &mut Detector, op: &Op) {
    match op {
        Op::Data {
            from,
            ts_ns,
            offset,
            bytes,
        } => d.chunk(
            *from,
            &Chunk::Data {
                ts_ns: *ts_ns,
                offset: *offset,
                bytes,
            },
        ),
        Op::Gap {
            from,
            ts_ns,
            offset,
            len,
            cause,
        } => d.chunk(
            *from,
            &Chunk::Gap {
                ts_ns: *ts_ns,
                offset: *offset,
                len: *len,
                cause: *cause,
            },
        ),
        Op::Fin { from, ts_ns } => d.fin(*from, *ts_ns),
    }
}

/// Everything the detector reports, as one comparable text.
fn observe(d: &Detector) -> String {
    serde_json::to_string_pretty(&d.detected()).unwrap()
}

fn stream_len(ops: &[Op], side: Side) -> usize {
    ops.iter()
        .map(|op| match op {
            Op::Data { from, bytes, .. } if *from == side => bytes.len(),
            _ => 0,
        })
        .sum()
}

/// First difference of two observations, for a readable failure.
fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {i}: whole-chunk replay {x:?}, re-cut replay {y:?}");
        }
    }
    format!(
        "lengths {} and {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

#[test]
fn replaying_the_recorded_chunks_gives_what_the_live_detector_found() {
    for name in CAPTURES {
        let recorded = analyzed::<Recorder>(name);
        let live = analyzed::<Detector>(name);
        assert_eq!(recorded.len(), live.len(), "{name}: connections");
        assert!(!live.is_empty(), "{name}: no connection");
        for (r, l) in recorded.iter().zip(&live) {
            assert_eq!(r.first_frame, l.first_frame);
            assert!(
                r.handler.ops.iter().any(|op| matches!(op, Op::Data { .. })),
                "{name}: connection at frame {} has no data",
                r.first_frame
            );
            assert_eq!(
                observe(&replay(&r.handler.ops, None)),
                observe(&l.handler),
                "{name}: connection at frame {}",
                r.first_frame
            );
        }
    }
}

/// Replays every connection of `captures` with each data chunk split at each interior
/// byte, on two threads; returns the number of cuts tried.
fn check_every_split(captures: &[&'static str]) -> usize {
    let mut work = Vec::new();
    for &name in captures {
        for r in analyzed::<Recorder>(name) {
            for side in [Side::Client, Side::Server] {
                let n = stream_len(&r.handler.ops, side);
                assert!(
                    n <= MAX_SPLIT_STREAM,
                    "{name}: the {side:?} stream at frame {} has {n} bytes: too many to try \
                     every boundary",
                    r.first_frame
                );
            }
            work.push((name, r.first_frame, r.handler.ops));
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(work.len().div_ceil(2))
            .map(|part| {
                s.spawn(move || {
                    let mut tried = 0;
                    for (name, frame, ops) in part {
                        let whole = observe(&replay(ops, None));
                        for (i, op) in ops.iter().enumerate() {
                            let Op::Data { from, bytes, .. } = op else {
                                continue;
                            };
                            for cut in 1..bytes.len() {
                                let got = observe(&replay(ops, Some((i, cut))));
                                tried += 1;
                                assert!(
                                    got == whole,
                                    "{name}, connection at frame {frame}: {from:?} chunk {i} \
                                     split after {cut} of {} bytes: {}",
                                    bytes.len(),
                                    first_difference(&whole, &got)
                                );
                            }
                        }
                    }
                    tried
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn check_single_bytes(captures: &[&str]) {
    for &name in captures {
        for r in analyzed::<Recorder>(name) {
            let whole = observe(&replay(&r.handler.ops, None));
            let bytewise = observe(&replay_bytewise(&r.handler.ops));
            assert!(
                whole == bytewise,
                "{name}, connection at frame {}: {}",
                r.first_frame,
                first_difference(&whole, &bytewise)
            );
        }
    }
}

/// All captures but the h2c upgrade, whose client preface must arrive whole (see the
/// ignored tests below).
fn captures_but_upgrade() -> Vec<&'static str> {
    CAPTURES
        .into_iter()
        .filter(|n| *n != "healthy-h2c-upgrade.pcap")
        .collect()
}

#[test]
fn splitting_any_chunk_at_any_byte_gives_the_same_detection() {
    let tried = check_every_split(&captures_but_upgrade());
    // Every interior boundary of every chunk: 18,107 cuts on the samples as committed.
    assert!(tried > 10_000, "{tried} cuts tried");
}

#[test]
fn single_byte_chunks_give_the_same_detection() {
    check_single_bytes(&captures_but_upgrade());
}

// After "Upgrade: h2c" and the 101, the HTTP/1 parser recognises the client's HTTP/2 preface
// only when one chunk starts with all 14 bytes of "PRI * HTTP/2.0" (http1.rs feed_client,
// State::Head with an empty head, and State::Switched: `bytes.starts_with(..)`). A segment
// boundary inside those 14 bytes (frame 10 of healthy-h2c-upgrade cut after 1 byte) makes the
// first piece the start of a request head: the client side stays HTTP/1, its HTTP/2 frames
// (the HEADERS of stream 3) are never parsed, and `client_protocol` is "http1", not "h2".
#[test]

fn splitting_the_h2c_upgrade_stream_at_any_byte_gives_the_same_detection() {
    check_every_split(&["healthy-h2c-upgrade.pcap"]);
}

#[test]

fn single_byte_chunks_of_the_h2c_upgrade_give_the_same_detection() {
    check_single_bytes(&["healthy-h2c-upgrade.pcap"]);
}

// ------------------------------------------------------------------------------------
// Facts of the captures, each checked against tshark 4.0.17
// (`-d tcp.port==P,tls|http|http2`, fields named in the comments).

fn only(name: &str) -> ConnectionRecord<Detector> {
    let mut recs = analyzed::<Detector>(name);
    assert_eq!(recs.len(), 1, "{name}: connections");
    recs.remove(0)
}

fn kinds(rec: &ConnectionRecord<Detector>, side: Side) -> Vec<&ProtoKind> {
    rec.handler
        .events
        .iter()
        .filter(|e| e.from == side)
        .map(|e| &e.kind)
        .collect()
}

fn client_hello_alpn(rec: &ConnectionRecord<Detector>) -> Vec<String> {
    kinds(rec, Side::Client)
        .into_iter()
        .find_map(|k| match k {
            ProtoKind::TlsClientHello { alpn, .. } => Some(alpn.clone()),
            _ => None,
        })
        .expect("a ClientHello")
}

fn server_hello(rec: &ConnectionRecord<Detector>) -> Option<(u16, Option<String>)> {
    kinds(rec, Side::Server).into_iter().find_map(|k| match k {
        ProtoKind::TlsServerHello { version, alpn, .. } => Some((*version, alpn.clone())),
        _ => None,
    })
}

fn plaintext_alerts(rec: &ConnectionRecord<Detector>, side: Side) -> Vec<(u8, u8)> {
    kinds(rec, side)
        .into_iter()
        .filter_map(|k| match k {
            ProtoKind::TlsAlert {
                level: Some(l),
                description: Some(d),
                encrypted: false,
                ..
            } => Some((*l, *d)),
            _ => None,
        })
        .collect()
}

/// (stream id, :status) of each HEADERS from a side.
fn h2_headers(rec: &ConnectionRecord<Detector>, side: Side) -> Vec<(u32, Option<u16>)> {
    kinds(rec, side)
        .into_iter()
        .filter_map(|k| match k {
            ProtoKind::H2Headers {
                stream_id, status, ..
            } => Some((*stream_id, *status)),
            _ => None,
        })
        .collect()
}

fn goaways(rec: &ConnectionRecord<Detector>, side: Side) -> Vec<(u32, u32)> {
    kinds(rec, side)
        .into_iter()
        .filter_map(|k| match k {
            ProtoKind::H2GoAway {
                last_stream_id,
                error_code,
                ..
            } => Some((*last_stream_id, *error_code)),
            _ => None,
        })
        .collect()
}

fn rst_streams(rec: &ConnectionRecord<Detector>, side: Side) -> Vec<(u32, u32)> {
    kinds(rec, side)
        .into_iter()
        .filter_map(|k| match k {
            ProtoKind::H2RstStream {
                stream_id,
                error_code,
            } => Some((*stream_id, *error_code)),
            _ => None,
        })
        .collect()
}

const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
const NO_ERROR: u32 = 0;
const REFUSED_STREAM: u32 = 7;
const ENHANCE_YOUR_CALM: u32 = 11;

#[test]
fn tls_hellos_and_alerts_are_those_tshark_shows() {
    // healthy-tls-h2 frame 4: tls.handshake.extensions_alpn_str "h2,http/1.1"; frame 6:
    // ServerHello, supported_version 0x0304 (legacy version 0x0303), no ALPN in clear.
    let r = only("healthy-tls-h2.pcap");
    assert_eq!(client_hello_alpn(&r), ["h2", "http/1.1"]);
    assert_eq!(server_hello(&r), Some((TLS13, None)));
    assert_eq!(r.handler.protocols(), [Protocol::Tls, Protocol::Tls]);

    // healthy-tls-h1 frame 4: "http/1.1" only (curl --http1.1); frame 6: TLS 1.3.
    let r = only("healthy-tls-h1.pcap");
    assert_eq!(client_hello_alpn(&r), ["http/1.1"]);
    assert_eq!(server_hello(&r), Some((TLS13, None)));

    // cert-rejected-tls12 frame 6: ServerHello version 0x0303, no supported_versions,
    // ALPN "http/1.1" (nginx's port 8444 has no http2); frame 8: client alert, level 2,
    // description 48 (unknown_ca).
    let r = only("cert-rejected-tls12.pcap");
    assert_eq!(client_hello_alpn(&r), ["h2", "http/1.1"]);
    assert_eq!(server_hello(&r), Some((TLS12, Some("http/1.1".into()))));
    assert_eq!(plaintext_alerts(&r, Side::Client), [(2, 48)]);
    assert!(plaintext_alerts(&r, Side::Server).is_empty());

    // cert-rejected-tls13 frame 6: TLS 1.3; frame 8: the client's unknown_ca alert is a
    // plaintext record (content type 21, tls.alert_message.desc 48): OpenSSL sends it
    // before its own encrypted flight.
    let r = only("cert-rejected-tls13.pcap");
    assert_eq!(server_hello(&r), Some((TLS13, None)));
    assert_eq!(plaintext_alerts(&r, Side::Client), [(2, 48)]);

    // alpn-mismatch frame 4: the client offers only "h2"; frame 6: the server's first and
    // only record is alert level 2, description 120 (no_application_protocol); no
    // ServerHello.
    let r = only("alpn-mismatch.pcap");
    assert_eq!(client_hello_alpn(&r), ["h2"]);
    assert_eq!(server_hello(&r), None);
    assert_eq!(plaintext_alerts(&r, Side::Server), [(2, 120)]);
}

#[test]
fn h2_frames_are_those_tshark_shows() {
    // healthy-h2c: frame 4 five client HEADERS (streams 1, 3, 5, 7, 9); frame 10 five
    // server HEADERS (http2.headers.status 200 each); frame 12 client GOAWAY last 0
    // NO_ERROR; frame 14 server GOAWAY last 9 NO_ERROR.
    let r = only("healthy-h2c.pcap");
    let client: Vec<u32> = h2_headers(&r, Side::Client).iter().map(|h| h.0).collect();
    assert_eq!(client, [1, 3, 5, 7, 9]);
    assert_eq!(
        h2_headers(&r, Side::Server),
        [1, 3, 5, 7, 9].map(|s| (s, Some(200)))
    );
    assert_eq!(goaways(&r, Side::Client), [(0, NO_ERROR)]);
    assert_eq!(goaways(&r, Side::Server), [(9, NO_ERROR)]);
    assert_eq!(r.handler.protocols(), [Protocol::H2, Protocol::H2]);

    // h2-goaway-graceful: frame 6 six client HEADERS (1..11); frames 11, 13 server HEADERS
    // on 1, 3, 5; server GOAWAY last 5 NO_ERROR in frames 15, 22, 23; client GOAWAY last 0
    // in frames 17, 18.
    let r = only("h2-goaway-graceful.pcap");
    assert_eq!(h2_headers(&r, Side::Client).len(), 6);
    assert_eq!(
        h2_headers(&r, Side::Server),
        [1, 3, 5].map(|s| (s, Some(200)))
    );
    assert_eq!(goaways(&r, Side::Server), [(5, NO_ERROR); 3]);
    assert_eq!(goaways(&r, Side::Client), [(0, NO_ERROR); 2]);

    // h2-goaway-error: frame 13 server GOAWAY last 5 ENHANCE_YOUR_CALM; frames 14, 15 client
    // RST_STREAM on 7 and 9 with ENHANCE_YOUR_CALM; frame 16 client GOAWAY last 0; frame
    // 20 server GOAWAY last 5 NO_ERROR.
    let r = only("h2-goaway-error.pcap");
    assert_eq!(
        goaways(&r, Side::Server),
        [(5, ENHANCE_YOUR_CALM), (5, NO_ERROR)]
    );
    assert_eq!(
        rst_streams(&r, Side::Client),
        [(7, ENHANCE_YOUR_CALM), (9, ENHANCE_YOUR_CALM)]
    );
    assert_eq!(goaways(&r, Side::Client), [(0, NO_ERROR)]);

    // h2-rst-stream: frames 10, 12, 13 server RST_STREAM REFUSED_STREAM on 1, 5, 9;
    // frames 15-17 server HEADERS on 3, 7, 11; frames 23, 24 GOAWAY last 11.
    let r = only("h2-rst-stream.pcap");
    assert_eq!(
        rst_streams(&r, Side::Server),
        [1, 5, 9].map(|s| (s, REFUSED_STREAM))
    );
    assert_eq!(
        h2_headers(&r, Side::Server),
        [3, 7, 11].map(|s| (s, Some(200)))
    );
    assert_eq!(goaways(&r, Side::Server), [(11, NO_ERROR); 2]);
}

#[test]
fn http1_exchanges_are_those_tshark_shows() {
    // healthy-h1-keepalive: GET in frames 4, 8, 10; http.response.code 200 in frames 6, 9,
    // 11, http.content_length 256, 1024, 256.
    let r = only("healthy-h1-keepalive.pcap");
    let x = r.handler.exchanges();
    let got: Vec<_> = x
        .iter()
        .map(|e| (e.method.as_deref(), e.status, e.framing, e.body_bytes))
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("GET"),
                Some(200),
                Some(Framing::ContentLength(256)),
                256
            ),
            (
                Some("GET"),
                Some(200),
                Some(Framing::ContentLength(1024)),
                1024
            ),
            (
                Some("GET"),
                Some(200),
                Some(Framing::ContentLength(256)),
                256
            ),
        ]
    );

    // healthy-h1-chunked: GET /a (frame 4) and /b (frame 14); 200 with
    // http.transfer_encoding "chunked" and http.chunk_size 41, 41, 41, 0 for each (heads in
    // frames 6 and 15, last chunks in frames 12 and 19): two complete chunked bodies of 123
    // data bytes.
    let r = only("healthy-h1-chunked.pcap");
    let x = r.handler.exchanges();
    let got: Vec<_> = x
        .iter()
        .map(|e| {
            (
                e.target.as_deref(),
                e.status,
                e.framing,
                e.body_bytes,
                e.response_end_ns.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("/a"), Some(200), Some(Framing::Chunked), 123, true),
            (Some("/b"), Some(200), Some(Framing::Chunked), 123, true),
        ]
    );
    let ends: Vec<_> = kinds(&r, Side::Server)
        .into_iter()
        .filter_map(|k| match k {
            ProtoKind::HttpBodyEnd { bytes } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [123, 123]);

    // truncated-chunked-body, connection to 9104 (tshark stream 1, frames 6..23): frame 11
    // "HTTP/1.1 200 OK" with Transfer-Encoding: chunked, two 27-byte chunks (frames 11, 13),
    // then the upstream's FIN (frame 21) without the last chunk: the body never ends.
    let recs = analyzed::<Detector>("truncated-chunked-body.pcap");
    let up = recs
        .iter()
        .find(|r| r.server.port == 9104)
        .expect("the upstream connection");
    let x = up.handler.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(
        (x[0].status, x[0].framing, x[0].body_bytes),
        (Some(200), Some(Framing::Chunked), 54)
    );
    assert_eq!(x[0].response_end_ns, None);
}

#[test]
fn h2c_upgrade_is_followed_into_http2() {
    // healthy-h2c-upgrade: frame 4 "GET /small.txt HTTP/1.1" with "Upgrade: h2c"; frame 6
    // "HTTP/1.1 101 Switching Protocols" (http.upgrade "h2c") and the server's SETTINGS;
    // frame 8 HEADERS on stream 1 with :status 200 (the answer to the upgrading request:
    // no client HEADERS for it); frame 10 the client preface (http2.magic); frame 13 the
    // client's HEADERS on stream 3 (:path /1k.txt); frame 15 the server's, :status 200.
    let r = only("healthy-h2c-upgrade.pcap");
    assert_eq!(r.handler.protocols(), [Protocol::H2, Protocol::H2]);
    let server = kinds(&r, Side::Server);
    let head = server
        .iter()
        .find_map(|k| match k {
            ProtoKind::HttpResponseHead {
                status, upgrade, ..
            } => Some((*status, upgrade.clone())),
            _ => None,
        })
        .expect("the 101");
    assert_eq!(head, (101, Some("h2c".into())));
    assert_eq!(
        h2_headers(&r, Side::Server),
        [(1, Some(200)), (3, Some(200))]
    );
    let client = kinds(&r, Side::Client);
    assert!(
        client.iter().any(|k| matches!(k, ProtoKind::H2Preface)),
        "{client:?}"
    );
    let paths: Vec<_> = client
        .iter()
        .filter_map(|k| match k {
            ProtoKind::H2Headers {
                stream_id, path, ..
            } => Some((*stream_id, path.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(paths, [(3, Some("/1k.txt".to_string()))]);
    let x = r.handler.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(
        (x[0].target.as_deref(), x[0].status),
        (Some("/small.txt"), Some(101))
    );
}
