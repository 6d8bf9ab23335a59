//! The input's bytes, read into blocks that other threads may share, and pcap-parser's
//! record parsers run over them.
//!
//! pcap-parser's own readers keep one circular buffer and shift it in place, so a frame can
//! only be borrowed until the next one is read: handing packets to worker threads then means
//! copying every payload out. Here the bytes sit in reference-counted blocks instead. A
//! worker that was handed a packet keeps its block alive by holding a clone of the `Arc`;
//! the reader writes into a block only while it holds the only reference (`Arc::get_mut`),
//! and otherwise carries the unparsed tail (less than one record) into a fresh or recycled
//! block. Single-threaded, nobody else holds the block and it is reused in place, as
//! pcap-parser's buffer would be.
//!
//! With workers, the reading itself (the kernel's copy out of the page cache, or the
//! decompression) moves to a thread of its own ([`BlockReader::read_ahead`]), which fills
//! blocks a few ahead of the parsing, each after some room where the parser puts the unparsed
//! end of the block before. Blocks come back to that thread once every worker let go of them.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc;

use pcap_parser::nom::{self, Needed};
use pcap_parser::pcap::{LegacyPcapBlock, PcapHeader};
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le};
use pcap_parser::{PcapBlockOwned, PcapError};

/// A block of input bytes; its `len()` is its capacity, of which the reader fills a part.
pub type SharedBlock = Arc<Vec<u8>>;

/// Bytes read ahead per block, and the room kept in front of them for the unconsumed end of
/// the block before (a record cut by the block boundary).
const READ_AHEAD_BLOCK: usize = 256 << 10;
const READ_AHEAD_ROOM: usize = 64 << 10;
/// Blocks the read-ahead thread may fill before the parsing takes them.
const READ_AHEAD_DEPTH: usize = 4;

/// Where the bytes come from.
enum Source {
    /// Read on this thread, into the current block when nobody else holds it.
    Direct(Box<dyn Read + Send>),
    /// Read by a thread of its own into blocks of [`READ_AHEAD_BLOCK`] bytes after
    /// [`READ_AHEAD_ROOM`]; emptied blocks go back to it.
    ReadAhead {
        filled: mpsc::Receiver<std::io::Result<Filled>>,
        free: mpsc::Sender<Vec<u8>>,
        /// Blocks handed out earlier that other threads may still hold.
        retired: Vec<SharedBlock>,
    },
}

/// A block the read-ahead thread filled: `len` bytes after [`READ_AHEAD_ROOM`]; 0 at the end.
struct Filled {
    bytes: Vec<u8>,
    len: usize,
}

/// Blocks kept for reuse once their last user drops them. Blocks still shared beyond these
/// are simply freed by whoever drops them last.
const SPARE_BLOCKS: usize = 16;
/// Read-ahead blocks watched for their users to let go of them, to be refilled. The
/// analysis has at most a few dozen in flight (the workers' queues bound them); many more
/// means a user keeps them, and those are left to it.
const RETIRED_BLOCKS: usize = 256;

type LegacyParse =
    for<'a> fn(&'a [u8]) -> nom::IResult<&'a [u8], LegacyPcapBlock<'a>, PcapError<&'a [u8]>>;

/// A legacy pcap record's header fields, and where its packet lies (from the start of
/// [`BlockReader::data`] for [`BlockReader::next_legacy_record`]).
pub(crate) struct LegacyRecord {
    pub(crate) ts_sec: u32,
    /// Microseconds or nanoseconds, as the file header says.
    pub(crate) ts_frac: u32,
    pub(crate) caplen: u32,
    pub(crate) orig_len: u32,
    pub(crate) data_at: usize,
    pub(crate) data_len: usize,
}

/// Which records the input holds.
enum Records {
    /// Legacy pcap: the file header (handed out once, as the first block) and the record
    /// parser for its byte order and variant.
    Legacy {
        header: PcapHeader,
        parse: LegacyParse,
    },
    /// pcapng: the byte order of the current section.
    Ng { big_endian: bool },
}

