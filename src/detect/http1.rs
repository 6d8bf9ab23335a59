//! HTTP/1.x messages of both directions (RFC 9112): request heads, response heads, and body
//! framing followed to its end, with requests and responses paired in order (keep-alive and
//! pipelining).
//!
//! A message head is buffered until its blank line (at most [`MAX_HEAD`] bytes), then parsed
//! with httparse; bodies are only counted, never copied. Body length per RFC 9112 §6.3:
//! no body for HEAD, 1xx, 204 and 304; chunked transfer coding; Content-Length; otherwise a
//! response runs until the connection closes.

// Input bytes never panic this detector: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::Arc;

use serde::Serialize;

use super::event::{Events, ProtoKind, escape_bytes};

/// Largest message head kept; a longer one is reported and parsing stops.
pub const MAX_HEAD: usize = 64 << 10;
/// Exchanges remembered per connection; later ones are counted only.
const MAX_EXCHANGES: usize = 1024;
const MAX_HEADERS: usize = 128;
/// Request targets are kept up to this many characters.
const MAX_TARGET: usize = 1024;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    None,
    ContentLength(u64),
    Chunked,
    UntilClose,
}

/// One request and its response, as far as they got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// None for a response that answered no request we saw. The method and target are
    /// shared with the request's event.
    pub method: Option<Cow<'static, str>>,
    pub target: Option<Arc<str>>,
    pub request_ns: Option<i64>,
    pub response_start_ns: Option<i64>,
    pub response_head_ns: Option<i64>,
    pub status: Option<u16>,
    pub framing: Option<Framing>,
    pub body_bytes: u64,
    pub response_end_ns: Option<i64>,
    pub connection_close: bool,
}

impl Exchange {
    fn new() -> Self {
        Exchange {
            method: None,
            target: None,
            request_ns: None,
            response_start_ns: None,
            response_head_ns: None,
            status: None,
            framing: None,
            body_bytes: 0,
            response_end_ns: None,
            connection_close: false,
        }
    }
}

/// Where a body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    /// Chunked: reading a size line (its length so far), chunk data, the CRLF after the data,
    /// or trailer lines (length of the current line).
    ChunkSize(usize),
    ChunkData(u64),
    ChunkCrlf(u8),
    Trailer(usize),
    UntilClose,
}

/// What one side is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
    /// After a 101 response or a CONNECT: the bytes are another protocol's.
    Switched,
    Stopped,
}

/// One direction's parser.
struct Side {
    state: State,
    head: Vec<u8>,
    body_bytes: u64,
}

impl Side {
    fn new() -> Self {
        Side {
            state: State::Head,
            head: Vec::new(),
            body_bytes: 0,
        }
    }
}

/// What the response parser must know of the request it answers (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingMethod {
    /// The response has no body.
    Head,
    /// A 2xx response switches the connection to a tunnel.
    Connect,
    Other,
}

impl PendingMethod {
    fn of(method: &str) -> Self {
        match method {
            "HEAD" => PendingMethod::Head,
            "CONNECT" => PendingMethod::Connect,
            _ => PendingMethod::Other,
        }
    }
}

/// The methods of requests not yet answered, oldest first. The oldest is kept inline: a
/// connection rarely has more than one request outstanding, and a queue's buffer would be
/// one more allocation for each.
#[derive(Default)]
struct PendingMethods {
    /// None only when `rest` is empty too.
    first: Option<PendingMethod>,
    rest: VecDeque<PendingMethod>,
}

impl PendingMethods {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push_back(&mut self, m: PendingMethod) {
        if self.first.is_none() {
            self.first = Some(m);
        } else {
            self.rest.push_back(m);
        }
    }

    fn pop_front(&mut self) -> Option<PendingMethod> {
        let m = self.first.take();
        self.first = self.rest.pop_front();
        m
    }
}

/// The method as kept: the standard ones (RFC 9110 §9) as static text, without allocating.
fn method_text(method: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|&m| m == method)
        .map_or_else(|| Cow::Owned(method.to_string()), Cow::Borrowed)
}

/// What the client's bytes turned into, for the caller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    None,
    /// A 101 answered an `Upgrade: h2c`: both sides speak HTTP/2 from the next byte on.
    H2c,
}

