//! The streaming reader over pcap and pcapng, built on pcap-parser's record parsers run over
//! the shared blocks of `blocks`.

use std::io::Read;
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};
use serde::Serialize;

use super::blocks::{BlockReader, LegacyRecord, SharedBlock};
use super::chunks::{ChunkedFile, LegacyLayout};
use super::input::{FullReader, InputSource, is_capture_magic, open_stream, read_full};
use super::{Frame, LinkType};
use crate::error::{CaptureError, CaptureErrorKind};

/// Initial size of the read buffer: large enough that refills are rare, small enough to stay
/// in the L2/L3 caches.
const INITIAL_BUFFER: usize = 1 << 20;

/// The largest record or block we accept. Real packets are at most the 262,144-byte snaplen
/// tcpdump uses (BIG TCP stays below this too); other pcapng blocks (name resolution, secrets)
/// are far smaller. A larger length field is corruption, and refusing it keeps the buffer
/// bounded.
pub const MAX_RECORD_LEN: u64 = 16 << 20;

/// How many interfaces one pcapng section may describe before we call it corrupt.
const MAX_INTERFACES: usize = 1 << 16;

/// How many record faults are kept with their offsets; later ones are only counted.
pub const MAX_KEPT_FAULTS: usize = 16;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
/// pcapng block types that hold a packet: Enhanced and Simple Packet Blocks.
const PCAPNG_EPB: u32 = 6;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;

/// How the input was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What kind of capture an input is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormatInfo {
    /// "pcap" or "pcapng".
    pub format: &'static str,
    pub compression: Compression,
    /// "us" or "ns" for pcap; for pcapng the resolution of the first interface.
    pub timestamp_precision: String,
    /// "little" or "big": of the file header (pcap) or the first section (pcapng).
    pub byte_order: &'static str,
}

/// One interface of a pcapng section: what its packets need to be decoded and timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interface {
    link_type: LinkType,
    /// The `if_tsresol` byte: 10^-n seconds, or 2^-n when the high bit is set.
    tsresol: u8,
    /// `if_tsoffset`, in seconds.
    tsoffset: i64,
}

#[derive(Clone)]
enum Kind {
    Pcap,
    PcapNg,
}

/// Reads frames from one capture input.
pub struct CaptureReader {
    reader: BlockReader,
    /// Bytes read so far from the file or pipe (compressed bytes for compressed input).
    raw_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// A read or decompression error that ended the stream early, if one did.
    stream_error: Arc<Mutex<Option<String>>>,
    /// Bytes of the block returned last, consumed on the next call.
    pending_consume: usize,
    faults: Vec<CaptureError>,
    fault_count: u64,
    finished: bool,
    state: FormatState,
}

/// What the headers read so far say about the blocks that follow.
#[derive(Clone)]
pub(crate) struct FormatState {
    kind: Kind,
    info: FormatInfo,
    /// Legacy pcap: link type, timestamp unit and byte order from the file header.
    pcap_link: LinkType,
    pcap_nanos: bool,
    pcap_big_endian: bool,
    /// Legacy pcap: the snaplen, used to decide when a record length is corrupt.
    pcap_snaplen: u32,
    /// pcapng: the current section's byte order and interfaces.
    ng_big_endian: bool,
    interfaces: Vec<Interface>,
}

