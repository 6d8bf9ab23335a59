//! TLS record layer of one direction (RFC 8446 §5, RFC 5246 §6.2), and the handshake messages
//! that say what was offered and chosen: ClientHello and ServerHello (RFC 8446 §4.1.2-4.1.4).
//!
//! Records are followed by their 5-byte headers, whatever segments they were cut into.
//! Handshake records are joined into handshake messages until the hello of this side is
//! parsed (tls-parser does not join messages split across records; this does). After that,
//! record bodies are skipped, only counted: a 1 GB download costs a header walk, not a copy.
//!
//! Encryption starts, for this direction, after its ChangeCipherSpec (TLS 1.2), or after the
//! ServerHello when TLS 1.3 was negotiated: from then on an alert record is reported as
//! encrypted, with its length only.

// Input bytes never panic this detector: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use serde::Serialize;
use tls_parser::{
    TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_message_handshake, parse_tls_server_hello_extensions,
};

use super::event::{ProtoKind, escape_bytes};

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// Largest record body allowed: 2^14 plus the 2048 bytes of expansion TLS 1.2 permits
/// (RFC 5246 §6.2.3); a longer length field means these are not TLS records.
const MAX_RECORD_BODY: usize = (1 << 14) + 2048;
/// Handshake bytes kept while looking for this side's hello.
const MAX_HANDSHAKE_BUFFER: usize = 64 << 10;
/// ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Record counts of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TlsCounters {
    pub records: u64,
    pub application_data_records: u64,
    pub application_data_bytes: u64,
    pub first_application_data_ns: Option<i64>,
    pub last_application_data_ns: Option<i64>,
    /// Length of the last record of this side: a short last application-data record before a
    /// close is often an encrypted alert.
    pub last_record_len: u16,
    pub last_record_type: u8,
}

/// One direction's TLS records.
pub struct TlsDirection {
    is_client: bool,
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
    content_type: u8,
    record_len: u16,
    /// The current record's body, kept only for handshake, alert and CCS records while they
    /// still matter.
    body: Vec<u8>,
    keep_body: bool,
    handshake: Vec<u8>,
    hello_done: bool,
    encrypted: bool,
    ccs_seen: bool,
    stopped: bool,
    pub counters: TlsCounters,
}

impl TlsDirection {
    pub fn new(is_client: bool) -> Self {
        TlsDirection {
            is_client,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            content_type: 0,
            record_len: 0,
            body: Vec::new(),
            keep_body: false,
            handshake: Vec::new(),
            hello_done: false,
            encrypted: false,
            ccs_seen: false,
            stopped: false,
            counters: TlsCounters::default(),
        }
    }