/// Both directions of an HTTP/1 connection.
pub struct Http1 {
    client: Side,
    server: Side,
    pub exchanges: Vec<Exchange>,
    pub exchanges_dropped: u64,
    /// Index in `exchanges` of the next response expected.
    next_response: usize,
    /// Methods of requests not yet answered, for HEAD and CONNECT.
    pending_methods: PendingMethods,
    upgrade_h2c_requested: bool,
    /// Client bytes of the HTTP/2 preface held while it was incomplete, for the HTTP/2
    /// parser that takes over.
    held_preface: Vec<u8>,
}

/// The first line of the HTTP/2 preface (RFC 9113 §3.4).
const PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

impl Http1 {
    /// Reads a word of the parser and of its first and last exchange (see
    /// [`crate::flow::connection::StreamHandler::warm`]).
    pub(crate) fn warm(&self) -> u64 {
        let first = self.exchanges.first().map_or(0, |e| e.body_bytes);
        let last = self.exchanges.last().map_or(0, |e| e.body_bytes);
        first ^ last ^ self.next_response as u64 ^ self.exchanges_dropped
    }
}

/// Exchanges a reused [`Http1`] keeps room for; a longer list is freed rather than kept.
const REUSED_EXCHANGES: usize = 4;

impl Http1 {
    /// Empties the parser for another connection, keeping its exchange list when that is
    /// short; whether it is worth keeping at all.
    pub(crate) fn reuse(&mut self) -> bool {
        let mut exchanges = std::mem::take(&mut self.exchanges);
        exchanges.clear();
        if exchanges.capacity() > REUSED_EXCHANGES {
            return false;
        }
        *self = Http1 {
            exchanges,
            ..Http1::default()
        };
        true
    }
}

impl Default for Http1 {
    fn default() -> Self {
        Http1 {
            client: Side::new(),
            server: Side::new(),
            exchanges: Vec::new(),
            exchanges_dropped: 0,
            next_response: 0,
            pending_methods: PendingMethods::default(),
            upgrade_h2c_requested: false,
            held_preface: Vec::new(),
        }
    }
}

/// The header values this parser acts on, found in one pass over the head (the first of
/// each name counts).
#[derive(Default)]
struct KnownHeaders<'a> {
    connection: Option<&'a [u8]>,
    keep_alive: Option<&'a [u8]>,
    transfer_encoding: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    upgrade: Option<&'a [u8]>,
}

impl<'a> KnownHeaders<'a> {
    fn of(headers: &[httparse::Header<'a>]) -> Self {
        let mut known = KnownHeaders::default();
        for h in headers {
            let slot = match h.name.len() {
                10 if h.name.eq_ignore_ascii_case("connection") => &mut known.connection,
                10 if h.name.eq_ignore_ascii_case("keep-alive") => &mut known.keep_alive,
                17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                    &mut known.transfer_encoding
                }
                14 if h.name.eq_ignore_ascii_case("content-length") => &mut known.content_length,
                7 if h.name.eq_ignore_ascii_case("upgrade") => &mut known.upgrade,
                _ => continue,
            };
            slot.get_or_insert(h.value);
        }
        known
    }

