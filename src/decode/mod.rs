//! Stage 2: frames -> IP/TCP views.
//!
//! Input: a [`Frame`] from the capture stage. Output: a [`Decoded`] value that borrows the
//! frame's bytes (or the reassembly buffer, for a datagram that arrived in IP fragments).
//!
//! Link types: Ethernet with up to three 802.1Q/802.1ad tags, Linux cooked SLL and SLL2, raw
//! IPv4/IPv6 (101, 228, 229 and the old 12 and 14), BSD null/loopback in both byte orders.
//! Slicing is etherparse's lax mode, so a packet cut by the snaplen still yields its headers
//! and the payload bytes present; [`TcpPacket::payload_len`] keeps the length on the wire, so
//! the bytes the capture lost are known. Anything else is counted, never an error.
//!
//! Invariant: no heap allocation per packet, except to reassemble fragments.

// Input bytes never panic this stage: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod defrag;
mod link;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice};
use etherparse::{Ipv4HeaderSlice, Ipv6ExtensionSlice, Ipv6HeaderSlice, err::Layer as EpLayer};

pub use defrag::{Defragmenter, FRAGMENT_TIMEOUT_NS, Fragment, FragmentKey, Reassembly};
pub use link::{LinkPayload, strip_link};

use crate::capture::Frame;

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

/// TCP header flags, as the low 8 bits of the flags field (CWR..FIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// A TCP segment with the IP facts the flow engine needs.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<'a> {
    pub ts_ns: i64,
    pub ip: IpVersion,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// IPv4 TTL or IPv6 hop limit: a segment whose TTL differs from its side's others was
    /// probably sent by a middlebox.
    pub ttl: u8,
    /// The raw TCP options (MSS, window scale, SACK, timestamps).
    pub options: &'a [u8],
    /// The payload bytes the capture kept.
    pub payload: &'a [u8],
    /// The payload length on the wire, from the IP length fields.
    pub payload_len: u32,
    /// The segment arrived in IP fragments and was reassembled.
    pub reassembled: bool,
    /// The length on the wire of the frame that carried (or completed) the segment.
    pub frame_len: u32,
    /// [`crate::flow::reassembly::fingerprint`] of `payload`, when it was made where the
    /// bytes were read (by the thread that decoded a packet it hands to another); `None`: the
    /// connection engine makes it if it needs it.
    pub payload_fingerprint: Option<u64>,
}

impl TcpPacket<'_> {
    /// Payload bytes that were on the wire but not in the capture (snaplen cut).
    pub fn bytes_missing(&self) -> u32 {
        self.payload_len.saturating_sub(self.payload.len() as u32)
    }
}

impl<'a> TcpPacket<'a> {
    /// A segment between two ports of 127.0.0.1 at `ts_ns`, as Ethernet and IPv4 without
    /// options would frame it: for tests that build segments by hand.
    #[doc(hidden)]
    pub fn loopback(
        ts_ns: i64,
        (src_port, dst_port): (u16, u16),
        flags: u8,
        (seq, ack): (u32, u32),
        payload: &'a [u8],
    ) -> Self {
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        TcpPacket {
            ts_ns,
            ip: IpVersion::V4,
            src: ip,
            dst: ip,
            src_port,
            dst_port,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 512,
            ttl: 64,
            options: &[],
            payload,
            payload_len: payload.len() as u32,
            reassembled: false,
            frame_len: 54 + payload.len() as u32,
            payload_fingerprint: None,
        }
    }
}

/// Where in a packet decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// The header that could not be read, e.g. "IPv4 header", "TCP header".
    pub layer: &'static str,
    /// Whether the header was cut by the snaplen (as opposed to holding impossible values).
    pub truncated: bool,
}

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy)]
pub enum Decoded<'a> {
    Tcp(TcpPacket<'a>),
    Udp {
        ip: IpVersion,
    },
    /// An IP packet of another protocol (ICMP, SCTP, ...).
    OtherIp {
        ip: IpVersion,
        protocol: u8,
    },
    /// A frame that carries no IP (ARP, LLDP, ...).
    NonIp {
        ether_type: u16,
    },
    /// An IP fragment kept until its datagram is complete.
    FragmentHeld {
        ip: IpVersion,
    },
    /// An IP fragment left to another decoder, from a decoder made with
    /// [`Decoder::deferring_fragments`]: the one that reassembles the input's fragments in
    /// capture order, when several threads decode parts of one input.
    FragmentDeferred {
        ip: IpVersion,
    },
    /// An IP fragment dropped by reassembly (overlap, impossible offsets, caps).
    FragmentDropped {
        ip: IpVersion,
        why: &'static str,
    },
    /// A link type this decoder does not read.
    UnsupportedLink,
    /// Headers that could not be read: cut too short, or lying.
    Malformed {
        ip: Option<IpVersion>,
        error: DecodeError,
    },
}

