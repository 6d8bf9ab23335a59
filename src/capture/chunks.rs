//! A plain legacy pcap file, read in chunks by several threads at once.
//!
//! Read front to back by one thread, a large capture costs that thread the kernel's copy out
//! of the page cache and a walk over every record, and any other thread that then works on
//! the packets reads bytes another core wrote, a cache miss for each packet. Here the file is
//! cut into chunks of a fixed size, and each thread reads (`pread`), walks and decodes its own
//! chunks, on the core that copied them.
//!
//! A chunk holds the records that *start* in it; the one that crosses its end is read whole
//! into it. Where a chunk's first record starts is known only once the chunk before was
//! walked, so walking passes a [`Walk`] on from chunk to chunk: a quick pass over the record
//! headers, done as soon as a chunk is read, before it is decoded.
//!
//! Uncompressed legacy pcap files in the usual format (what tcpdump writes) and uncompressed
//! pcapng files are read this way. The faults that end such an input are those
//! [`super::CaptureReader`] reports, at the same offsets: a last record that the file's end
//! cuts short, and a length larger than the file's snaplen allows (which that reader lets
//! pass when the record happens to lie whole in its buffer, and which is refused here
//! wherever it lies). pcapng blocks are parsed by the same code as there, one after another;
//! the section they are in (its byte order and interfaces) passes from chunk to chunk with
//! the walk, and a packet of an unknown interface is skipped and reported as there.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use pcap_parser::PcapBlockOwned;
use pcap_parser::nom;
use pcap_parser::pcapng::{parse_block_be, parse_block_le};

use super::reader::{FormatState, Step, parse_error_detail};
use super::{Frame, LinkType, SharedBlock};
use crate::error::{CaptureError, CaptureErrorKind};

/// Bytes of a legacy pcap record header.
const RECORD_HEADER: usize = 16;

/// What the file header of a legacy pcap file says about its records.
#[derive(Debug, Clone, Copy)]
pub struct LegacyLayout {
    /// Where the first record starts: the file header's size.
    pub data_start: u64,
    pub big_endian: bool,
    pub nanos: bool,
    pub link: LinkType,
    /// The largest captured length a record may claim (the snaplen, within the reader's
    /// bounds); more is a corrupt length field.
    pub max_caplen: u32,
}

/// An uncompressed legacy pcap file, cut into chunks of `chunk_bytes`.
pub struct ChunkedFile {
    file: File,
    len: u64,
    /// For pcapng, only `data_start` is used.
    layout: LegacyLayout,
    /// pcapng: the section as it stands at `data_start`.
    ng: Option<Box<FormatState>>,
    chunk_bytes: u64,
}

/// Where the walk over the records stands at the start of a chunk.
#[derive(Clone)]
pub struct Walk {
    /// File offset of the next record.
    pub at: u64,
    /// Records before it.
    pub frames: u64,
    /// No record follows: the file ended, or a fault ended reading it.
    pub ended: bool,
    /// pcapng: the section the next block is in.
    pub(crate) ng: Option<Box<FormatState>>,
}

impl Walk {
    /// A walk that ended at `at`, after `frames` records.
    pub fn ended(at: u64, frames: u64) -> Walk {
        Walk {
            at,
            frames,
            ended: true,
            ng: None,
        }
    }
}

/// Where a pcapng packet lies in its chunk, and what the block said about it.
struct NgPacket {
    data_at: usize,
    len: usize,
    ts_ns: i64,
    link_type: LinkType,
    orig_len: u32,
    offset: u64,
}

/// A chunk that was read and walked: its records, in a block threads can share.
pub struct Chunk {
    pub index: usize,
    pub block: SharedBlock,
    /// File offset of `block[0]`.
    base: u64,
    /// Where the chunk's first record starts in `block`.
    first: usize,
    /// How many records start in this chunk (the walk checked every one of them).
    pub records: usize,
    /// The 1-based number of the chunk's first frame, less one.
    pub frames_before: u64,
    /// Records the walk skipped, and why (a pcapng packet of an interface not described).
    pub skipped: Vec<CaptureError>,
    layout: LegacyLayout,
    /// pcapng: where each packet lies (legacy records are walked again instead).
    ng_packets: Option<Vec<NgPacket>>,
}