impl CaptureReader {
    /// Opens an input: undoes compression, recognises the format and reads its header.
    pub fn open(source: &InputSource) -> Result<CaptureReader, CaptureError> {
        let io_err = |e: std::io::Error| {
            CaptureError::new(
                0,
                CaptureErrorKind::Io {
                    detail: e.to_string(),
                },
            )
        };
        let (mut stream, compression, raw_bytes) = open_stream(source).map_err(io_err)?;
        let mut magic = [0u8; 4];
        let n = read_full(&mut stream, &mut magic).map_err(|e| {
            let what = match compression {
                Compression::Gzip => "gzip stream is damaged: ",
                Compression::Zstd => "zstd stream is damaged: ",
                Compression::None => "",
            };
            CaptureError::new(
                0,
                CaptureErrorKind::Io {
                    detail: format!("{what}{e}"),
                },
            )
        })?;
        if n < 4 {
            return Err(CaptureError::new(0, CaptureErrorKind::TooShort));
        }
        if !is_capture_magic(&magic) {
            return Err(CaptureError::new(
                0,
                CaptureErrorKind::NotACapture { magic },
            ));
        }
        let stream = FullReader::new(std::io::Cursor::new(magic.to_vec()).chain(stream));
        let stream_error = Arc::clone(&stream.error);
        let is_ng = magic == PCAPNG_SHB.to_le_bytes();
        let header_err = |e: PcapError<&'static [u8]>| match e {
            _ if stream_error.lock().is_ok_and(|s| s.is_some()) => CaptureError::new(
                0,
                CaptureErrorKind::Io {
                    detail: format!(
                        "{} stream is damaged: {}",
                        if compression == Compression::Zstd {
                            "zstd"
                        } else {
                            "gzip"
                        },
                        stream_error
                            .lock()
                            .ok()
                            .and_then(|s| s.clone())
                            .unwrap_or_default()
                    ),
                },
            ),
            PcapError::Incomplete(_) | PcapError::Eof | PcapError::UnexpectedEof => {
                CaptureError::new(0, CaptureErrorKind::TooShort)
            }
            PcapError::ReadError => CaptureError::new(
                0,
                CaptureErrorKind::Io {
                    detail: "read failed".into(),
                },
            ),
            other => CaptureError::new(
                0,
                CaptureErrorKind::CorruptBlock {
                    detail: format!("bad file header: {other}"),
                },
            ),
        };
        let reader =
            BlockReader::new(INITIAL_BUFFER, Box::new(stream), is_ng).map_err(header_err)?;
        Ok(CaptureReader {
            reader,
            raw_bytes,
            stream_error,
            pending_consume: 0,
            faults: Vec::new(),
            fault_count: 0,
            finished: false,
            state: FormatState {
                kind: if is_ng { Kind::PcapNg } else { Kind::Pcap },
                info: FormatInfo {
                    format: if is_ng { "pcapng" } else { "pcap" },
                    compression,
                    timestamp_precision: String::new(),
                    byte_order: "little",
                },
                pcap_link: LinkType::ETHERNET,
                pcap_nanos: false,
                pcap_big_endian: false,
                pcap_snaplen: 0,
                ng_big_endian: false,
                interfaces: Vec::new(),
            },
        })
    }

    /// Bytes read so far from the file or pipe itself (before decompression): progress.
    pub fn bytes_read(&self) -> u64 {
        self.raw_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The format of the input; complete once the first frame (or the end) has been read.
    pub fn format(&self) -> &FormatInfo {
        &self.state.info
    }

    /// Faults of single records that were skipped (the first few, with their offsets).
    pub fn faults(&self) -> &[CaptureError] {
        &self.faults
    }

    /// How many records were skipped because of faults.
    pub fn fault_count(&self) -> u64 {
        self.fault_count
    }

    /// Reads the input on a thread of its own from now on, a few blocks ahead of the frames
    /// handed out (see [`super::blocks`]).
    pub fn read_ahead(&mut self) {
        self.reader.read_ahead();
    }

    /// The input as a [`ChunkedFile`], when it can be read in chunks by several threads: an
    /// uncompressed regular file, larger than one chunk, of which no frame was taken yet, in
    /// legacy pcap's usual format (what tcpdump writes) or in pcapng with an interface
    /// described before the first packet. This reader then only tells the format; the chunks
    /// are read from a handle of their own.
    pub fn chunked(&mut self, source: &InputSource, chunk_bytes: u64) -> Option<ChunkedFile> {
        let InputSource::File(path) = source else {
            return None;
        };
        if self.state.info.compression != Compression::None {
            return None;
        }
        if let Kind::PcapNg = self.state.kind {
            return self.chunked_ng(path, chunk_bytes);
        }
        let header = self.reader.unread_legacy_header()?.clone();
        if !matches!(
            header.magic_number,
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1
        ) {
            return None;
        }
        let layout = LegacyLayout {
            data_start: header.size() as u64,
            big_endian: header.is_bigendian(),
            nanos: header.is_nanosecond_precision(),
            link: LinkType(header.network.0 as u32),
            max_caplen: u64::from(header.snaplen).clamp(262_144, MAX_RECORD_LEN) as u32,
        };
        let chunked = ChunkedFile::open(path, layout, chunk_bytes).ok()?;
        if chunked.chunks() < 2 {
            return None;
        }
        self.state.handle_block(PcapBlockOwned::from(header), 0, 0);
        self.finished = true;
        Some(chunked)
    }

    /// [`Self::chunked`] for pcapng: reads the blocks before the first packet here, as
    /// [`Self::next_frame`] would (the section header and the interfaces, which set the
    /// format's details), and hands the chunks the section as it stands there. `None`, reading
    /// on from there as usual, if no interface came before the first packet or anything in
    /// those blocks is amiss.
    fn chunked_ng(&mut self, path: &std::path::Path, chunk_bytes: u64) -> Option<ChunkedFile> {
        if self.offset() != 0 || self.pending_consume != 0 {
            return None;
        }
        loop {
            let data = self.reader.data();
            let block_type = read_u32(data, 0, self.state.ng_big_endian)?;
            if block_type == PCAPNG_EPB || block_type == PCAPNG_SPB {
                break;
            }
            let base = data.as_ptr() as usize;
            let offset = self.reader.consumed() as u64;
            let (consumed, block) = self.reader.next().ok()?;
            match self.state.handle_block(block, base, offset) {
                Step::Skip => self.reader.consume_noshift(consumed),
                _ => return None,
            }
        }
        if self.state.interfaces.is_empty() {
            return None;
        }
        let data_start = self.reader.consumed() as u64;
        let chunked =
            ChunkedFile::open_ng(path, data_start, self.state.clone(), chunk_bytes).ok()?;
        if chunked.chunks() < 2 {
            return None;
        }
        self.finished = true;
        Some(chunked)
    }

    /// Byte offset of the next record in the (decompressed) input.
    pub fn offset(&self) -> u64 {
        (self.reader.consumed() + self.pending_consume) as u64
    }

    fn record_fault(&mut self, e: CaptureError) {
        self.fault_count += 1;
        if self.faults.len() < MAX_KEPT_FAULTS {
            self.faults.push(e);
        }
    }

    /// Returns the next frame, `Ok(None)` at the end of the input, or the fault that stops
    /// reading this input (every frame before it was returned).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        Ok(self.next_frame_in_block()?.map(|(frame, _)| frame))
    }

    /// [`CaptureReader::next_frame`], with the block the frame's bytes lie in: worker
    /// threads keep a clone of it to read the frame's bytes later without copying them (see
    /// [`super::blocks`]).
    pub fn next_frame_in_block(
        &mut self,
    ) -> Result<Option<(Frame<'_>, &SharedBlock)>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        // Where the packet's bytes sit in the buffer: decided inside the loop, borrowed after
        // it, so that the loop itself holds no borrow across iterations.
        let (start, len, ts_ns, link_type, orig_len, offset) = loop {
            if self.pending_consume > 0 {
                self.reader.consume_noshift(self.pending_consume);
                self.pending_consume = 0;
            }
            let offset = self.reader.consumed() as u64;
            // Most captures are legacy pcap: a whole record in the buffer is taken here,
            // without the general path's block enum and steps (about 80 instructions less a
            // packet, a sixth of reading and decoding short packets). Anything else goes the
            // general way.
            if let Some((consumed, record)) = self.reader.next_legacy_record() {
                self.pending_consume = consumed;
                break self.state.legacy_packet(record, offset);
            }
            let base = self.reader.data().as_ptr() as usize;
            let step = match self.reader.next() {
                Ok((consumed, block)) => {
                    let step = self.state.handle_block(block, base, offset);
                    self.pending_consume = consumed;
                    step
                }
                Err(PcapError::Eof) => Step::End,
                Err(PcapError::Incomplete(_)) => Step::NeedMore,
                Err(PcapError::UnexpectedEof) => {
                    Step::Fail(self.state.incomplete_at_end(self.reader.data()))
                }
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::ReadError) => Step::Fail(CaptureErrorKind::Io {
                    detail: "read failed".into(),
                }),
                Err(other) => Step::Fail(CaptureErrorKind::CorruptBlock {
                    detail: parse_error_detail(&other),
                }),
            };
            match step {
                Step::Packet(p) => break p,
                Step::Skip => {}
                Step::SkipFault(kind) => self.record_fault(CaptureError::new(offset, kind)),
                Step::End => {
                    if let Some(detail) = self.take_stream_error() {
                        return self.fail(offset, CaptureErrorKind::Io { detail });
                    }
                    self.finished = true;
                    return Ok(None);
                }
                Step::NeedMore | Step::Grow => {
                    let grow = matches!(step, Step::Grow);
                    if let Some(kind) = self.state.check_declared_length(self.reader.data(), grow) {
                        return self.fail(offset, kind);
                    }
                    let before = self.reader.data().len();
                    if grow {
                        if before as u64 > MAX_RECORD_LEN {
                            return self.fail(
                                offset,
                                CaptureErrorKind::RecordTooLarge {
                                    len: before as u64,
                                    max: MAX_RECORD_LEN,
                                },
                            );
                        }
                        // Only a buffer already full of real data is grown, so its size
                        // stays within twice what the input really holds.
                        self.reader.grow(before.max(INITIAL_BUFFER) * 2);
                    }
                    if let Err(detail) = self.reader.refill().map_err(|e| e.to_string()) {
                        return self.fail(offset, CaptureErrorKind::Io { detail });
                    }
                    if self.reader.data().len() == before && !self.reader.reader_exhausted() {
                        // No room was left to read into: make room, within the same bound.
                        if before as u64 > MAX_RECORD_LEN {
                            return self.fail(
                                offset,
                                CaptureErrorKind::RecordTooLarge {
                                    len: before as u64,
                                    max: MAX_RECORD_LEN,
                                },
                            );
                        }
                        self.reader.grow(before.max(INITIAL_BUFFER) * 2);
                    }
                }
                Step::Fail(kind) => {
                    // A stream that broke mid-record looks truncated: say why it ended.
                    let kind = match self.take_stream_error() {
                        Some(detail) => CaptureErrorKind::Io { detail },
                        None => kind,
                    };
                    return self.fail(offset, kind);
                }
            }
        };
        let data = self
            .reader
            .data()
            .get(start..start + len)
            .unwrap_or_default();
        let frame = Frame {
            ts_ns,
            link_type,
            data,
            orig_len,
            offset,
        };
        Ok(Some((frame, self.reader.block())))
    }

    fn take_stream_error(&self) -> Option<String> {
        let detail = self.stream_error.lock().ok().and_then(|mut e| e.take())?;
        Some(match self.state.info.compression {
            Compression::Gzip => format!("gzip stream is damaged: {detail}"),
            Compression::Zstd => format!("zstd stream is damaged: {detail}"),
            Compression::None => detail,
        })
    }

    fn fail<T>(&mut self, offset: u64, kind: CaptureErrorKind) -> Result<Option<T>, CaptureError> {
        self.finished = true;
        Err(CaptureError::new(offset, kind))
    }
}