/// Decodes frames; keeps the fragment reassembly state of one stream of frames.
#[derive(Default)]
pub struct Decoder {
    defrag: Defragmenter,
    /// Fragments are returned as [`Decoded::FragmentDeferred`] instead of reassembled.
    defer_fragments: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a part of an input that another decoder reassembles the fragments of:
    /// it returns every IP fragment as [`Decoded::FragmentDeferred`] and keeps no state.
    pub fn deferring_fragments() -> Self {
        Decoder {
            defer_fragments: true,
            ..Self::default()
        }
    }

    /// Datagrams whose fragments were dropped by the timeout or the caps.
    pub fn fragments_expired(&self) -> u64 {
        self.defrag.expired
    }

    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Decoded<'a> {
        let link = strip_link(frame.link_type, frame.data);
        // The common case, a whole TCP segment in plain IPv4 or IPv6 right after the link
        // header, skips the general slicing (four times the cost on IPv6, which walks its
        // extension headers).
        let ip = match link {
            LinkPayload::Ethernet(bytes) => match bytes.get(12..14) {
                Some([0x08, 0x00]) => bytes.get(14..).map(|b| (0x0800, b)),
                Some([0x86, 0xdd]) => bytes.get(14..).map(|b| (0x86dd, b)),
                _ => None,
            },
            LinkPayload::EtherType(t @ (0x0800 | 0x86dd), bytes) => Some((t, bytes)),
            _ => None,
        };
        let whole = ip.and_then(|(t, bytes)| match t {
            0x0800 => whole_ipv4_tcp(frame, bytes),
            _ => whole_ipv6_tcp(frame, bytes),
        });
        if let Some(d) = whole {
            return d;
        }
        let sliced = match link {
            LinkPayload::Ethernet(bytes) => match LaxSlicedPacket::from_ethernet(bytes) {
                Ok(p) => p,
                Err(_) => return malformed(None, "Ethernet header", true),
            },
            LinkPayload::EtherType(t, bytes) => {
                LaxSlicedPacket::from_ether_type(EtherType(t), bytes)
            }
            LinkPayload::NonIp(t) => return Decoded::NonIp { ether_type: t },
            LinkPayload::TooShort(layer) => return malformed(None, layer, true),
            LinkPayload::Unsupported => return Decoded::UnsupportedLink,
        };
        self.decode_sliced(frame, sliced)
    }

    fn decode_sliced<'a>(&'a mut self, frame: &Frame<'a>, p: LaxSlicedPacket<'a>) -> Decoded<'a> {
        let cut = frame.bytes_cut();
        match &p.net {
            None => {
                let ether_type = p.ether_payload().map(|e| e.ether_type.0).unwrap_or(0);
                match p.stop_err {
                    Some((ref e, layer)) if is_ip_ether_type(ether_type) || ether_type == 0 => {
                        malformed(None, layer_name(layer), is_len_error(e))
                    }
                    _ => Decoded::NonIp { ether_type },
                }
            }
            Some(LaxNetSlice::Arp(_)) => Decoded::NonIp { ether_type: 0x0806 },
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                // Only 0 is the TSO case below; any other total length shorter than the
                // header itself is a lying header (RFC 791 §3.1: it counts the header), and
                // the packet's bytes cannot be trusted to be what it claims.
                if h.total_len() != 0 && u32::from(h.total_len()) < u32::from(h.ihl()) * 4 {
                    return malformed(Some(IpVersion::V4), "IPv4 header", false);
                }
                let payload = v4.payload();
                // A total length of 0 is what TSO leaves in sender-side captures: the
                // captured length (plus what the snaplen cut) is the truth then.
                let declared_payload = if h.total_len() != 0 {
                    u32::from(h.total_len()).saturating_sub(u32::from(h.ihl()) * 4)
                } else {
                    payload.payload.len() as u32 + cut
                };
                let ip = IpHeaderFacts::v4(&h, payload.ip_number, frame, declared_payload);
                if v4.is_payload_fragmented() {
                    let frag = Fragment {
                        key: FragmentKey {
                            src: ip.src,
                            dst: ip.dst,
                            protocol: ip.protocol,
                            id: u32::from(h.identification()),
                        },
                        ts_ns: frame.ts_ns,
                        offset: u32::from(h.fragments_offset().byte_offset()),
                        more_fragments: h.more_fragments(),
                        declared_len: ip.declared_payload,
                        captured: payload.payload,
                    };
                    return self.reassemble(frame.ts_ns, ip, frag);
                }
                finish_ip(frame.ts_ns, ip, payload.payload, &p)
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                let payload = v6.payload();
                let ext_len = v6.extensions().slice().len() as u32;
                // Payload length 0 is a jumbogram or a TSO/BIG TCP artefact.
                let declared_payload = if h.payload_length() != 0 {
                    u32::from(h.payload_length()).saturating_sub(ext_len)
                } else {
                    payload.payload.len() as u32 + cut
                };
                let ip = IpHeaderFacts::v6(&h, payload.ip_number, frame, declared_payload);
                if v6.is_payload_fragmented() {
                    let frag_header = v6.extensions().clone().into_iter().find_map(|e| match e {
                        Ipv6ExtensionSlice::Fragment(f) => Some(f),
                        _ => None,
                    });
                    let Some(f) = frag_header else {
                        return malformed(Some(IpVersion::V6), "IPv6 fragment header", false);
                    };
                    let frag = Fragment {
                        key: FragmentKey {
                            src: ip.src,
                            dst: ip.dst,
                            protocol: ip.protocol,
                            id: f.identification(),
                        },
                        ts_ns: frame.ts_ns,
                        offset: u32::from(f.fragment_offset().byte_offset()),
                        more_fragments: f.more_fragments(),
                        declared_len: ip.declared_payload,
                        captured: payload.payload,
                    };
                    return self.reassemble(frame.ts_ns, ip, frag);
                }
                finish_ip(frame.ts_ns, ip, payload.payload, &p)
            }
        }
    }

    fn reassemble<'a>(
        &'a mut self,
        ts_ns: i64,
        ip: IpHeaderFacts,
        frag: Fragment<'_>,
    ) -> Decoded<'a> {
        if self.defer_fragments {
            return Decoded::FragmentDeferred { ip: ip.version };
        }
        match self.defrag.add(frag) {
            Reassembly::Held => Decoded::FragmentHeld { ip: ip.version },
            Reassembly::Dropped(why) => Decoded::FragmentDropped {
                ip: ip.version,
                why,
            },
            Reassembly::Complete { total, .. } => {
                let bytes = self.defrag.completed();
                let ip = IpHeaderFacts {
                    declared_payload: total,
                    ..ip
                };
                match ip.protocol {
                    6 => match TcpSlice::from_slice(bytes) {
                        Ok(tcp) => Decoded::Tcp(tcp_packet(ts_ns, &ip, &tcp, true)),
                        Err(_) => malformed(Some(ip.version), "TCP header", bytes.len() < 20),
                    },
                    17 => Decoded::Udp { ip: ip.version },
                    other => Decoded::OtherIp {
                        ip: ip.version,
                        protocol: other,
                    },
                }
            }
        }
    }
}