    /// From now on this side's records are encrypted (TLS 1.3 after the ServerHello).
    pub fn set_encrypted(&mut self) {
        self.encrypted = true;
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes were not captured: record boundaries are lost.
    pub fn gap(&mut self) {
        self.stopped = true;
    }

    /// Feeds the next in-order bytes of this direction.
    pub fn feed(&mut self, ts_ns: i64, mut bytes: &[u8], out: &mut Vec<(i64, ProtoKind)>) {
        while !bytes.is_empty() && !self.stopped {
            // The record header still being filled, if it is.
            if let Some(missing) = self
                .header
                .get_mut(self.header_len..)
                .filter(|missing| !missing.is_empty())
            {
                let take = missing.len().min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                if let Some(to) = missing.get_mut(..take) {
                    to.copy_from_slice(head);
                }
                self.header_len += take;
                bytes = rest;
                if self.header_len == 5 {
                    self.start_record(out, ts_ns);
                }
                continue;
            }
            let (body, rest) = bytes.split_at(self.body_left.min(bytes.len()));
            if self.keep_body {
                self.body.extend_from_slice(body);
            }
            self.body_left -= body.len();
            bytes = rest;
            if self.body_left == 0 {
                self.end_record(ts_ns, out);
            }
        }
    }

    fn start_record(&mut self, out: &mut Vec<(i64, ProtoKind)>, ts_ns: i64) {
        let [t, major, _minor, hi, lo] = self.header;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if !(CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_APPLICATION_DATA + 1).contains(&t)
            || major != 3
            || len > MAX_RECORD_BODY
        {
            // Not (or no longer) TLS records: say what the bytes were, once, and stop.
            out.push((
                ts_ns,
                ProtoKind::Unrecognized {
                    first_bytes: escape_bytes(&self.header, 5),
                },
            ));
            self.stopped = true;
            return;
        }
        self.content_type = t;
        self.record_len = len as u16;
        self.body_left = len;
        self.body.clear();
        self.keep_body = match t {
            CONTENT_HANDSHAKE => !self.hello_done && !self.encrypted,
            CONTENT_ALERT | CONTENT_CHANGE_CIPHER_SPEC => true,
            _ => false,
        };
        if len == 0 {
            self.end_record(ts_ns, out);
        }
    }

    fn end_record(&mut self, ts_ns: i64, out: &mut Vec<(i64, ProtoKind)>) {
        self.header_len = 0;
        self.counters.records += 1;
        self.counters.last_record_len = self.record_len;
        self.counters.last_record_type = self.content_type;
        match self.content_type {
            CONTENT_CHANGE_CIPHER_SPEC => {
                if !self.ccs_seen {
                    out.push((ts_ns, ProtoKind::TlsChangeCipherSpec));
                }
                self.ccs_seen = true;
                // In TLS 1.2 this side encrypts from the next record on; in TLS 1.3 a CCS is
                // only for middlebox compatibility, and the records after it are encrypted too.
                self.encrypted = true;
            }
            CONTENT_ALERT => {
                let (level, description) = match (self.encrypted, self.body.as_slice()) {
                    (false, [level, description]) => (Some(*level), Some(*description)),
                    _ => (None, None),
                };
                out.push((
                    ts_ns,
                    ProtoKind::TlsAlert {
                        level,
                        description,
                        encrypted: self.encrypted,
                        record_len: self.record_len,
                    },
                ));
            }
            CONTENT_HANDSHAKE if self.keep_body => {
                if self.handshake.len() + self.body.len() > MAX_HANDSHAKE_BUFFER {
                    self.hello_done = true;
                    self.handshake = Vec::new();
                } else {
                    self.handshake.extend_from_slice(&self.body);
                    self.parse_handshake(ts_ns, out);
                }
            }
            CONTENT_APPLICATION_DATA => {
                self.counters.application_data_records += 1;
                self.counters.application_data_bytes += u64::from(self.record_len);
                self.counters.last_application_data_ns = Some(ts_ns);
                if self.counters.first_application_data_ns.is_none() {
                    self.counters.first_application_data_ns = Some(ts_ns);
                    out.push((ts_ns, ProtoKind::TlsFirstApplicationData));
                }
            }
            _ => {}
        }
        self.body.clear();
    }

    /// Parses complete handshake messages from the joined handshake bytes, up to this side's
    /// hello.
    fn parse_handshake(&mut self, ts_ns: i64, out: &mut Vec<(i64, ProtoKind)>) {
        while !self.hello_done {
            let Some(&[_, a, b, c]) = self
                .handshake
                .get(..4)
                .and_then(|h| <&[u8; 4]>::try_from(h).ok())
            else {
                return;
            };
            let msg_len = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            if self.handshake.len() < msg_len {
                return;
            }
            let msg = self.handshake.get(..msg_len).unwrap_or_default();
            if let Some(kind) = hello_event(msg, self.is_client) {
                out.push((ts_ns, kind));
                self.hello_done = true;
            } else if msg.first() == Some(&if self.is_client { 1 } else { 2 }) {
                // This side's hello that does not parse: nothing more to learn here.
                self.hello_done = true;
            }
            self.handshake.drain(..msg_len);
        }
        self.handshake = Vec::new();
    }
}

/// The event of a ClientHello (from the client) or ServerHello (from the server) message.
fn hello_event(msg: &[u8], from_client: bool) -> Option<ProtoKind> {
    let Ok((_, TlsMessage::Handshake(hs))) = parse_tls_message_handshake(msg) else {
        return None;
    };
    match hs {
        TlsMessageHandshake::ClientHello(ch) if from_client => {
            let exts = ch
                .ext
                .and_then(|e| parse_tls_client_hello_extensions(e).ok())
                .map(|(_, v)| v)
                .unwrap_or_default();
            let mut sni = None;
            let mut alpn = Vec::new();
            let mut versions = Vec::new();
            for e in &exts {
                match e {
                    TlsExtension::SNI(names) => {
                        sni = names
                            .first()
                            .map(|(_, n)| String::from_utf8_lossy(n).chars().take(255).collect());
                    }
                    TlsExtension::ALPN(protos) => {
                        alpn = protos
                            .iter()
                            .take(16)
                            .map(|p| escape_bytes(p, 64))
                            .collect();
                    }
                    // GREASE values (RFC 8701) are left out: they are noise, not offers.
                    TlsExtension::SupportedVersions(v) => {
                        versions = v
                            .iter()
                            .map(|v| v.0)
                            .filter(|v| v & 0x0f0f != 0x0a0a)
                            .collect()
                    }
                    _ => {}
                }
            }
            Some(ProtoKind::TlsClientHello {
                legacy_version: ch.version.0,
                versions,
                sni,
                alpn,
                cipher_suites: ch.ciphers.len().min(usize::from(u16::MAX)) as u16,
                extensions: exts.len().min(usize::from(u16::MAX)) as u16,
            })
        }
        TlsMessageHandshake::ServerHello(sh) if !from_client => {
            let exts = sh
                .ext
                .and_then(|e| parse_tls_server_hello_extensions(e).ok())
                .map(|(_, v)| v)
                .unwrap_or_default();
            let mut version = sh.version.0;
            let mut alpn = None;
            for e in &exts {
                match e {
                    TlsExtension::SupportedVersions(v) => {
                        if let Some(v) = v.first() {
                            version = v.0;
                        }
                    }
                    TlsExtension::ALPN(protos) => {
                        alpn = protos.first().map(|p| escape_bytes(p, 64))
                    }
                    _ => {}
                }
            }
            Some(ProtoKind::TlsServerHello {
                version,
                cipher: sh.cipher.0,
                alpn,
                hello_retry_request: sh.random == HRR_RANDOM,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! Malformed and awkwardly cut input for the record walker. Records and hellos are built
    //! byte by byte here (RFC 8446 §4.1.2, §5.1), independently of tls-parser.

    use super::*;

    /// The events of feeding `chunks` in order to one direction.
    fn feed_all(t: &mut TlsDirection, chunks: &[&[u8]]) -> Vec<ProtoKind> {
        let mut out = Vec::new();
        for c in chunks {
            t.feed(0, c, &mut out);
        }
        out.into_iter().map(|(_, k)| k).collect()
    }

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    /// `payload` as records of type `content_type` carrying at most `fragment` bytes each.
    fn records(content_type: u8, payload: &[u8], fragment: usize) -> Vec<u8> {
        payload
            .chunks(fragment)
            .flat_map(|f| record(content_type, f))
            .collect()
    }

    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn extension(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend(with_len16(data));
        v
    }

    /// A ClientHello handshake message (type, 24-bit length, body) with SNI, ALPN and
    /// supported_versions, and `padding` more bytes in a padding extension (RFC 7685).
    fn client_hello(alpn: &[&str], sni: &str, padding: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x5a; 32]); // random
        body.push(0); // session id
        body.extend(with_len16(&[0x13, 0x01, 0x13, 0x02])); // two cipher suites
        body.extend_from_slice(&[1, 0]); // null compression
        let mut sni_list = vec![0];
        sni_list.extend(with_len16(sni.as_bytes()));
        let mut alpn_list = Vec::new();
        for p in alpn {
            alpn_list.push(p.len() as u8);
            alpn_list.extend_from_slice(p.as_bytes());
        }
        let mut exts = extension(0x0000, &with_len16(&sni_list));
        exts.extend(extension(0x0010, &with_len16(&alpn_list)));
        exts.extend(extension(0x002b, &[4, 0x03, 0x04, 0x03, 0x03]));
        exts.extend(extension(0x0015, &vec![0; padding]));
        body.extend(with_len16(&exts));
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    fn expected_hello() -> ProtoKind {
        ProtoKind::TlsClientHello {
            legacy_version: 0x0303,
            versions: vec![0x0304, 0x0303],
            sni: Some("example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            cipher_suites: 2,
            extensions: 4,
        }
    }

    fn unrecognized(events: &[ProtoKind]) -> usize {
        events
            .iter()
            .filter(|k| matches!(k, ProtoKind::Unrecognized { .. }))
            .count()
    }

    #[test]
    fn a_record_length_past_the_maximum_is_unrecognized_once_then_stops() {
        // 18433: one byte more than 2^14 + 2048 (RFC 5246 §6.2.3).
        let mut t = TlsDirection::new(true);
        let mut bytes = vec![CONTENT_HANDSHAKE, 3, 1, 0x48, 0x01];
        bytes.extend_from_slice(&[0; 100]);
        let events = feed_all(&mut t, &[&bytes, &record(CONTENT_HANDSHAKE, &[1, 2, 3])]);
        assert_eq!(
            events,
            [ProtoKind::Unrecognized {
                first_bytes: "\\x16\\x03\\x01H\\x01".into()
            }]
        );
        assert!(t.stopped());
        assert_eq!(t.counters.records, 0);
        assert!(t.body.is_empty());
    }

    #[test]
    fn a_record_of_exactly_the_maximum_length_is_accepted() {
        let mut t = TlsDirection::new(false);
        let body = vec![0xab; MAX_RECORD_BODY];
        let events = feed_all(&mut t, &[&record(CONTENT_APPLICATION_DATA, &body)]);
        assert_eq!(events, [ProtoKind::TlsFirstApplicationData]);
        assert_eq!(t.counters.application_data_bytes, MAX_RECORD_BODY as u64);
        assert!(!t.stopped());
    }

    #[test]
    fn a_record_longer_than_the_stream_reports_nothing() {
        // A handshake record announcing 1000 bytes of which 10 come, then the stream ends:
        // nothing is complete, so nothing is reported, and only those 10 bytes are held.
        let mut t = TlsDirection::new(true);
        let mut bytes = vec![CONTENT_HANDSHAKE, 3, 1, 0x03, 0xe8];
        bytes.extend_from_slice(&client_hello(&["h2"], "example.com", 0)[..10]);
        let events = feed_all(&mut t, &[&bytes]);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(t.counters.records, 0);
        assert_eq!(t.body.len(), 10);
        assert_eq!(t.body_left, 990);
        // The capture then loses bytes: the walker stops instead of guessing a boundary.
        t.gap();
        let events = feed_all(&mut t, &[&record(CONTENT_ALERT, &[2, 40])]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_handshake_length_claiming_16_mb_is_given_up_at_the_buffer_cap() {
        // ClientHello header claiming 0xffffff bytes, then full records of filler: the
        // message is never complete; at 64 KiB the walker gives up on the hello, frees the
        // buffer, and only counts the records after.
        let mut t = TlsDirection::new(true);
        let mut first = vec![1, 0xff, 0xff, 0xff];
        first.resize(MAX_RECORD_BODY, 0x41);
        let filler = vec![0x41; MAX_RECORD_BODY];
        let mut out = Vec::new();
        t.feed(0, &record(CONTENT_HANDSHAKE, &first), &mut out);
        for _ in 0..10 {
            assert!(t.handshake.len() <= MAX_HANDSHAKE_BUFFER);
            t.feed(0, &record(CONTENT_HANDSHAKE, &filler), &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert!(t.hello_done);
        assert_eq!(t.handshake.capacity(), 0);
        assert_eq!(t.counters.records, 11);
        // A real ClientHello after that is not looked for any more.
        t.feed(
            0,
            &record(CONTENT_HANDSHAKE, &client_hello(&["h2"], "x", 0)),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(!t.stopped());
    }

    #[test]
    fn a_client_hello_split_across_records_and_chunks_is_parsed() {
        let hello = client_hello(&["h2", "http/1.1"], "example.com", 300);
        assert!(hello.len() > 380);
        for fragment in [1, 2, 3, 4, 5, 7, 64, 100, 255, hello.len() - 1, hello.len()] {
            let stream = records(CONTENT_HANDSHAKE, &hello, fragment);
            for chunk in [1, 2, 3, 5, 6, 13, 512, stream.len()] {
                let mut t = TlsDirection::new(true);
                let pieces: Vec<&[u8]> = stream.chunks(chunk).collect();
                let events = feed_all(&mut t, &pieces);
                assert_eq!(
                    events,
                    [expected_hello()],
                    "records of {fragment} bytes, chunks of {chunk}"
                );
                assert_eq!(t.counters.records as usize, hello.len().div_ceil(fragment));
                assert!(t.handshake.is_empty());
            }
        }
    }

    #[test]
    fn a_client_hello_after_another_handshake_message_in_the_same_record_is_parsed() {
        // A HelloRequest (type 0, empty) before the hello, both cut over two records.
        let mut payload = vec![0, 0, 0, 0];
        payload.extend(client_hello(&["h2", "http/1.1"], "example.com", 0));
        let stream = records(CONTENT_HANDSHAKE, &payload, 50);
        let mut t = TlsDirection::new(true);
        assert_eq!(feed_all(&mut t, &[&stream]), [expected_hello()]);
    }

    #[test]
    fn an_alert_after_change_cipher_spec_is_reported_encrypted() {
        let mut t = TlsDirection::new(false);
        // Plaintext alert first (level 2, handshake_failure), then CCS, then an alert record
        // of 26 bytes: AEAD-protected, its content unreadable.
        let mut stream = record(CONTENT_ALERT, &[2, 40]);
        stream.extend(record(CONTENT_CHANGE_CIPHER_SPEC, &[1]));
        stream.extend(record(CONTENT_ALERT, &[0x77; 26]));
        // A 2-byte alert record after the CCS is encrypted too, whatever its bytes say.
        stream.extend(record(CONTENT_ALERT, &[2, 48]));
        let events = feed_all(&mut t, &[&stream]);
        assert_eq!(
            events,
            [
                ProtoKind::TlsAlert {
                    level: Some(2),
                    description: Some(40),
                    encrypted: false,
                    record_len: 2
                },
                ProtoKind::TlsChangeCipherSpec,
                ProtoKind::TlsAlert {
                    level: None,
                    description: None,
                    encrypted: true,
                    record_len: 26
                },
                ProtoKind::TlsAlert {
                    level: None,
                    description: None,
                    encrypted: true,
                    record_len: 2
                },
            ]
        );
    }

    #[test]
    fn non_tls_bytes_after_a_valid_record_are_unrecognized_once_then_the_walker_stops() {
        let mut t = TlsDirection::new(false);
        let mut stream = record(CONTENT_ALERT, &[2, 70]);
        stream.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        let events = feed_all(
            &mut t,
            &[&stream, b"more bytes", &record(CONTENT_ALERT, &[2, 0])],
        );
        assert_eq!(
            events,
            [
                ProtoKind::TlsAlert {
                    level: Some(2),
                    description: Some(70),
                    encrypted: false,
                    record_len: 2
                },
                ProtoKind::Unrecognized {
                    first_bytes: "HTTP/".into()
                },
            ]
        );
        assert!(t.stopped());
        assert_eq!(t.counters.records, 1);
    }

    /// xorshift64 (Marsaglia 2003): fixed seed, same bytes on every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let hello = client_hello(&["h2", "http/1.1"], "example.com", 200);
        let mut unrecognized_total = 0;
        for round in 0..1000 {
            // Half the rounds start with real records (valid framing, random bodies and
            // lengths) so that the walker gets past the first header.
            let mut stream = Vec::new();
            if round % 2 == 0 {
                for _ in 0..rng.below(8) {
                    let ty = [20, 21, 22, 23, 24][rng.below(5)];
                    let body: Vec<u8> = if ty == CONTENT_HANDSHAKE && rng.below(2) == 0 {
                        let cut = rng.below(hello.len());
                        hello[..cut].to_vec()
                    } else {
                        (0..rng.below(300)).map(|_| rng.next() as u8).collect()
                    };
                    stream.extend(record(ty, &body));
                }
            }
            let tail = rng.below(4000);
            stream.extend((0..tail).map(|_| rng.next() as u8));
            // Flip a few bytes anywhere.
            for _ in 0..rng.below(4) {
                if !stream.is_empty() {
                    let i = rng.below(stream.len());
                    stream[i] = rng.next() as u8;
                }
            }
            let mut t = TlsDirection::new(round % 3 != 0);
            let mut out = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(700));
                t.feed(round, &rest[..n], &mut out);
                rest = &rest[n..];
                assert!(t.handshake.len() <= MAX_HANDSHAKE_BUFFER, "round {round}");
                assert!(t.body.len() <= MAX_RECORD_BODY, "round {round}");
            }
            let kinds: Vec<ProtoKind> = out.into_iter().map(|(_, k)| k).collect();
            let n = unrecognized(&kinds);
            assert!(n <= 1, "round {round}: {kinds:?}");
            if n == 1 {
                assert!(t.stopped(), "round {round}");
                assert!(matches!(kinds.last(), Some(ProtoKind::Unrecognized { .. })));
            }
            unrecognized_total += n;
        }
        // The rounds did reach both outcomes: some streams were rejected, some not.
        assert!(
            (1..1000).contains(&unrecognized_total),
            "{unrecognized_total}"
        );
    }

    #[test]
    fn memory_stays_within_the_handshake_cap_plus_one_record() {
        // Handshake records of every size up to the maximum, none completing a message (the
        // first claims 16 MB): after every chunk, the bytes held (joined handshake bytes and
        // the current record's body) stay within 64 KiB plus one record.
        let mut rng = XorShift(42);
        let mut stream = record(CONTENT_HANDSHAKE, &[1, 0xff, 0xff, 0xff]);
        for i in 0..40 {
            let len = if i % 4 == 0 {
                MAX_RECORD_BODY
            } else {
                rng.below(MAX_RECORD_BODY)
            };
            stream.extend(record(CONTENT_HANDSHAKE, &vec![0x41; len]));
        }
        // Then 1 MB of application data: counted, never kept.
        for _ in 0..64 {
            stream.extend(record(CONTENT_APPLICATION_DATA, &vec![0x17; 1 << 14]));
        }
        let mut t = TlsDirection::new(true);
        let mut out = Vec::new();
        let mut peak = 0;
        let mut peak_allocated = 0;
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(5000));
            t.feed(0, &rest[..n], &mut out);
            rest = &rest[n..];
            let held = t.handshake.len() + t.body.len();
            assert!(
                held <= MAX_HANDSHAKE_BUFFER + MAX_RECORD_BODY,
                "{held} bytes held"
            );
            peak = peak.max(t.handshake.len());
            // What is allocated can be more than what is held: Vec grows by doubling, so
            // the buffers' capacity stays below twice the cap.
            let allocated = t.handshake.capacity() + t.body.capacity();
            assert!(
                allocated <= 2 * (MAX_HANDSHAKE_BUFFER + MAX_RECORD_BODY),
                "{allocated} bytes allocated"
            );
            peak_allocated = peak_allocated.max(allocated);
        }
        // On this stream: 60,625 bytes held at most, 109,488 allocated.
        assert!(
            peak > MAX_HANDSHAKE_BUFFER / 2,
            "the cap was approached: {peak}"
        );
        assert!(peak_allocated > peak);
        assert!(
            peak > MAX_HANDSHAKE_BUFFER / 2,
            "the cap was approached: {peak}"
        );
        assert_eq!(t.counters.application_data_records, 64);
        assert_eq!(
            out.into_iter().map(|(_, k)| k).collect::<Vec<_>>(),
            [ProtoKind::TlsFirstApplicationData]
        );
    }
}