    fn content_length(&self) -> Option<u64> {
        std::str::from_utf8(self.content_length?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The `timeout=` parameter of Keep-Alive (seconds).
    fn keep_alive_timeout(&self) -> Option<u32> {
        self.keep_alive?.split(|&b| b == b',').find_map(|p| {
            let t = p.trim_ascii().strip_prefix(b"timeout=")?;
            std::str::from_utf8(t).ok()?.trim().parse().ok()
        })
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value.is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The version text of a parsed head (httparse accepts HTTP/1.0 and HTTP/1.1 only).
fn version_text(minor: Option<u8>) -> &'static str {
    match minor {
        Some(0) => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// The status code of a complete status line ("HTTP/1.1 200 OK\r\n") at the start of `head`.
fn status_of_line(head: &[u8]) -> Option<u16> {
    let line_end = memchr::memmem::find(head, b"\r\n")?;
    let line = head.get(..line_end)?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Whether the head httparse found complete at `end` is the one [`head_end`] delimits: it
/// ends with CRLF CRLF and does not start with the empty lines httparse skips. (Any CRLF
/// CRLF before `end` would have been an empty line that ended the head there.)
fn ends_at_first_blank_line(bytes: &[u8], end: usize) -> bool {
    let head = bytes.get(..end).unwrap_or_default();
    head.ends_with(b"\r\n\r\n") && !matches!(head.first(), Some(b'\r' | b'\n'))
}

/// Finds the end of a message head (after the blank line); searches only the new bytes.
fn head_end(buf: &[u8], searched_from: usize) -> Option<usize> {
    static BLANK_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    let start = searched_from.saturating_sub(3);
    BLANK_LINE.find(buf.get(start..)?).map(|p| start + p + 4)
}

impl Http1 {
    /// Whether the client side's next bytes start a new request (so another protocol could
    /// take over at this boundary, such as the HTTP/2 preface after an h2c upgrade).
    pub fn client_at_message_start(&self) -> bool {
        self.client.state == State::Head && self.client.head.is_empty()
    }

    /// The preface bytes held before the client switched to HTTP/2; they come before the
    /// rest of the chunk that completed the switch.
    pub fn take_held_preface(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held_preface)
    }

    /// Feeds client bytes. Returns what the caller must switch to (the HTTP/2 preface after
    /// an h2c upgrade request) and how many bytes this parser consumed before it.
    pub fn feed_client(
        &mut self,
        ts_ns: i64,
        mut bytes: &[u8],
        out: &mut impl Events,
    ) -> (Switch, usize) {
        let total = bytes.len();
        while !bytes.is_empty() {
            match self.client.state {
                State::Stopped => return (Switch::None, total),
                State::Switched => return (Switch::None, total - bytes.len()),
                State::Body(b) => {
                    let (used, done) = consume_body(&mut self.client, b, bytes);
                    bytes = bytes.get(used..).unwrap_or_default();
                    if done {
                        out.push((
                            ts_ns,
                            ProtoKind::HttpBodyEnd {
                                bytes: self.client.body_bytes,
                            },
                        ));
                        self.client.state = State::Head;
                    }
                }
                State::Head => {
                    // The HTTP/2 preface at a message boundary (after an h2c upgrade), even
                    // when a segment boundary cuts it: hold a partial match until it is
                    // complete or no longer matches.
                    // The held bytes and the new ones are compared where they lie: every
                    // request passes here.
                    let held = self.client.head.len();
                    if let Some(preface_rest) = PREFACE_LINE.get(held..)
                        && PREFACE_LINE.starts_with(&self.client.head)
                        && !preface_rest.is_empty()
                    {
                        let take = preface_rest.len().min(bytes.len());
                        let (taken, rest) = bytes.split_at(take);
                        if preface_rest.starts_with(taken) {
                            if take == preface_rest.len() {
                                self.client.state = State::Switched;
                                self.held_preface = std::mem::take(&mut self.client.head);
                                return (Switch::H2c, total - bytes.len());
                            }
                            self.client.head.extend_from_slice(taken);
                            bytes = rest;
                            continue;
                        }
                    }
                    let used = self.take_head(ts_ns, bytes, true, out);
                    bytes = bytes.get(used..).unwrap_or_default();
                }
            }
        }
        (Switch::None, total)
    }

    /// Feeds server bytes; returns what the caller must switch to, and how many bytes this
    /// parser consumed.
    pub fn feed_server(
        &mut self,
        ts_ns: i64,
        mut bytes: &[u8],
        out: &mut impl Events,
    ) -> (Switch, usize) {
        let total = bytes.len();
        while !bytes.is_empty() {
            match self.server.state {
                State::Stopped => return (Switch::None, total),
                State::Switched => {
                    let switch = if self.upgrade_h2c_requested {
                        Switch::H2c
                    } else {
                        Switch::None
                    };
                    return (switch, total - bytes.len());
                }
                State::Body(b) => {
                    let (used, done) = consume_body(&mut self.server, b, bytes);
                    bytes = bytes.get(used..).unwrap_or_default();
                    if let Some(x) = self.exchanges.get_mut(self.next_response.wrapping_sub(1)) {
                        x.body_bytes = self.server.body_bytes;
                    }
                    if done {
                        self.end_response(ts_ns, out);
                    }
                }
                State::Head => {
                    if self.server.head.is_empty() {
                        self.response_started(ts_ns, out);
                    }
                    let used = self.take_head(ts_ns, bytes, false, out);
                    bytes = bytes.get(used..).unwrap_or_default();
                }
            }
        }
        let switch = if self.server.state == State::Switched && self.upgrade_h2c_requested {
            Switch::H2c
        } else {
            Switch::None
        };
        (switch, total)
    }

    /// The connection closed (FIN from the server): a body that runs until the close ends
    /// here.
    pub fn server_closed(&mut self, ts_ns: i64, out: &mut impl Events) {
        if self.server.state == State::Body(Body::UntilClose) {
            self.end_response(ts_ns, out);
        }
    }

    /// Bytes of one side were not captured. Inside a body of known length the gap is just
    /// skipped; anywhere else the message boundaries are lost and parsing of that side stops.
    pub fn gap(&mut self, from_client: bool, len: u64) {
        let side = if from_client {
            &mut self.client
        } else {
            &mut self.server
        };
        side.state = match side.state {
            State::Body(Body::Length(left)) if len < left => State::Body(Body::Length(left - len)),
            State::Body(Body::ChunkData(left)) if len < left => {
                State::Body(Body::ChunkData(left - len))
            }
            State::Body(Body::UntilClose) => State::Body(Body::UntilClose),
            State::Switched => State::Switched,
            _ => State::Stopped,
        };
        side.body_bytes += len;
    }

    fn response_started(&mut self, ts_ns: i64, out: &mut impl Events) {
        out.push((ts_ns, ProtoKind::HttpResponseStart));
        if self.next_response >= self.exchanges.len() {
            // A response to no request we saw (the request was before the capture, or this
            // answers bytes that were no HTTP request at all).
            self.push_exchange(Exchange::new());
        }
        if let Some(x) = self.exchanges.get_mut(self.next_response) {
            x.response_start_ns.get_or_insert(ts_ns);
        }
    }

    fn end_response(&mut self, ts_ns: i64, out: &mut impl Events) {
        out.push((
            ts_ns,
            ProtoKind::HttpBodyEnd {
                bytes: self.server.body_bytes,
            },
        ));
        if let Some(x) = self.exchanges.get_mut(self.next_response.wrapping_sub(1)) {
            x.response_end_ns = Some(ts_ns);
            x.body_bytes = self.server.body_bytes;
        }
        self.server.state = State::Head;
    }

    fn push_exchange(&mut self, x: Exchange) {
        if self.exchanges.len() < MAX_EXCHANGES {
            // Room for one at first: most connections carry a single exchange, and the
            // default first growth (four) would hold 400 bytes of nothing until it ends.
            if self.exchanges.capacity() == 0 {
                self.exchanges.reserve_exact(1);
            }
            self.exchanges.push(x);
        } else {
            self.exchanges_dropped += 1;
        }
    }

    /// The status line alone already tells the status, even if the rest of the head never
    /// arrives.
    fn note_status_line(&mut self, head: &[u8]) {
        let status = status_of_line(head);
        if let (Some(status), Some(x)) = (status, self.exchanges.get_mut(self.next_response)) {
            x.status.get_or_insert(status);
        }
    }

    /// Accumulates a message head; parses it once complete. Returns the bytes used.
    fn take_head(
        &mut self,
        ts_ns: i64,
        bytes: &[u8],
        client: bool,
        out: &mut impl Events,
    ) -> usize {
        let within_cap = bytes.get(..MAX_HEAD).unwrap_or(bytes);
        let nothing_held = if client {
            self.client.head.is_empty()
        } else {
            self.server.head.is_empty()
        };
        if nothing_held {
            // The usual case: the whole head arrived in one chunk and is parsed where it lies,
            // httparse finding its end. Anything else (a head cut short, one httparse rejects,
            // one that ends other than at its first CRLF CRLF) takes the general way below.
            let parsed = if client {
                self.request_in_place(ts_ns, within_cap, out)
            } else {
                self.response_in_place(ts_ns, within_cap, out)
            };
            if let Some(end) = parsed {
                return end;
            }
        }
        let side = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        let before = side.head.len();
        let room = MAX_HEAD - before;
        let (chunk, _) = bytes.split_at(bytes.len().min(room));
        side.head.extend_from_slice(chunk);
        if !client {
            let head = std::mem::take(&mut self.server.head);
            self.note_status_line(&head);
            self.server.head = head;
        }
        let side = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        let Some(end) = head_end(&side.head, before) else {
            if side.head.len() >= MAX_HEAD {
                out.push((
                    ts_ns,
                    ProtoKind::HttpInvalid {
                        first_bytes: format!(
                            "message head longer than {MAX_HEAD} bytes: {}",
                            escape_bytes(&side.head, 48)
                        ),
                    },
                ));
                side.state = State::Stopped;
                side.head = Vec::new();
            }
            return chunk.len();
        };
        let used = end - before;
        let head = std::mem::take(&mut side.head);
        let head = head.get(..end).unwrap_or_default();
        if client {
            self.parse_request(ts_ns, head, out);
        } else {
            self.parse_response(ts_ns, head, out);
        }
        used
    }

    /// A request head at the start of `bytes`, parsed if complete there and delimited as
    /// [`head_end`] would delimit it; returns its length, or None (nothing done) otherwise.
    fn request_in_place(
        &mut self,
        ts_ns: i64,
        bytes: &[u8],
        out: &mut impl Events,
    ) -> Option<usize> {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(end)) if ends_at_first_blank_line(bytes, end) => {
                self.request_parsed(ts_ns, &req, out);
                Some(end)
            }
            _ => None,
        }
    }

    fn parse_request(&mut self, ts_ns: i64, head: &[u8], out: &mut impl Events) {
        // Uninitialised slots: zeroing 128 headers (4 KiB) per message cost more than
        // parsing the head of a short request.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        if !matches!(
            req.parse_with_uninit_headers(head, &mut headers),
            Ok(httparse::Status::Complete(_))
        ) {
            out.push((
                ts_ns,
                ProtoKind::HttpInvalid {
                    first_bytes: escape_bytes(head, 64),
                },
            ));
            self.client.state = State::Stopped;
            return;
        }
        self.request_parsed(ts_ns, &req, out);
    }

    fn request_parsed(
        &mut self,
        ts_ns: i64,
        req: &httparse::Request<'_, '_>,
        out: &mut impl Events,
    ) {
        let method = method_text(req.method.unwrap_or_default());
        let path = req.path.unwrap_or_default();
        let target: Arc<str> = if path.len() <= MAX_TARGET {
            Arc::from(path)
        } else {
            path.chars().take(MAX_TARGET).collect::<String>().into()
        };
        let version = version_text(req.version);
        let known = KnownHeaders::of(req.headers);
        if has_token(known.upgrade, "h2c") {
            self.upgrade_h2c_requested = true;
        }
        let framing = if has_token(known.transfer_encoding, "chunked") {
            Some(Body::ChunkSize(0))
        } else {
            known.content_length().filter(|&n| n > 0).map(Body::Length)
        };
        let pending = PendingMethod::of(&method);
        self.pending_methods.push_back(pending);
        if self.pending_methods.len() > MAX_EXCHANGES {
            self.pending_methods.pop_front();
        }
        let mut x = Exchange::new();
        x.method = Some(method.clone());
        x.target = Some(target.clone());
        x.request_ns = Some(ts_ns);
        self.push_exchange(x);
        out.push((
            ts_ns,
            ProtoKind::HttpRequest {
                method,
                target,
                version,
            },
        ));
        self.client.body_bytes = 0;
        self.client.state = match framing {
            Some(b) => State::Body(b),
            None if pending == PendingMethod::Connect => State::Switched,
            None => State::Head,
        };
    }

    /// [`Self::request_in_place`] for a response head.
    fn response_in_place(
        &mut self,
        ts_ns: i64,
        bytes: &[u8],
        out: &mut impl Events,
    ) -> Option<usize> {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            bytes,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(end)) if ends_at_first_blank_line(bytes, end) => {
                let head = bytes.get(..end).unwrap_or_default();
                self.response_parsed(ts_ns, &resp, head, out);
                Some(end)
            }
            _ => None,
        }
    }

