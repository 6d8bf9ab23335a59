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
//! Only uncompressed legacy pcap files in the usual format (what tcpdump writes) are read this
//! way. The faults that end such an input are those [`super::CaptureReader`] reports, at the
//! same offsets: a last record that the file's end cuts short, and a length larger than the
//! file's snaplen allows (which that reader lets pass when the record happens to lie whole in
//! its buffer, and which is refused here wherever it lies).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

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
    layout: LegacyLayout,
    chunk_bytes: u64,
}

/// Where the walk over the records stands at the start of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// File offset of the next record.
    pub at: u64,
    /// Records before it.
    pub frames: u64,
    /// No record follows: the file ended, or a fault ended reading it.
    pub ended: bool,
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
    layout: LegacyLayout,
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
            chunk_bytes: chunk_bytes.max(RECORD_HEADER as u64),
        })
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
        mut record: impl FnMut(usize, i64),
    ) -> (Chunk, Walk, Option<CaptureError>) {
        let (base, end) = self.range(index);
        let mut walk = from;
        let first = walk.at.saturating_sub(base) as usize;
        let mut records = 0;
        let mut fault = None;
        while !walk.ended && walk.at < end {
            // Most records lie whole in the bytes read: walked here without reading more.
            let mut pos = (walk.at - base) as usize;
            let stop = (end - base) as usize;
            while pos < stop {
                let Some(fields) = RecordHeader::at(&bytes, pos, &self.layout) else {
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
            if let Err(kind) = self.extend(&mut bytes, base, pos + RECORD_HEADER) {
                fault = Some(kind);
                break;
            }
            let Some(fields) = RecordHeader::at(&bytes, pos, &self.layout) else {
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
            if let Err(kind) = self.extend(&mut bytes, base, pos + total) {
                fault = Some(kind);
                break;
            }
            record(records, fields.ts_ns);
            records += 1;
            walk.at += total as u64;
            walk.frames += 1;
        }
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
            frames_before: from.frames,
            layout: self.layout,
        };
        (chunk, walk, fault)
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
        let mut pos = self.first;
        (0..self.records).map_while(move |_| {
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