impl ChunkedFile {
    /// Opens `path` again for reading at offsets. Its length is taken now: a capture still
    /// being written is read up to there.
    pub(crate) fn open(
        path: &Path,
        layout: LegacyLayout,
        chunk_bytes: u64,
    ) -> std::io::Result<ChunkedFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(ChunkedFile {
            file,
            len: meta.len(),
            layout,
            ng: None,
            chunk_bytes: chunk_bytes.max(RECORD_HEADER as u64),
        })
    }

    /// Opens the pcapng file `path` again for reading at offsets, its packets starting at
    /// `data_start`, in the section `state` describes.
    pub(crate) fn open_ng(
        path: &Path,
        data_start: u64,
        state: FormatState,
        chunk_bytes: u64,
    ) -> std::io::Result<ChunkedFile> {
        let layout = LegacyLayout {
            data_start,
            big_endian: false,
            nanos: false,
            link: LinkType::ETHERNET,
            max_caplen: 0,
        };
        let mut file = Self::open(path, layout, chunk_bytes)?;
        file.ng = Some(Box::new(state));
        Ok(file)
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= self.layout.data_start
    }

    /// How many chunks the records are cut into.
    pub fn chunks(&self) -> usize {
        let records = self.len.saturating_sub(self.layout.data_start);
        records.div_ceil(self.chunk_bytes) as usize
    }

    /// Where the walk starts: at the first record.
    pub fn start(&self) -> Walk {
        Walk {
            at: self.layout.data_start,
            frames: 0,
            ended: self.is_empty(),
            ng: self.ng.clone(),
        }
    }

    fn range(&self, index: usize) -> (u64, u64) {
        let start = self
            .layout
            .data_start
            .saturating_add((index as u64).saturating_mul(self.chunk_bytes));
        (
            start.min(self.len),
            start.saturating_add(self.chunk_bytes).min(self.len),
        )
    }

    /// Reads chunk `index`'s bytes into `bytes` (whose allocation is reused).
    pub fn read(&self, index: usize, mut bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let (start, end) = self.range(index);
        // Only bytes never used before are zeroed: zeroing the whole chunk each time cost a
        // tenth of the time on large transfers.
        let len = (end - start) as usize;
        if bytes.len() > len {
            bytes.truncate(len);
        } else {
            bytes.resize(len, 0);
        }
        self.file.read_exact_at(&mut bytes, start)?;
        Ok(bytes)
    }

    /// Walks the records that start in chunk `index`, whose bytes [`Self::read`] returned,
    /// from `from` (what the walk of the chunk before returned), and calls `record` with each
    /// one's index in the chunk and time. Reads the rest of a record that crosses the chunk's
    /// end. Returns the chunk, where the next chunk's walk starts, and the fault that ends the
    /// input, if one does.
    pub fn walk(
        &self,
        index: usize,
        mut bytes: Vec<u8>,
        from: Walk,
        record: impl FnMut(usize, i64),
    ) -> (Chunk, Walk, Option<CaptureError>) {
        let (base, end) = self.range(index);
        let frames_before = from.frames;
        let first = from.at.saturating_sub(base) as usize;
        let mut walk = from;
        let (records, skipped, ng_packets, fault) = if self.ng.is_some() {
            let (packets, skipped, fault) =
                self.walk_blocks(&mut bytes, base, end, &mut walk, record);
            (packets.len(), skipped, Some(packets), fault)
        } else {
            let (records, fault) = self.walk_records(&mut bytes, base, end, &mut walk, record);
            (records, Vec::new(), None, fault)
        };
        if walk.at >= self.len {
            walk.ended = true;
        }
        let fault = fault.map(|kind| {
            walk.ended = true;
            CaptureError::new(walk.at, kind)
        });
        let chunk = Chunk {
            index,
            block: SharedBlock::new(bytes),
            base,
            first,
            records,
            frames_before,
            skipped,
            layout: self.layout,
            ng_packets,
        };
        (chunk, walk, fault)
    }

    /// [`Self::walk`]'s loop over legacy pcap records: how many start in the chunk (`base` to
    /// `end` of the file, in `bytes`), and the fault that ends the input, if one does.
    fn walk_records(
        &self,
        bytes: &mut Vec<u8>,
        base: u64,
        end: u64,
        walk: &mut Walk,
        mut record: impl FnMut(usize, i64),
    ) -> (usize, Option<CaptureErrorKind>) {
        let mut records = 0;
        let mut fault = None;
        while !walk.ended && walk.at < end {
            // Most records lie whole in the bytes read: walked here without reading more.
            let mut pos = (walk.at - base) as usize;
            let stop = (end - base) as usize;
            while pos < stop {
                let Some(fields) = RecordHeader::at(bytes, pos, &self.layout) else {
                    break;
                };
                let next = pos + RECORD_HEADER + fields.caplen as usize;
                if fields.caplen > self.layout.max_caplen || next > bytes.len() {
                    break;
                }
                record(records, fields.ts_ns);
                records += 1;
                walk.frames += 1;
                pos = next;
            }
            walk.at = base + pos as u64;
            if walk.at >= end {
                break;
            }
            // The record that crosses the end of what was read, or a fault.
            if let Err(kind) = self.extend(bytes, base, pos + RECORD_HEADER) {
                fault = Some(kind);
                break;
            }
            let Some(fields) = RecordHeader::at(bytes, pos, &self.layout) else {
                break;
            };
            if fields.caplen > self.layout.max_caplen {
                fault = Some(CaptureErrorKind::RecordTooLarge {
                    len: u64::from(fields.caplen),
                    max: u64::from(self.layout.max_caplen),
                });
                break;
            }
            let total = RECORD_HEADER + fields.caplen as usize;
            if let Err(kind) = self.extend(bytes, base, pos + total) {
                fault = Some(kind);
                break;
            }
            record(records, fields.ts_ns);
            records += 1;
            walk.at += total as u64;
            walk.frames += 1;
        }
        (records, fault)
    }

    /// [`Self::walk`]'s loop over pcapng blocks: parses each one that starts in the chunk, as
    /// [`super::CaptureReader`] does, with the section the walk carries. Returns the packets,
    /// the records skipped, and the fault that ends the input, if one does.
    fn walk_blocks(
        &self,
        bytes: &mut Vec<u8>,
        base: u64,
        end: u64,
        walk: &mut Walk,
        mut record: impl FnMut(usize, i64),
    ) -> (Vec<NgPacket>, Vec<CaptureError>, Option<CaptureErrorKind>) {
        let mut state = walk.ng.take().or_else(|| self.ng.clone());
        let mut packets = Vec::new();
        let mut skipped = Vec::new();
        let mut fault = None;
        while let Some(state) = state.as_deref_mut()
            && !walk.ended
            && walk.at < end
        {
            let pos = (walk.at - base) as usize;
            match self.ng_block(bytes, base, pos, state) {
                Ok((consumed, step)) => {
                    match step {
                        Step::Packet((data_at, len, ts_ns, link_type, orig_len, offset)) => {
                            record(packets.len(), ts_ns);
                            packets.push(NgPacket {
                                data_at,
                                len,
                                ts_ns,
                                link_type,
                                orig_len,
                                offset,
                            });
                            walk.frames += 1;
                        }
                        Step::SkipFault(kind) => skipped.push(CaptureError::new(walk.at, kind)),
                        Step::Fail(kind) => {
                            fault = Some(kind);
                            break;
                        }
                        Step::Skip | Step::NeedMore | Step::Grow | Step::End => {}
                    }
                    walk.at += consumed as u64;
                }
                Err(kind) => {
                    fault = Some(kind);
                    break;
                }
            }
        }
        walk.ng = state;
        (packets, skipped, fault)
    }

    /// Parses the pcapng block at `pos` of `bytes` (the file from `base`), reading the rest of
    /// it if it crosses the end of what was read; returns its length and what it holds, or
    /// the fault that ends the input there, as [`super::CaptureReader`] would name it.
    fn ng_block(
        &self,
        bytes: &mut Vec<u8>,
        base: u64,
        pos: usize,
        state: &mut FormatState,
    ) -> Result<(usize, Step), CaptureErrorKind> {
        // The block header first, then as much as the block says it holds: two rounds; the
        // bound only guards against a loop, as each round reads more or ends.
        let mut want = pos + 12;
        for _ in 0..4 {
            self.extend_within(bytes, base, want)?;
            let data = bytes.get(pos..).unwrap_or_default();
            let parse = if state.ng_big_endian() {
                parse_block_be
            } else {
                parse_block_le
            };
            match parse(data) {
                Ok((rest, block)) => {
                    let consumed = data.len() - rest.len();
                    let base_ptr = bytes.as_ptr() as usize;
                    let offset = base + pos as u64;
                    let step = state.handle_block(PcapBlockOwned::from(block), base_ptr, offset);
                    return Ok((consumed, step));
                }
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    return Err(CaptureErrorKind::CorruptBlock {
                        detail: parse_error_detail(&e),
                    });
                }
                Err(nom::Err::Incomplete(_)) => {
                    if base.saturating_add(bytes.len() as u64) >= self.len {
                        return Err(state.incomplete_at_end(data));
                    }
                    if let Some(kind) = state.check_declared_length(data, false) {
                        return Err(kind);
                    }
                    want = pos + state.ng_block_length(data).map_or(12, |len| len as usize);
                }
            }
        }
        Err(CaptureErrorKind::CorruptBlock {
            detail: "the block does not parse".into(),
        })
    }

    /// Makes `bytes` (the file from `base`) `len` long, or as long as the file allows.
    fn extend_within(
        &self,
        bytes: &mut Vec<u8>,
        base: u64,
        len: usize,
    ) -> Result<(), CaptureErrorKind> {
        let available = self.len.saturating_sub(base);
        let len = (len as u64).min(available) as usize;
        self.extend(bytes, base, len)
    }

    /// Makes `bytes` (the file from `base`) at least `len` long, reading what is missing:
    /// the input ends with a truncated record if the file ends before.
    fn extend(&self, bytes: &mut Vec<u8>, base: u64, len: usize) -> Result<(), CaptureErrorKind> {
        let have = bytes.len();
        if len <= have {
            return Ok(());
        }
        if base.saturating_add(len as u64) > self.len {
            return Err(CaptureErrorKind::Truncated);
        }
        bytes.resize(len, 0);
        let missing = bytes.get_mut(have..).unwrap_or_default();
        self.file
            .read_exact_at(missing, base + have as u64)
            .map_err(|e| CaptureErrorKind::Io {
                detail: e.to_string(),
            })
    }
}

