//! One direction's byte stream, rebuilt from its segments in sequence order.
//!
//! Policy, in one place:
//! - Bytes are delivered as soon as they are contiguous, each chunk stamped with the capture
//!   time of the segment that carried it (never of the ACK), so "response bytes, then RST"
//!   keeps its order.
//! - First copy wins: bytes already delivered or buffered are never replaced. A segment that
//!   repeats delivered bytes is a retransmission; if it repeats a whole recent segment and its
//!   bytes differ (compared by a fingerprint of length, first and last 16 bytes), it is
//!   counted as a differing retransmission: an anomaly.
//! - A segment of at most one byte just below the next expected offset is a keep-alive or
//!   zero-window probe (RFC 9293 §3.8.4, RFC 1122 §4.2.2.17): not data, not a retransmission.
//! - Bytes that are missing become explicit gaps with their size and cause, and delivery
//!   continues after them: bytes the snaplen cut, bytes the peer acknowledged but the capture
//!   never saw, holes given up when the out-of-order buffer reaches its cap, and holes still
//!   open when the stream ends.
//! - Out-of-order bytes are buffered up to `cap` bytes per direction, each buffered piece
//!   also counting [`PIECE_COST`] for its bookkeeping.

// Input bytes never panic the reassembler: no unwrap or expect, and no indexing or slicing that
// could fall outside the bytes (clippy enforces it; tests may index what they built).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use serde::Serialize;

use super::seq::SeqMap;

/// Why bytes of a stream are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The capture kept only the start of the packet (snaplen).
    Snaplen,
    /// The peer acknowledged bytes the capture never saw, or a hole was still open at the end.
    NotCaptured,
    /// The out-of-order buffer reached its cap and the hole before it was given up.
    BufferCap,
}

/// A piece of the in-order stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data {
        ts_ns: i64,
        offset: u64,
        bytes: &'a [u8],
    },
    Gap {
        ts_ns: i64,
        offset: u64,
        len: u64,
        cause: GapCause,
    },
}

/// What a segment was, for the connection's timeline and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// New bytes, delivered now.
    InOrder,
    /// New bytes, buffered until the hole before them is filled.
    OutOfOrder,
    /// Only bytes already delivered or buffered.
    Retransmission { differs: bool },
    /// A keep-alive or zero-window probe.
    Probe,
    /// Bytes after the FIN: ignored.
    AfterFin,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounters {
    /// Bytes delivered in order (captured bytes; gaps not included).
    pub delivered_bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub retransmissions: u64,
    pub differing_retransmissions: u64,
    pub out_of_order_segments: u64,
    pub probes: u64,
    /// Times the out-of-order buffer reached its cap.
    pub buffer_cap_hits: u64,
}

struct Pending {
    ts_ns: i64,
    /// Offset just after this piece on the wire.
    end: u64,
    /// The captured bytes from the piece's start (shorter than the piece when cut).
    data: Vec<u8>,
}

/// What a buffered piece costs besides its captured bytes (the map entry and the piece),
/// charged against the cap: pieces whose payload the snaplen cut hold no bytes, and would
/// otherwise pile up uncounted.
pub const PIECE_COST: usize = 64;

/// A delivered segment remembered to recognise a retransmission of it.
#[derive(Clone, Copy, Default)]
struct Recent {
    offset: u64,
    len: u32,
    fingerprint: u64,
}

const RECENT: usize = 8;

/// Rebuilds one direction's stream.
pub struct Reassembler {
    map: SeqMap,
    next: u64,
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    cap: usize,
    fin: Option<u64>,
    /// The peer acknowledged the FIN.
    fin_acked: bool,
    recent: [Recent; RECENT],
    recent_at: usize,
    pub counters: StreamCounters,
}

impl Reassembler {
    /// A stream whose byte at offset 0 has sequence number `base` (the ISN + 1 after a SYN);
    /// at most `cap` out-of-order bytes are buffered.
    pub fn new(base: u32, cap: usize) -> Self {
        Reassembler {
            map: SeqMap::new(base),
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            cap,
            fin: None,
            fin_acked: false,
            recent: [Recent::default(); RECENT],
            recent_at: 0,
            counters: StreamCounters::default(),
        }
    }

    /// The offset of the next byte to deliver.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The offset of a sequence number of this direction.
    pub fn offset_of(&self, seq: u32) -> i64 {
        self.map.offset(seq)
    }

    /// Bytes held in the out-of-order buffer, with [`PIECE_COST`] for each piece.
    pub fn buffered_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The offset of the FIN, once seen.
    pub fn fin_offset(&self) -> Option<u64> {
        self.fin
    }