/// The common case, a whole unfragmented IPv4 packet carrying a whole TCP header, read with
/// etherparse's strict slices, which skip the lax slicer's bookkeeping (about a third of the
/// decoding time). Everything else (cut or lying headers, fragments, a total length of 0,
/// other protocols) returns `None` and takes the general path, which tells what it is.
fn whole_ipv4_tcp<'a>(frame: &Frame<'a>, bytes: &'a [u8]) -> Option<Decoded<'a>> {
    let v4 = etherparse::Ipv4Slice::from_slice(bytes).ok()?;
    let payload = v4.payload();
    if v4.is_payload_fragmented() || payload.ip_number != IpNumber::TCP {
        return None;
    }
    let tcp = TcpSlice::from_slice(payload.payload).ok()?;
    let h = v4.header();
    // As in the general path; the strict slice already refused a total length of 0.
    let declared_payload = u32::from(h.total_len()).saturating_sub(u32::from(h.ihl()) * 4);
    let ip = IpHeaderFacts::v4(&h, payload.ip_number, frame, declared_payload);
    Some(Decoded::Tcp(tcp_packet(frame.ts_ns, &ip, &tcp, false)))
}

/// [`whole_ipv4_tcp`] for IPv6 without extension headers, whose payload length is set (not a
/// jumbogram or a segmentation offload artefact).
fn whole_ipv6_tcp<'a>(frame: &Frame<'a>, bytes: &'a [u8]) -> Option<Decoded<'a>> {
    let v6 = etherparse::Ipv6Slice::from_slice(bytes).ok()?;
    let h = v6.header();
    let payload = v6.payload();
    if !v6.extensions().slice().is_empty()
        || h.payload_length() == 0
        || payload.ip_number != IpNumber::TCP
    {
        return None;
    }
    let tcp = TcpSlice::from_slice(payload.payload).ok()?;
    let ip = IpHeaderFacts::v6(&h, payload.ip_number, frame, u32::from(h.payload_length()));
    Some(Decoded::Tcp(tcp_packet(frame.ts_ns, &ip, &tcp, false)))
}