/// The fields of a record header that the walk and the frames need.
struct RecordHeader {
    ts_ns: i64,
    caplen: u32,
    orig_len: u32,
}

impl RecordHeader {
    /// Reads the record header at `pos` of `bytes`, if all 16 bytes are there.
    fn at(bytes: &[u8], pos: usize, layout: &LegacyLayout) -> Option<RecordHeader> {
        let header: &[u8; RECORD_HEADER] = bytes.get(pos..pos + RECORD_HEADER)?.try_into().ok()?;
        let [
            s0,
            s1,
            s2,
            s3,
            f0,
            f1,
            f2,
            f3,
            c0,
            c1,
            c2,
            c3,
            o0,
            o1,
            o2,
            o3,
        ] = *header;
        let field = |b: [u8; 4]| {
            if layout.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let frac = i64::from(field([f0, f1, f2, f3]));
        let frac = if layout.nanos { frac } else { frac * 1_000 };
        Some(RecordHeader {
            ts_ns: i64::from(field([s0, s1, s2, s3])) * 1_000_000_000 + frac,
            caplen: field([c0, c1, c2, c3]),
            orig_len: field([o0, o1, o2, o3]),
        })
    }
}

impl Chunk {
    /// The chunk's frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        let legacy = match self.ng_packets {
            None => self.records,
            Some(_) => 0,
        };
        let ng = self.ng_packets.iter().flatten().filter_map(|p| {
            Some(Frame {
                ts_ns: p.ts_ns,
                link_type: p.link_type,
                data: self.block.get(p.data_at..p.data_at + p.len)?,
                orig_len: p.orig_len,
                offset: p.offset,
            })
        });
        self.legacy_frames(legacy).chain(ng)
    }

    /// The first `records` records of a legacy pcap chunk, as frames.
    fn legacy_frames(&self, records: usize) -> impl Iterator<Item = Frame<'_>> {
        let mut pos = self.first;
        (0..records).map_while(move |_| {
            // Always there: the walk checked every record.
            let fields = RecordHeader::at(&self.block, pos, &self.layout)?;
            let start = pos + RECORD_HEADER;
            let data = self.block.get(start..start + fields.caplen as usize)?;
            let offset = self.base + pos as u64;
            pos = start + fields.caplen as usize;
            Some(Frame {
                ts_ns: fields.ts_ns,
                link_type: self.layout.link,
                data,
                orig_len: fields.orig_len,
                offset,
            })
        })
    }
}