    /// Whether the stream is over: its FIN was seen and acknowledged, and every byte before
    /// it delivered. A later segment of it can only be a retransmission or lie past the FIN;
    /// neither reaches the handler.
    pub fn ended(&self) -> bool {
        self.fin_acked && self.fin == Some(self.next) && self.pending.is_empty()
    }

    /// Takes a segment: `captured` holds the payload bytes the capture kept of the `wire_len`
    /// bytes that started at `seq`.
    pub fn segment(
        &mut self,
        ts_ns: i64,
        seq: u32,
        captured: &[u8],
        wire_len: u32,
        sink: &mut impl FnMut(Chunk<'_>),
    ) -> SegmentKind {
        self.segment_fingerprinted(ts_ns, seq, captured, wire_len, None, sink)
    }

    /// [`Self::segment`], with the [`fingerprint`] of all of `captured` if it is known: made
    /// where the bytes were read, it spares reading them again here, perhaps on another core.
    pub fn segment_fingerprinted(
        &mut self,
        ts_ns: i64,
        seq: u32,
        captured: &[u8],
        wire_len: u32,
        known: Option<u64>,
        sink: &mut impl FnMut(Chunk<'_>),
    ) -> SegmentKind {
        let whole = captured;
        // The known fingerprint holds for the bytes only while none were cut off.
        let known_for = |part: &[u8]| known.filter(|_| std::ptr::eq(part, whole));
        let start = self.map.offset(seq);
        let wire = i64::from(wire_len);
        let next = self.next as i64;
        if wire <= 1 && start == next - 1 {
            self.counters.probes += 1;
            return SegmentKind::Probe;
        }
        let (captured, _) = captured.split_at(captured.len().min(wire_len as usize));
        let mut end = start + wire;
        if let Some(fin) = self.fin {
            if start >= fin as i64 {
                return SegmentKind::AfterFin;
            }
            end = end.min(fin as i64);
        }
        // Bytes past the FIN seen earlier are not part of the stream.
        let captured = captured
            .get(..usize::try_from(end - start).unwrap_or(0))
            .unwrap_or(captured);
        if end <= next {
            self.counters.retransmissions += 1;
            let differs = self.differs_from_recent(start, captured, wire_len, known_for(captured));
            if differs {
                self.counters.differing_retransmissions += 1;
            }
            return SegmentKind::Retransmission { differs };
        }
        self.map.advance_to(end);
        // Trim what was already delivered: first copy wins.
        let (start, captured) = if start < next {
            self.counters.retransmissions += 1;
            let skip = (next - start) as usize;
            (next, captured.get(skip..).unwrap_or_default())
        } else {
            (start, captured)
        };
        let (start, end) = (start as u64, end as u64);
        if start == self.next {
            self.remember(start, captured, (end - start) as u32, known_for(captured));
            self.deliver(ts_ns, start, captured, end, sink);
            self.drain(sink);
            SegmentKind::InOrder
        } else {
            let inserted = self.buffer(ts_ns, start, captured, end);
            if !inserted {
                self.counters.retransmissions += 1;
                return SegmentKind::Retransmission { differs: false };
            }
            self.counters.out_of_order_segments += 1;
            if self.pending_bytes > self.cap {
                self.counters.buffer_cap_hits += 1;
                // Give up holes until the buffer is within its cap again: one hole may free
                // less than this segment added.
                while self.pending_bytes > self.cap && !self.pending.is_empty() {
                    self.skip_first_hole(ts_ns, GapCause::BufferCap, sink);
                }
            }
            SegmentKind::OutOfOrder
        }
    }

    /// Notes the FIN, which takes the sequence number `seq` (after the segment's data).
    pub fn fin(&mut self, seq: u32) {
        if self.fin.is_none() {
            let at = self.map.offset(seq).max(self.next as i64);
            self.fin = Some(at as u64);
        }
    }

    /// The peer acknowledged everything before `ack`: bytes of that range the capture never
    /// saw become a gap now, and whatever was buffered behind them is delivered.
    pub fn ack(&mut self, ts_ns: i64, ack: u32, sink: &mut impl FnMut(Chunk<'_>)) {
        let mut acked = self.map.offset(ack);
        if let Some(fin) = self.fin {
            // The FIN takes the sequence number after the last byte.
            self.fin_acked |= acked == fin as i64 + 1;
            acked = acked.min(fin as i64);
        }
        let next = self.next as i64;
        // An acknowledgment more than 1 GiB ahead is no acknowledgment of this stream
        // (a mid-stream start on the wrong base, or a lying packet).
        if acked <= next || acked - next > 1 << 30 {
            return;
        }
        let acked = acked as u64;
        self.map.advance_to(acked as i64);
        while self.next < acked {
            let hole_end = match self.pending.first_key_value() {
                Some((&s, _)) if s < acked => s,
                _ => acked,
            };
            if hole_end > self.next {
                self.gap(
                    ts_ns,
                    self.next,
                    hole_end - self.next,
                    GapCause::NotCaptured,
                    sink,
                );
                self.next = hole_end;
            }
            self.drain(sink);
        }
    }

    /// The stream ends: holes still open become gaps and everything buffered is delivered.
    pub fn finish(&mut self, ts_ns: i64, sink: &mut impl FnMut(Chunk<'_>)) {
        while !self.pending.is_empty() {
            self.skip_first_hole(ts_ns, GapCause::NotCaptured, sink);
        }
    }

    fn skip_first_hole(&mut self, ts_ns: i64, cause: GapCause, sink: &mut impl FnMut(Chunk<'_>)) {
        if let Some((&s, _)) = self.pending.first_key_value() {
            if s > self.next {
                self.gap(ts_ns, self.next, s - self.next, cause, sink);
                self.next = s;
            }
            self.drain(sink);
        }
    }

    fn gap(
        &mut self,
        ts_ns: i64,
        offset: u64,
        len: u64,
        cause: GapCause,
        sink: &mut impl FnMut(Chunk<'_>),
    ) {
        self.counters.gaps += 1;
        self.counters.gap_bytes += len;
        sink(Chunk::Gap {
            ts_ns,
            offset,
            len,
            cause,
        });
    }

    /// Delivers a piece that starts at `self.next`: its captured bytes, then the bytes the
    /// snaplen cut from it as a gap.
    fn deliver(
        &mut self,
        ts_ns: i64,
        start: u64,
        captured: &[u8],
        end: u64,
        sink: &mut impl FnMut(Chunk<'_>),
    ) {
        if !captured.is_empty() {
            self.counters.delivered_bytes += captured.len() as u64;
            sink(Chunk::Data {
                ts_ns,
                offset: start,
                bytes: captured,
            });
        }
        let captured_end = start + captured.len() as u64;
        if captured_end < end {
            self.gap(
                ts_ns,
                captured_end,
                end - captured_end,
                GapCause::Snaplen,
                sink,
            );
        }
        self.next = end;
    }

    /// Delivers buffered pieces that have become contiguous.
    fn drain(&mut self, sink: &mut impl FnMut(Chunk<'_>)) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let piece = entry.remove();
            self.pending_bytes -= piece.data.len() + PIECE_COST;
            if piece.end <= self.next {
                continue;
            }
            let skip = (self.next - start) as usize;
            let bytes = piece.data.get(skip..).unwrap_or_default();
            self.deliver(piece.ts_ns, self.next, bytes, piece.end, sink);
        }
    }

    /// Buffers the parts of [start, end) not already buffered. Returns false when every
    /// byte was already there.
    fn buffer(&mut self, ts_ns: i64, start: u64, captured: &[u8], end: u64) -> bool {
        let mut free = Vec::new();
        let mut cursor = start;
        if let Some((_, p)) = self.pending.range(..start).next_back() {
            cursor = cursor.max(p.end.min(end));
        }
        for (&s, p) in self.pending.range(start..end) {
            if s > cursor {
                free.push((cursor, s));
            }
            cursor = cursor.max(p.end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            free.push((cursor, end));
        }
        let captured_end = start + captured.len() as u64;
        for &(a, b) in &free {
            let data = if a < captured_end {
                // Always in range: start <= a < b.min(captured_end) <= captured_end.
                captured
                    .get((a - start) as usize..(b.min(captured_end) - start) as usize)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            self.pending_bytes += data.len() + PIECE_COST;
            self.pending.insert(
                a,
                Pending {
                    ts_ns,
                    end: b,
                    data,
                },
            );
        }
        !free.is_empty()
    }

    fn remember(&mut self, offset: u64, captured: &[u8], wire_len: u32, known: Option<u64>) {
        if captured.len() == wire_len as usize && wire_len > 0 {
            // Always a slot: `recent_at` is kept below RECENT.
            if let Some(slot) = self.recent.get_mut(self.recent_at) {
                *slot = Recent {
                    offset,
                    len: wire_len,
                    fingerprint: known.unwrap_or_else(|| fingerprint(captured)),
                };
            }
            self.recent_at = (self.recent_at + 1) % RECENT;
        }
    }

    fn differs_from_recent(
        &self,
        start: i64,
        captured: &[u8],
        wire_len: u32,
        known: Option<u64>,
    ) -> bool {
        if captured.len() != wire_len as usize || start < 0 {
            return false;
        }
        self.recent
            .iter()
            .find(|r| r.len == wire_len && r.offset == start as u64)
            .is_some_and(|r| r.fingerprint != known.unwrap_or_else(|| fingerprint(captured)))
    }
}

/// A cheap fingerprint of a segment: its length and its first and last 16 bytes. It touches
/// 32 bytes whatever the segment's size, and catches a retransmission carrying other content.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let (head, _) = bytes.split_at(bytes.len().min(16));
    let (_, tail) = bytes.split_at(bytes.len().saturating_sub(16));
    foldhash::fast::FixedState::with_seed(7).hash_one((bytes.len(), head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds segments and returns the delivered stream with gaps as '#' runs.
    fn run(segments: &[(u32, &[u8])], base: u32) -> (Vec<u8>, StreamCounters) {
        let mut r = Reassembler::new(base, 1 << 20);
        let mut out = Vec::new();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data { bytes, .. } => out.extend_from_slice(bytes),
            Chunk::Gap { len, .. } => out.extend(std::iter::repeat_n(b'#', len as usize)),
        };
        for (i, (seq, data)) in segments.iter().enumerate() {
            r.segment(i as i64, *seq, data, data.len() as u32, &mut sink);
        }
        r.finish(99, &mut sink);
        (out, r.counters)
    }

    #[test]
    fn the_out_of_order_buffer_stays_within_its_cap() {
        // Many small holes first, then large segments behind them: giving up one hole per
        // segment would leave tens of kilobytes buffered against a cap of 100 bytes.
        let mut r = Reassembler::new(0, 100);
        let mut sink = |_: Chunk<'_>| {};
        for i in 0..50u32 {
            r.segment(0, 1 + 2 * i, b"x", 1, &mut sink);
            assert!(r.buffered_bytes() <= 100);
        }
        for i in 0..50u32 {
            r.segment(0, 1000 + 2000 * i, &[b'y'; 1400], 1400, &mut sink);
            assert!(
                r.buffered_bytes() <= 100,
                "{} bytes buffered",
                r.buffered_bytes()
            );
        }
        assert!(r.counters.buffer_cap_hits > 0);
    }

    #[test]
    fn pieces_the_snaplen_emptied_still_count_against_the_cap() {
        // Out-of-order segments whose payload the snaplen cut entirely: no bytes are kept,
        // but each piece is, so they are charged for it and the cap still bounds them.
        let mut r = Reassembler::new(0, 1000);
        let mut sink = |_: Chunk<'_>| {};
        for i in 0..10_000u32 {
            r.segment(0, 1 + 2000 * i, b"", 1400, &mut sink);
            assert!(
                r.buffered_bytes() <= 1000,
                "{} buffered",
                r.buffered_bytes()
            );
        }
        assert!(r.counters.buffer_cap_hits > 0);
        assert!(r.pending.len() <= 1000 / PIECE_COST);
    }

    #[test]
    fn a_stream_ends_when_its_fin_is_acknowledged_with_nothing_missing() {
        let mut sink = |_: Chunk<'_>| {};
        let mut r = Reassembler::new(0, 1 << 20);
        r.segment(0, 0, b"abc", 3, &mut sink);
        r.fin(3);
        assert!(!r.ended());
        // Acknowledging the bytes but not the FIN.
        r.ack(0, 3, &mut sink);
        assert!(!r.ended());
        r.ack(0, 4, &mut sink);
        assert!(r.ended());

        // A byte never captured: the FIN's acknowledgment makes it a gap, and then it ends.
        let mut r = Reassembler::new(0, 1 << 20);
        r.segment(0, 1, b"bc", 2, &mut sink);
        r.fin(3);
        r.ack(0, 1, &mut sink);
        assert!(!r.ended());
        r.ack(0, 4, &mut sink);
        assert!(r.ended());
        assert_eq!(r.counters.gaps, 1);

        // An acknowledgment beyond the FIN acknowledges no FIN of this stream.
        let mut r = Reassembler::new(0, 1 << 20);
        r.fin(0);
        r.ack(0, 5, &mut sink);
        assert!(!r.ended());
    }

    #[test]
    fn bytes_past_an_earlier_fin_are_not_delivered() {
        let mut r = Reassembler::new(0, 1 << 20);
        let mut got = Vec::new();
        r.fin(1);
        r.segment(0, 0, b"ab", 2, &mut |c: Chunk<'_>| {
            if let Chunk::Data { bytes, .. } = c {
                got.extend_from_slice(bytes);
            }
        });
        assert_eq!(got, b"a");
    }

    #[test]
    fn in_order_out_of_order_and_overlaps_give_the_same_stream() {
        let (s, c) = run(&[(100, b"abc"), (106, b"ghi"), (103, b"def")], 100);
        assert_eq!(s, b"abcdefghi");
        assert_eq!(c.out_of_order_segments, 1);
        // Overlaps: first copy wins, even when the later copy differs.
        let (s, c) = run(&[(100, b"abcd"), (102, b"XXef"), (100, b"abcdef")], 100);
        assert_eq!(s, b"abcdef");
        assert_eq!(c.retransmissions, 2);
    }

    #[test]
    fn differing_retransmission_is_an_anomaly() {
        let (_, c) = run(&[(1, b"hello"), (1, b"jello")], 1);
        assert_eq!((c.retransmissions, c.differing_retransmissions), (1, 1));
        let (_, c) = run(&[(1, b"hello"), (1, b"hello")], 1);
        assert_eq!((c.retransmissions, c.differing_retransmissions), (1, 0));
    }

    #[test]
    fn holes_become_gaps_and_delivery_continues() {
        let (s, c) = run(&[(0, b"ab"), (5, b"fg")], 0);
        assert_eq!(s, b"ab###fg");
        assert_eq!((c.gaps, c.gap_bytes), (1, 3));
    }

    #[test]
    fn acknowledged_unseen_bytes_are_a_gap_at_once() {
        let mut r = Reassembler::new(0, 1 << 20);
        let mut chunks = Vec::new();
        let mut sink = |c: Chunk<'_>| chunks.push(format!("{c:?}"));
        r.segment(1, 0, b"ab", 2, &mut sink);
        r.segment(2, 4, b"ef", 2, &mut sink);
        r.ack(3, 6, &mut sink);
        assert_eq!(chunks.len(), 3);
        assert!(chunks[1].contains("Gap { ts_ns: 3, offset: 2, len: 2, cause: NotCaptured"));
        assert!(chunks[2].contains("ts_ns: 2, offset: 4"), "{}", chunks[2]);
        assert_eq!(r.next_offset(), 6);
    }

    #[test]
    fn probes_are_not_data_and_sequence_numbers_wrap() {
        let base = u32::MAX - 2;
        let (s, c) = run(
            &[
                (base, b"abcd"),
                (base.wrapping_add(3), b"x"),
                (base.wrapping_add(4), b"ef"),
            ],
            base,
        );
        assert_eq!(s, b"abcdef");
        assert_eq!((c.probes, c.retransmissions), (1, 0));
    }

    #[test]
    fn snaplen_cut_bytes_are_gaps_in_place() {
        let mut r = Reassembler::new(0, 1 << 20);
        let mut out = Vec::new();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data { bytes, .. } => out.extend_from_slice(bytes),
            Chunk::Gap { len, cause, .. } => {
                assert_eq!(cause, GapCause::Snaplen);
                out.extend(std::iter::repeat_n(b'#', len as usize))
            }
        };
        r.segment(0, 6, b"gh", 4, &mut sink);
        r.segment(1, 0, b"abc", 6, &mut sink);
        assert_eq!(out, b"abc###gh##");
    }

    #[test]
    fn the_buffer_cap_gives_up_the_hole() {
        // Room for one 3-byte piece (and its bookkeeping), not two.
        let cap = 4 + PIECE_COST;
        let mut r = Reassembler::new(0, cap);
        let mut gaps = Vec::new();
        let mut sink = |c: Chunk<'_>| {
            if let Chunk::Gap { len, cause, .. } = c {
                gaps.push((len, cause))
            }
        };
        r.segment(0, 10, b"abc", 3, &mut sink);
        assert_eq!(r.counters.gaps, 0);
        r.segment(1, 20, b"def", 3, &mut sink);
        assert_eq!(gaps[0], (10, GapCause::BufferCap));
        assert!(r.buffered_bytes() <= cap);
        assert_eq!(r.counters.buffer_cap_hits, 1);
    }

    #[test]
    fn nothing_after_the_fin() {
        let mut r = Reassembler::new(0, 1 << 20);
        let mut n = 0;
        let mut sink = |c: Chunk<'_>| {
            if let Chunk::Data { bytes, .. } = c {
                n += bytes.len()
            }
        };
        r.segment(0, 0, b"abc", 3, &mut sink);
        r.fin(3);
        assert_eq!(r.segment(1, 3, b"zz", 2, &mut sink), SegmentKind::AfterFin);
        assert_eq!(n, 3);
    }
}