    fn parse_response(&mut self, ts_ns: i64, head: &[u8], out: &mut impl Events) {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        if !matches!(
            httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                head,
                &mut headers
            ),
            Ok(httparse::Status::Complete(_))
        ) {
            // What the status line says still counts (as for a head cut short).
            self.note_status_line(head);
            out.push((
                ts_ns,
                ProtoKind::HttpInvalid {
                    first_bytes: escape_bytes(head, 64),
                },
            ));
            self.server.state = State::Stopped;
            return;
        }
        self.response_parsed(ts_ns, &resp, head, out);
    }

    /// Acts on a parsed response head; `head` is its bytes.
    fn response_parsed(
        &mut self,
        ts_ns: i64,
        resp: &httparse::Response<'_, '_>,
        head: &[u8],
        out: &mut impl Events,
    ) {
        let status = resp.code.unwrap_or(0);
        let known = KnownHeaders::of(resp.headers);
        let connection_close = has_token(known.connection, "close");
        let keep_alive_timeout = known.keep_alive_timeout();
        let chunked = has_token(known.transfer_encoding, "chunked");
        let length = known.content_length();
        let upgrade = known.upgrade.map(|v| escape_bytes(v, 64));
        out.push((
            ts_ns,
            ProtoKind::HttpResponseHead {
                status,
                version: version_text(resp.version),
                connection_close,
                keep_alive_timeout,
                content_length: length,
                chunked,
                upgrade: upgrade.clone(),
            },
        ));
        if (100..200).contains(&status) && status != 101 {
            // An interim response: the final one follows for the same request, whose status
            // replaces this one.
            self.note_status_line(head);
            return;
        }
        let method = self.pending_methods.pop_front();
        let connect = method == Some(PendingMethod::Connect);
        let framing = if method == Some(PendingMethod::Head) || status == 204 || status == 304 {
            Framing::None
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::ContentLength(n)
        } else if status == 101 || (connect && (200..300).contains(&status)) {
            Framing::None
        } else {
            Framing::UntilClose
        };
        if let Some(x) = self.exchanges.get_mut(self.next_response) {
            x.response_head_ns = Some(ts_ns);
            x.status = Some(status);
            x.framing = Some(framing);
            x.connection_close = connection_close;
        }
        self.next_response += 1;
        self.server.body_bytes = 0;
        self.server.state = match framing {
            _ if status == 101 => State::Switched,
            _ if connect && (200..300).contains(&status) => State::Switched,
            Framing::None | Framing::ContentLength(0) => {
                if let Some(x) = self.exchanges.get_mut(self.next_response - 1) {
                    x.response_end_ns = Some(ts_ns);
                }
                State::Head
            }
            Framing::ContentLength(n) => State::Body(Body::Length(n)),
            Framing::Chunked => State::Body(Body::ChunkSize(0)),
            Framing::UntilClose => State::Body(Body::UntilClose),
        };
        if status == 101 && upgrade.is_some_and(|u| !u.eq_ignore_ascii_case("h2c")) {
            // Upgraded to something we do not follow (WebSocket...): nothing to switch to.
            self.upgrade_h2c_requested = false;
        }
    }
}

