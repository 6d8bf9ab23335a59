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
            if self.header_len < 5 {
                let take = (5 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == 5 {
                    self.start_record(out, ts_ns);
                }
                continue;
            }
            let take = self.body_left.min(bytes.len());
            if self.keep_body {
                self.body.extend_from_slice(&bytes[..take]);
            }
            self.body_left -= take;
            bytes = &bytes[take..];
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