impl FormatState {
    /// Looks at the length the next record or block declares, before the buffer is grown or
    /// refilled for it: a length no real record has, or a block that is already entirely in
    /// the buffer yet does not parse, is corruption, not a reason to read on.
    pub(crate) fn check_declared_length(
        &self,
        data: &[u8],
        buffer_full: bool,
    ) -> Option<CaptureErrorKind> {
        let declared = match self.kind {
            Kind::Pcap => {
                let caplen = read_u32(data, 8, self.pcap_big_endian)?;
                let max = u64::from(self.pcap_snaplen).clamp(262_144, MAX_RECORD_LEN);
                if u64::from(caplen) > max {
                    return Some(CaptureErrorKind::RecordTooLarge {
                        len: u64::from(caplen),
                        max,
                    });
                }
                16 + u64::from(caplen)
            }
            Kind::PcapNg => {
                let len = self.ng_block_length(data)?;
                if len > MAX_RECORD_LEN {
                    return Some(CaptureErrorKind::RecordTooLarge {
                        len,
                        max: MAX_RECORD_LEN,
                    });
                }
                if len < 12 || len % 4 != 0 {
                    return Some(CaptureErrorKind::CorruptBlock {
                        detail: format!("block length {len} is not a multiple of 4 of at least 12"),
                    });
                }
                len
            }
        };
        if (data.len() as u64) >= declared && !buffer_full {
            return Some(unparsed_whole_block(declared));
        }
        None
    }