/// The IP-layer facts that survive into a [`TcpPacket`].
#[derive(Clone, Copy)]
struct IpHeaderFacts {
    version: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    protocol: u8,
    /// The transport bytes the IP header says were on the wire.
    declared_payload: u32,
    /// The frame's length on the wire.
    frame_len: u32,
}

impl IpHeaderFacts {
    fn v4(h: &Ipv4HeaderSlice<'_>, protocol: IpNumber, frame: &Frame<'_>, declared: u32) -> Self {
        IpHeaderFacts {
            version: IpVersion::V4,
            src: IpAddr::V4(Ipv4Addr::from(h.source())),
            dst: IpAddr::V4(Ipv4Addr::from(h.destination())),
            ttl: h.ttl(),
            protocol: protocol.0,
            declared_payload: declared,
            frame_len: frame.orig_len.max(frame.data.len() as u32),
        }
    }

    fn v6(h: &Ipv6HeaderSlice<'_>, protocol: IpNumber, frame: &Frame<'_>, declared: u32) -> Self {
        IpHeaderFacts {
            version: IpVersion::V6,
            src: IpAddr::V6(Ipv6Addr::from(h.source())),
            dst: IpAddr::V6(Ipv6Addr::from(h.destination())),
            ttl: h.hop_limit(),
            protocol: protocol.0,
            declared_payload: declared,
            frame_len: frame.orig_len.max(frame.data.len() as u32),
        }
    }
}

fn finish_ip<'a>(
    ts_ns: i64,
    ip: IpHeaderFacts,
    payload: &'a [u8],
    p: &LaxSlicedPacket<'a>,
) -> Decoded<'a> {
    match ip.protocol {
        6 => match &p.transport {
            Some(TransportSlice::Tcp(tcp)) => Decoded::Tcp(tcp_packet(ts_ns, &ip, tcp, false)),
            _ => {
                let truncated = p.stop_err.as_ref().is_none_or(|(e, _)| is_len_error(e));
                let _ = payload;
                malformed(Some(ip.version), "TCP header", truncated)
            }
        },
        17 => Decoded::Udp { ip: ip.version },
        other => Decoded::OtherIp {
            ip: ip.version,
            protocol: other,
        },
    }
}

fn tcp_packet<'a>(
    ts_ns: i64,
    ip: &IpHeaderFacts,
    tcp: &TcpSlice<'a>,
    reassembled: bool,
) -> TcpPacket<'a> {
    let header_len = u32::from(tcp.data_offset()) * 4;
    let payload = tcp.payload();
    // The header slice holds the 20 fixed bytes and then the options.
    let options = tcp.header_slice().get(20..).unwrap_or_default();
    // Flags are the low byte of the 13th and 14th header bytes.
    let flags = tcp.header_slice().get(13).copied().unwrap_or(0);
    TcpPacket {
        ts_ns,
        ip: ip.version,
        src: ip.src,
        dst: ip.dst,
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(flags),
        window: tcp.window_size(),
        ttl: ip.ttl,
        options,
        payload,
        payload_len: ip
            .declared_payload
            .saturating_sub(header_len)
            .max(payload.len() as u32),
        reassembled,
        frame_len: ip.frame_len,
        payload_fingerprint: None,
    }
}

fn malformed<'a>(ip: Option<IpVersion>, layer: &'static str, truncated: bool) -> Decoded<'a> {
    Decoded::Malformed {
        ip,
        error: DecodeError { layer, truncated },
    }
}

fn is_ip_ether_type(t: u16) -> bool {
    t == EtherType::IPV4.0 || t == EtherType::IPV6.0
}

fn is_len_error(e: &etherparse::err::packet::SliceError) -> bool {
    matches!(e, etherparse::err::packet::SliceError::Len(_))
}

fn layer_name(layer: EpLayer) -> &'static str {
    match layer {
        EpLayer::Ipv4Header | EpLayer::Ipv4Packet => "IPv4 header",
        EpLayer::Ipv6Header | EpLayer::Ipv6Packet => "IPv6 header",
        EpLayer::Ipv6ExtHeader
        | EpLayer::Ipv6HopByHopHeader
        | EpLayer::Ipv6DestOptionsHeader
        | EpLayer::Ipv6RouteHeader
        | EpLayer::Ipv6FragHeader
        | EpLayer::IpAuthHeader => "IPv6 extension header",
        EpLayer::IpHeader => "IP header",
        EpLayer::TcpHeader => "TCP header",
        EpLayer::VlanHeader => "VLAN tag",
        _ => "link header",
    }
}

/// The protocol number of TCP, for readers of [`Decoded::OtherIp`].
pub const IP_PROTO_TCP: u8 = IpNumber::TCP.0;
