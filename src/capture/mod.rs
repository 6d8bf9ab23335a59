//! Stage 1: capture inputs -> timestamped frames.
//!
//! Input: paths given on the command line (files, folders, `-` for stdin). Output: [`Frame`]s,
//! each with its capture timestamp in nanoseconds since the Unix epoch, its link type, the
//! captured bytes and the original length on the wire.
//!
//! Formats are recognised by their magic bytes, never by file names: legacy pcap (micro- and
//! nanosecond, both byte orders), pcapng (several sections and interfaces, each interface with
//! its own link type, `if_tsresol` and `if_tsoffset`), each optionally gzip (multi-member) or
//! zstd compressed.
//!
//! Invariants: memory is one read block per open input (1 MiB, grown by doubling only while
//! real data fills it, never past [`MAX_RECORD_LEN`]), plus the earlier blocks other threads
//! still hold (see `blocks`); a frame borrows the current block and is only valid until the
//! next call to [`CaptureReader::next_frame`], but [`CaptureReader::block`] lends that block
//! out for longer; no length field read from the input decides an allocation by itself.

// Input bytes never panic this stage: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod blocks;
mod chunks;
mod input;
mod reader;

pub use blocks::SharedBlock;
pub use chunks::{Chunk, ChunkedFile, LegacyLayout, Walk};
pub use input::{Input, InputSource, expand_inputs, sniff_path};
pub use reader::{CaptureReader, Compression, FormatInfo, MAX_KEPT_FAULTS, MAX_RECORD_LEN};

/// A link-layer header type, as numbered in pcap and pcapng (LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP as written by old OpenBSD libpcap (DLT_RAW there).
    pub const RAW_12: LinkType = LinkType(12);
    /// Raw IP as written by old BSD/OS libpcap.
    pub const RAW_14: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The name libpcap gives this link type (without the LINKTYPE_ prefix).
    pub fn name(self) -> String {
        match self {
            LinkType::NULL => "NULL".into(),
            LinkType::ETHERNET => "ETHERNET".into(),
            LinkType::RAW_12 | LinkType::RAW_14 | LinkType::RAW => "RAW".into(),
            LinkType::LOOP => "LOOP".into(),
            LinkType::LINUX_SLL => "LINUX_SLL".into(),
            LinkType::IPV4 => "IPV4".into(),
            LinkType::IPV6 => "IPV6".into(),
            LinkType::LINUX_SLL2 => "LINUX_SLL2".into(),
            LinkType(n) => format!("LINKTYPE_{n}"),
        }
    }
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub link_type: LinkType,
    /// The captured bytes (possibly cut by the snaplen).
    pub data: &'a [u8],
    /// The packet's length on the wire; `orig_len > data.len()` means the snaplen cut it.
    pub orig_len: u32,
    /// Byte offset of the record in the (decompressed) input.
    pub offset: u64,
}

impl Frame<'_> {
    /// Bytes of this packet the capture did not keep.
    pub fn bytes_cut(&self) -> u32 {
        self.orig_len.saturating_sub(self.data.len() as u32)
    }
}