    /// Why the block at the start of `data`, the last bytes of the input, does not parse: the
    /// input ends inside it, or (pcapng) it lies whole in them but its content claims more.
    pub(crate) fn incomplete_at_end(&self, data: &[u8]) -> CaptureErrorKind {
        match (&self.kind, self.ng_block_length(data)) {
            (Kind::PcapNg, Some(len)) if data.len() as u64 >= len => unparsed_whole_block(len),
            _ => CaptureErrorKind::Truncated,
        }
    }

    /// The length the pcapng block at the start of `data` declares (a section header's in
    /// its own byte order), if its header is there.
    pub(crate) fn ng_block_length(&self, data: &[u8]) -> Option<u64> {
        let block_type = read_u32(data, 0, false)?;
        let big_endian = if block_type == PCAPNG_SHB {
            read_u32(data, 8, false)? != PCAPNG_BOM
        } else {
            self.ng_big_endian
        };
        Some(u64::from(read_u32(data, 4, big_endian)?))
    }

    /// pcapng: whether the current section is big-endian.
    pub(crate) fn ng_big_endian(&self) -> bool {
        self.ng_big_endian
    }

    /// Where a legacy pcap record's packet is, and its time, link type and length.
    fn legacy_packet(&self, r: LegacyRecord, offset: u64) -> PacketAt {
        let frac = if self.pcap_nanos {
            i64::from(r.ts_frac)
        } else {
            i64::from(r.ts_frac) * 1_000
        };
        let ts_ns = i64::from(r.ts_sec) * 1_000_000_000 + frac;
        let len = r.data_len.min(r.caplen as usize);
        (r.data_at, len, ts_ns, self.pcap_link, r.orig_len, offset)
    }