/// Consumes body bytes; returns (bytes used, whether the body ended).
fn consume_body(side: &mut Side, body: Body, bytes: &[u8]) -> (usize, bool) {
    let mut state = body;
    let mut used = 0;
    // While bytes are left: `first` is the next of them, for the size and trailer lines.
    while let Some(rest @ [first, ..]) = bytes.get(used..) {
        match state {
            Body::UntilClose => {
                side.body_bytes += rest.len() as u64;
                used = bytes.len();
            }
            Body::Length(left) => {
                let n = (rest.len() as u64).min(left);
                side.body_bytes += n;
                used += n as usize;
                state = Body::Length(left - n);
                if left - n == 0 {
                    side.state = State::Head;
                    return (used, true);
                }
            }
            Body::ChunkData(left) => {
                let n = (rest.len() as u64).min(left);
                side.body_bytes += n;
                used += n as usize;
                state = if left - n == 0 {
                    Body::ChunkCrlf(2)
                } else {
                    Body::ChunkData(left - n)
                };
            }
            Body::ChunkCrlf(left) => {
                used += 1;
                state = if left <= 1 {
                    Body::ChunkSize(0)
                } else {
                    Body::ChunkCrlf(left - 1)
                };
            }
            Body::ChunkSize(line_len) => {
                // The size line is parsed as it streams by: hex digits up to ';' or CR, then
                // up to LF. Its value is accumulated in the body_bytes-free `pending_size`.
                let b = *first;
                used += 1;
                if b == b'\n' {
                    let size = side_chunk_size(side);
                    state = if size == 0 {
                        Body::Trailer(0)
                    } else {
                        Body::ChunkData(size)
                    };
                } else if line_len > 1024 {
                    side.state = State::Stopped;
                    return (used, false);
                } else {
                    push_size_digit(side, b);
                    state = Body::ChunkSize(line_len + 1);
                }
            }
            Body::Trailer(line_len) => {
                let b = *first;
                used += 1;
                if b == b'\n' {
                    if line_len == 0 {
                        side.state = State::Head;
                        return (used, true);
                    }
                    state = Body::Trailer(0);
                } else if b != b'\r' {
                    if line_len > 8192 {
                        side.state = State::Stopped;
                        return (used, false);
                    }
                    state = Body::Trailer(line_len + 1);
                }
            }
        }
    }
    side.state = State::Body(state);
    (used, false)
}

