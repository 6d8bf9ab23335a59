//! Errors of the library's stages.
//!
//! A [`CaptureError`] is a fault of an input as a whole or of one of its records: it names the
//! byte offset where reading stopped (or where the bad record starts). Faults of single packets
//! (a lying IP header, a cut TCP header) are not errors: the decoder reports them as
//! [`crate::decode::Decoded::Malformed`] and the run goes on.

use std::fmt;

/// What went wrong at a byte offset of a capture input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureErrorKind {
    /// The input starts with bytes that are no capture format (or compression) we know.
    NotACapture { magic: [u8; 4] },
    /// The input is shorter than its file header.
    TooShort,
    /// The input ends in the middle of a record or block.
    Truncated,
    /// A record or block claims a length larger than any real packet could need.
    RecordTooLarge { len: u64, max: u64 },
    /// A pcapng block's length field is impossible (smaller than a block, not a multiple of
    /// 4, or different from its trailing copy) or its body does not parse.
    CorruptBlock { detail: String },
    /// A pcapng packet names an interface that its section never described.
    UnknownInterface { if_id: u32, known: usize },
    /// The section declares more interfaces than we keep a table for.
    TooManyInterfaces { max: usize },
    /// Reading the underlying file, pipe or decompressor failed.
    Io { detail: String },
}

/// A fault at `offset` bytes into an input (into the decompressed stream for compressed input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    pub offset: u64,
    pub kind: CaptureErrorKind,
}

impl CaptureError {
    pub fn new(offset: u64, kind: CaptureErrorKind) -> Self {
        CaptureError { offset, kind }
    }
}

impl fmt::Display for CaptureErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureErrorKind::NotACapture { magic } => write!(
                f,
                "not a capture file: starts with {:02x} {:02x} {:02x} {:02x}, which is neither pcap, pcapng, gzip nor zstd",
                magic[0], magic[1], magic[2], magic[3]
            ),
            CaptureErrorKind::TooShort => {
                write!(f, "file ends before its capture header is complete")
            }
            CaptureErrorKind::Truncated => {
                write!(f, "capture is truncated: the last record is cut short")
            }
            CaptureErrorKind::RecordTooLarge { len, max } => write!(
                f,
                "record claims {len} bytes, more than the {max} any packet here can need; the length field is corrupt"
            ),
            CaptureErrorKind::CorruptBlock { detail } => write!(f, "corrupt block: {detail}"),
            CaptureErrorKind::UnknownInterface { if_id, known } => write!(
                f,
                "packet names interface {if_id}, but its section describes only {known}; packet skipped"
            ),
            CaptureErrorKind::TooManyInterfaces { max } => {
                write!(f, "section declares more than {max} interfaces")
            }
            CaptureErrorKind::Io { detail } => write!(f, "read error: {detail}"),
        }
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte offset {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for CaptureError {}