    /// Interprets one block; returns where a packet's bytes are, relative to `base`, the
    /// start of the buffer's data.
    pub(crate) fn handle_block(
        &mut self,
        block: PcapBlockOwned<'_>,
        base: usize,
        offset: u64,
    ) -> Step {
        let at = |data: &[u8]| (data.as_ptr() as usize).wrapping_sub(base);
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.pcap_link = LinkType(h.network.0 as u32);
                self.pcap_nanos = h.is_nanosecond_precision();
                self.pcap_big_endian = h.is_bigendian();
                self.pcap_snaplen = h.snaplen;
                self.info.timestamp_precision = if self.pcap_nanos { "ns" } else { "us" }.into();
                self.info.byte_order = if h.is_bigendian() { "big" } else { "little" };
                Step::Skip
            }
            PcapBlockOwned::Legacy(b) => {
                let (_, len, ts_ns, link, orig_len, offset) = self.legacy_packet(
                    LegacyRecord {
                        ts_sec: b.ts_sec,
                        ts_frac: b.ts_usec,
                        caplen: b.caplen,
                        orig_len: b.origlen,
                        data_at: 0,
                        data_len: b.data.len(),
                    },
                    offset,
                );
                Step::Packet((at(b.data), len, ts_ns, link, orig_len, offset))
            }
            PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                if self.interfaces.is_empty() && self.info.timestamp_precision.is_empty() {
                    self.info.byte_order = if shb.big_endian() { "big" } else { "little" };
                }
                self.ng_big_endian = shb.big_endian();
                self.interfaces.clear();
                Step::Skip
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Step::Fail(CaptureErrorKind::TooManyInterfaces {
                        max: MAX_INTERFACES,
                    });
                }
                let iface = Interface {
                    link_type: LinkType(idb.linktype.0 as u32),
                    tsresol: idb.if_tsresol,
                    tsoffset: idb.if_tsoffset,
                };
                if self.info.timestamp_precision.is_empty() {
                    self.info.timestamp_precision = resolution_name(iface.tsresol);
                }
                self.interfaces.push(iface);
                Step::Skip
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let Some(iface) = self.interfaces.get(epb.if_id as usize).copied() else {
                    return Step::SkipFault(CaptureErrorKind::UnknownInterface {
                        if_id: epb.if_id,
                        known: self.interfaces.len(),
                    });
                };
                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let ts_ns = ticks_to_ns(ticks, iface.tsresol, iface.tsoffset);
                let len = epb.data.len().min(epb.caplen as usize);
                Step::Packet((
                    at(epb.data),
                    len,
                    ts_ns,
                    iface.link_type,
                    epb.origlen,
                    offset,
                ))
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // A Simple Packet Block belongs to interface 0 and has no timestamp.
                let Some(iface) = self.interfaces.first().copied() else {
                    return Step::SkipFault(CaptureErrorKind::UnknownInterface {
                        if_id: 0,
                        known: 0,
                    });
                };
                let len = spb.data.len().min(spb.origlen as usize);
                Step::Packet((at(spb.data), len, 0, iface.link_type, spb.origlen, offset))
            }
            PcapBlockOwned::NG(_) => Step::Skip,
        }
    }
}