/// The chunk size line being read lives in `head` (unused during a body), bounded by the
/// 1024-byte line limit.
fn push_size_digit(side: &mut Side, b: u8) {
    side.head.push(b);
}

fn side_chunk_size(side: &mut Side) -> u64 {
    let line = std::mem::take(&mut side.head);
    let text = String::from_utf8_lossy(&line);
    let digits = text.split(';').next().unwrap_or("").trim();
    // A size that does not parse ends the chunked body as if it were the last chunk; the
    // exchange is then reported as it was seen.
    u64::from_str_radix(digits, 16).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &[u8], server: &[u8]) -> (Http1, Vec<ProtoKind>) {
        let mut h = Http1::default();
        let mut out = Vec::new();
        h.feed_client(1, client, &mut out);
        h.feed_server(2, server, &mut out);
        (h, out.into_iter().map(|(_, k)| k).collect())
    }

    #[test]
    fn keep_alive_exchanges_pair_in_order_with_every_framing() {
        let client = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /d HTTP/1.1\r\n\r\n";
        let server = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5, max=100\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: 1\r\n\r\nHTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil close";
        let (mut h, events) = run(client, server);
        assert_eq!(h.exchanges.len(), 4);
        let statuses: Vec<_> = h.exchanges.iter().map(|x| x.status).collect();
        assert_eq!(statuses, vec![Some(200), Some(200), Some(201), Some(200)]);
        assert_eq!(h.exchanges[0].body_bytes, 5);
        assert!(h.exchanges[1].response_end_ns.is_some(), "HEAD has no body");
        assert_eq!(h.exchanges[2].body_bytes, 9);
        assert_eq!(h.exchanges[2].framing, Some(Framing::Chunked));
        assert!(h.exchanges[3].response_end_ns.is_none());
        let mut out = Vec::new();
        h.server_closed(3, &mut out);
        assert_eq!(h.exchanges[3].body_bytes, 11);
        assert_eq!(h.exchanges[3].response_end_ns, Some(3));
        assert!(events.iter().any(|e| matches!(
            e,
            ProtoKind::HttpResponseHead {
                keep_alive_timeout: Some(5),
                ..
            }
        )));
    }

    #[test]
    fn cut_at_every_byte_gives_the_same_exchanges() {
        let client = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let server = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let (whole, whole_events) = run(client, server);
        for cut in 0..server.len() {
            let mut h = Http1::default();
            let mut out = Vec::new();
            for piece in client.chunks(cut.max(1)) {
                h.feed_client(1, piece, &mut out);
            }
            h.feed_server(2, &server[..cut], &mut out);
            h.feed_server(2, &server[cut..], &mut out);
            assert_eq!(h.exchanges, whole.exchanges, "cut at {cut}");
            let kinds: Vec<_> = out.into_iter().map(|(_, k)| k).collect();
            assert_eq!(kinds, whole_events, "cut at {cut}");
        }
        assert_eq!(whole.exchanges[0].body_bytes, 26);
        assert_eq!(whole.exchanges[1].status, Some(404));
    }

    #[test]
    fn garbage_and_huge_heads_stop_without_panic() {
        let (h, events) = run(
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 not http at all\r\n\r\n",
        );
        assert!(matches!(events.last(), Some(ProtoKind::HttpInvalid { .. })));
        assert_eq!(h.exchanges[0].status, None);
        let mut h = Http1::default();
        let mut out = Vec::new();
        let big = vec![b'a'; 100_000];
        h.feed_client(1, b"GET / HTTP/1.1\r\nX: ", &mut out);
        h.feed_client(1, &big, &mut out);
        assert!(matches!(
            out.last(),
            Some((_, ProtoKind::HttpInvalid { .. }))
        ));
        assert!(h.client.head.capacity() <= 2 * MAX_HEAD);
    }

    #[test]
    fn h2c_upgrade_switches_both_sides() {
        let mut h = Http1::default();
        let mut out = Vec::new();
        let (switch, used) = h.feed_client(1, b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &mut out);
        assert_eq!((switch, used), (Switch::H2c, 111));
        let server = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        let (switch, used) = h.feed_server(2, server, &mut out);
        assert_eq!(switch, Switch::H2c);
        assert_eq!(used, server.len() - 9);
    }
}