/// The bytes of one input, parsed a record at a time, with the same outcomes as
/// pcap-parser's `PcapReaderIterator` (`Eof`, `Incomplete`, `BufferTooSmall`,
/// `UnexpectedEof`), so that the capture reader's handling of each stays as it was.
pub(crate) struct BlockReader {
    source: Source,
    block: SharedBlock,
    /// The unconsumed bytes are `block[start..end]`.
    start: usize,
    end: usize,
    /// Bytes consumed since the start of the (decompressed) input.
    consumed: usize,
    exhausted: bool,
    records: Records,
    spare: Vec<SharedBlock>,
}

impl BlockReader {
    /// Reads the first bytes and, for legacy pcap, parses the file header (it is handed out
    /// by the first `next`, as pcap-parser does).
    pub(crate) fn new(
        capacity: usize,
        mut source: Box<dyn Read + Send>,
        is_ng: bool,
    ) -> Result<BlockReader, PcapError<&'static [u8]>> {
        let mut block = vec![0u8; capacity];
        let end = source.read(&mut block).map_err(|_| PcapError::ReadError)?;
        let records = if is_ng {
            Records::Ng { big_endian: false }
        } else {
            let data = block.get(..end).unwrap_or_default();
            let header = match pcap_parser::pcap::parse_pcap_header(data) {
                Ok((_, h)) => h,
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => return Err(e.to_owned_vec()),
                Err(nom::Err::Incomplete(Needed::Size(n))) => {
                    return Err(PcapError::Incomplete(n.into()));
                }
                Err(nom::Err::Incomplete(Needed::Unknown)) => {
                    return Err(PcapError::Incomplete(0));
                }
            };
            let parse: LegacyParse = if header.is_modified_format() {
                pcap_parser::pcap::parse_pcap_frame_modified
            } else if header.is_bigendian() {
                pcap_parser::pcap::parse_pcap_frame_be
            } else {
                pcap_parser::pcap::parse_pcap_frame
            };
            Records::Legacy { header, parse }
        };
        Ok(BlockReader {
            source: Source::Direct(source),
            block: Arc::new(block),
            start: 0,
            end,
            consumed: 0,
            exhausted: false,
            records,
            spare: Vec::new(),
        })
    }

    /// The file header of a legacy pcap input that nothing was taken from yet.
    pub(crate) fn unread_legacy_header(&self) -> Option<&PcapHeader> {
        match &self.records {
            Records::Legacy { header, .. } if self.consumed == 0 => Some(header),
            _ => None,
        }
    }

    /// The unconsumed bytes read so far.
    pub(crate) fn data(&self) -> &[u8] {
        self.block.get(self.start..self.end).unwrap_or_default()
    }

    /// The block that [`BlockReader::data`] (and so every frame handed out since the last
    /// refill) lies in.
    pub(crate) fn block(&self) -> &SharedBlock {
        &self.block
    }

    pub(crate) fn consumed(&self) -> usize {
        self.consumed
    }

    pub(crate) fn reader_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Marks `n` bytes as parsed; they stay in place until the next refill.
    pub(crate) fn consume_noshift(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.consumed += n;
    }

    /// The next record of a legacy pcap file in the usual (not "modified") format, and how
    /// many bytes it takes, if it is entirely in the buffer; `None` otherwise, and `next`
    /// then says why (end, more needed, corrupt) exactly as for any other record.
    pub(crate) fn next_legacy_record(&self) -> Option<(usize, LegacyRecord)> {
        let Records::Legacy { header, .. } = &self.records else {
            return None;
        };
        if self.consumed == 0 || header.is_modified_format() {
            return None;
        }
        let data = self.data();
        let field = |at: usize| -> Option<u32> {
            let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
            Some(if header.is_bigendian() {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            })
        };
        let caplen = field(8)?;
        let total = 16usize.checked_add(caplen as usize)?;
        if total > data.len() {
            return None;
        }
        let record = LegacyRecord {
            ts_sec: field(0)?,
            ts_frac: field(4)?,
            caplen,
            orig_len: field(12)?,
            data_at: 16,
            data_len: caplen as usize,
        };
        Some((total, record))
    }

    /// The next record or block, and how many bytes it takes.
    pub(crate) fn next(&mut self) -> Result<(usize, PcapBlockOwned<'_>), PcapError<&[u8]>> {
        if let Records::Legacy { header, .. } = &self.records
            && self.consumed == 0
        {
            return Ok((header.size(), PcapBlockOwned::from(header.clone())));
        }
        if self.start == self.end && self.exhausted {
            return Err(PcapError::Eof);
        }
        // Reading ahead, each refill appends a whole block: the buffer is never too small.
        let capacity = match self.source {
            Source::Direct(_) => self.block.len(),
            Source::ReadAhead { .. } => usize::MAX,
        };
        let available = self.end - self.start;
        let data = self.block.get(self.start..self.end).unwrap_or_default();
        let parsed = match &mut self.records {
            Records::Legacy { parse, .. } => {
                parse(data).map(|(rem, b)| (rem, PcapBlockOwned::from(b)))
            }
            Records::Ng { big_endian } => {
                let parse = if *big_endian {
                    parse_block_be
                } else {
                    parse_block_le
                };
                parse(data).map(|(rem, b)| {
                    if let Block::SectionHeader(shb) = &b {
                        *big_endian = shb.big_endian();
                    }
                    (rem, PcapBlockOwned::from(b))
                })
            }
        };
        match parsed {
            Ok((rem, b)) => Ok((data.len() - rem.len(), b)),
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
            Err(nom::Err::Incomplete(_)) if self.exhausted => Err(PcapError::UnexpectedEof),
            Err(nom::Err::Incomplete(Needed::Size(n))) => {
                if available + usize::from(n) >= capacity {
                    Err(PcapError::BufferTooSmall)
                } else {
                    Err(PcapError::Incomplete(n.into()))
                }
            }
            Err(nom::Err::Incomplete(Needed::Unknown)) => Err(PcapError::Incomplete(0)),
        }
    }

    /// Moves the unconsumed bytes to the front of a block we may write to, then reads once
    /// into the rest of it; or, reading ahead, puts them in front of the next block read.
    pub(crate) fn refill(&mut self) -> std::io::Result<()> {
        if let Source::ReadAhead { .. } = self.source {
            return self.take_read_ahead();
        }
        self.make_writable(self.block.len());
        let Source::Direct(source) = &mut self.source else {
            return Ok(());
        };
        let Some(space) = Arc::get_mut(&mut self.block).and_then(|b| b.get_mut(self.end..)) else {
            return Ok(());
        };
        if space.is_empty() {
            return Ok(());
        }
        let n = source.read(space)?;
        self.exhausted = n == 0;
        self.end += n;
        Ok(())
    }

    /// From now on, reads on a thread of its own (named `rstscope-read`) up to
    /// [`READ_AHEAD_DEPTH`] blocks ahead of the parsing: the copy out of the page cache, or
    /// the decompression, then overlaps with the work on the frames. The thread ends at the
    /// end of the input, or when this reader is dropped.
    pub(crate) fn read_ahead(&mut self) {
        let Source::Direct(_) = &self.source else {
            return;
        };
        let (filled_tx, filled_rx) =
            mpsc::sync_channel::<std::io::Result<Filled>>(READ_AHEAD_DEPTH);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let Source::Direct(mut source) = std::mem::replace(
            &mut self.source,
            Source::ReadAhead {
                filled: filled_rx,
                free: free_tx,
                retired: Vec::new(),
            },
        ) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("rstscope-read".into())
            .spawn(move || {
                // Refilled last in, first out: the block freed last is the likeliest to be
                // still in the cache.
                let mut free = Vec::new();
                loop {
                    free.extend(free_rx.try_iter());
                    let mut bytes = free
                        .pop()
                        .unwrap_or_else(|| vec![0u8; READ_AHEAD_ROOM + READ_AHEAD_BLOCK]);
                    let read = match bytes.get_mut(READ_AHEAD_ROOM..) {
                        Some(space) => source.read(space),
                        None => Ok(0),
                    };
                    let end = matches!(read, Ok(0) | Err(_));
                    let sent = filled_tx.send(read.map(|len| Filled { bytes, len }));
                    if end || sent.is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            // No thread: the reader will report the error where the input stops.
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send(Err(e));
            if let Source::ReadAhead { filled, .. } = &mut self.source {
                *filled = rx;
            }
        }
    }

    /// Takes the next block the read-ahead thread filled, with the unconsumed bytes of the
    /// current one put in front of its data.
    fn take_read_ahead(&mut self) -> std::io::Result<()> {
        let Source::ReadAhead {
            filled,
            free,
            retired,
        } = &mut self.source
        else {
            return Ok(());
        };
        let next = match filled.recv() {
            Ok(next) => next?,
            // The thread ended after the input's end or an error it already sent.
            Err(_) => Filled {
                bytes: Vec::new(),
                len: 0,
            },
        };
        let unconsumed = self.start..self.end;
        let (mut bytes, start, end) = if unconsumed.len() <= READ_AHEAD_ROOM && next.len > 0 {
            let tail = self.block.get(unconsumed).unwrap_or_default();
            let start = READ_AHEAD_ROOM - tail.len();
            let mut bytes = next.bytes;
            if let Some(room) = bytes.get_mut(start..READ_AHEAD_ROOM) {
                room.copy_from_slice(tail);
            }
            (bytes, start, READ_AHEAD_ROOM + next.len)
        } else {
            // A record longer than the room (or the last bytes): the block grows to take the
            // new bytes too, in place when nobody else holds it, so that a long record costs
            // amortized copies rather than a copy of all of it so far per block read.
            let mut joined = match Arc::get_mut(&mut self.block) {
                Some(own) => {
                    let mut own = std::mem::take(own);
                    own.truncate(unconsumed.end);
                    own.drain(..unconsumed.start);
                    own
                }
                None => self.block.get(unconsumed).unwrap_or_default().to_vec(),
            };
            let data = next
                .bytes
                .get(READ_AHEAD_ROOM..READ_AHEAD_ROOM + next.len)
                .unwrap_or_default();
            joined.extend_from_slice(data);
            let end = joined.len();
            if next.bytes.len() == READ_AHEAD_ROOM + READ_AHEAD_BLOCK {
                let _ = free.send(next.bytes);
            }
            (joined, 0, end)
        };
        if next.len == 0 {
            self.exhausted = true;
        }
        // Blocks whose last user let go of them go back to the read-ahead thread.
        retired.retain_mut(|b| match Arc::get_mut(b) {
            Some(own) => {
                let _ = free.send(std::mem::take(own));
                false
            }
            None => true,
        });
        let old = std::mem::replace(&mut self.block, Arc::new(std::mem::take(&mut bytes)));
        // Every block goes back to be refilled once free: freeing and allocating instead
        // cost page faults and zeroing, a third of the reading thread's time on large
        // transfers.
        if old.len() == READ_AHEAD_ROOM + READ_AHEAD_BLOCK && retired.len() < RETIRED_BLOCKS {
            retired.push(old);
        }
        self.start = start;
        self.end = end;
        Ok(())
    }

    /// Makes the block `new_size` bytes large, for a record that does not fit.
    pub(crate) fn grow(&mut self, new_size: usize) {
        if new_size > self.block.len() && matches!(self.source, Source::Direct(_)) {
            self.make_writable(new_size);
        }
    }

    /// Ensures `self.block` is ours alone, at least `capacity` large, with the unconsumed
    /// bytes at its front.
    fn make_writable(&mut self, capacity: usize) {
        let unconsumed = self.end - self.start;
        if capacity <= self.block.len()
            && let Some(own) = Arc::get_mut(&mut self.block)
        {
            if self.start > 0 {
                own.copy_within(self.start..self.end, 0);
            }
        } else {
            let mut fresh = self.take_spare(capacity);
            if let (Some(to), Some(from)) = (
                Arc::get_mut(&mut fresh).and_then(|b| b.get_mut(..unconsumed)),
                self.block.get(self.start..self.end),
            ) {
                to.copy_from_slice(from);
            }
            let old = std::mem::replace(&mut self.block, fresh);
            if self.spare.len() < SPARE_BLOCKS && old.len() == capacity {
                self.spare.push(old);
            }
        }
        self.start = 0;
        self.end = unconsumed;
    }

    /// A block of `capacity` bytes that nobody else holds: a spare one whose users all let
    /// go of it, or a new one.
    fn take_spare(&mut self, capacity: usize) -> SharedBlock {
        let free = self
            .spare
            .iter_mut()
            .position(|b| b.len() == capacity && Arc::get_mut(b).is_some());
        match free {
            Some(i) => self.spare.swap_remove(i),
            None => Arc::new(vec![0u8; capacity]),
        }
    }
}