/// Where a packet sits: (start in buffer, length, ts_ns, link type, original length, offset).
pub(crate) type PacketAt = (usize, usize, i64, LinkType, u32, u64);

pub(crate) enum Step {
    Packet(PacketAt),
    Skip,
    SkipFault(CaptureErrorKind),
    NeedMore,
    Grow,
    End,
    Fail(CaptureErrorKind),
}

/// A block that lies whole in the bytes read, yet whose content claims more than its length.
fn unparsed_whole_block(len: u64) -> CaptureErrorKind {
    CaptureErrorKind::CorruptBlock {
        detail: format!("the {len}-byte block is complete but its content does not fit its length"),
    }
}

/// What a block that does not parse is told with: pcap-parser's own text of a parse error
/// holds every byte of the input after the block (a whole capture, on stderr).
pub(crate) fn parse_error_detail(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("its content does not parse (check {kind:?} failed)")
        }
        other => other.to_string(),
    }
}

fn read_u32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// Converts a pcapng timestamp in interface units to nanoseconds since the epoch.
///
/// `tsresol` is 10^-n seconds, or 2^-n with the high bit set (pcapng §4.2, if_tsresol);
/// computed in 128 bits so that no resolution overflows, then saturated to i64.
pub(crate) fn ticks_to_ns(ticks: u64, tsresol: u8, tsoffset_s: i64) -> i64 {
    let ticks = u128::from(ticks);
    let n = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 != 0 {
        if n >= 128 {
            0
        } else {
            (ticks * 1_000_000_000) >> n
        }
    } else if n <= 9 {
        ticks * 10u128.pow(9 - n)
    } else if n <= 38 {
        ticks / 10u128.pow(n - 9)
    } else {
        0
    };
    let ns = i128::try_from(ns).unwrap_or(i128::MAX);
    let total = ns + i128::from(tsoffset_s) * 1_000_000_000;
    total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn resolution_name(tsresol: u8) -> String {
    match tsresol {
        0 => "s".into(),
        3 => "ms".into(),
        6 => "us".into(),
        9 => "ns".into(),
        r if r & 0x80 != 0 => format!("2^-{}s", r & 0x7f),
        r => format!("10^-{r}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions_convert_to_nanoseconds() {
        assert_eq!(ticks_to_ns(1_500_000, 6, 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(1_500_000_000, 9, 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(15, 1, 0), 1_500_000_000);
        // 2^-10 s units: 1024 ticks are one second.
        assert_eq!(ticks_to_ns(1024, 0x80 | 10, 0), 1_000_000_000);
        // Picoseconds divide down.
        assert_eq!(ticks_to_ns(1_000, 12, 0), 1);
        assert_eq!(ticks_to_ns(5, 6, 10), 10_000_005_000);
        // Absurd resolutions never panic.
        assert_eq!(ticks_to_ns(u64::MAX, 0x80 | 127, 0), 0);
        assert_eq!(ticks_to_ns(u64::MAX, 0, i64::MAX), i64::MAX);
        assert_eq!(ticks_to_ns(1, 100, 0), 0);
    }
}
