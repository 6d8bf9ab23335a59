//! IP fragment reassembly, bounded in memory and in capture time.
//!
//! Fragments are keyed by (source, destination, protocol, identification), as RFC 791 §3.2
//! and RFC 8200 §4.5 define a datagram. Overlapping fragments drop the whole datagram, as
//! RFC 5722 requires for IPv6 and Linux does for IPv4 since 4.19: an overlap is either an
//! attack or a capture artefact, and no receiver would have seen one agreed set of bytes.
//! An exact duplicate (same offset and length) is ignored. A datagram not completed within
//! [`FRAGMENT_TIMEOUT_NS`] of capture time (Linux's `ipfrag_time`, 30 s) is dropped; so is the
//! oldest when more than [`MAX_DATAGRAMS`] are pending or their bytes pass [`MAX_PENDING_BYTES`].

use std::net::IpAddr;

pub const FRAGMENT_TIMEOUT_NS: i64 = 30_000_000_000;
pub const MAX_DATAGRAMS: usize = 256;
pub const MAX_PENDING_BYTES: usize = 8 << 20;
/// IPv4 datagrams are at most 65,535 bytes; IPv6 fragments can describe up to 65,535 + 8191*8.
const MAX_DATAGRAM_LEN: u32 = 65_535 + 8 * 8191;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub id: u32,
}

/// One fragment as the decoder saw it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub key: FragmentKey,
    pub ts_ns: i64,
    /// Byte offset of this fragment in the datagram's payload.
    pub offset: u32,
    pub more_fragments: bool,
    /// The fragment's payload length according to its IP header.
    pub declared_len: u32,
    /// The payload bytes the capture kept (shorter than `declared_len` when cut).
    pub captured: &'a [u8],
}

/// What adding a fragment led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// Waiting for more fragments.
    Held,
    /// The datagram is whole: its payload is in [`Defragmenter::completed`], of which the
    /// first `captured` bytes were captured, out of `total` on the wire.
    Complete { total: u32, captured: u32 },
    /// The fragment (and its datagram) was dropped: overlap or impossible offsets.
    Dropped(&'static str),
}

struct Pending {
    key: FragmentKey,
    first_ts: i64,
    /// Payload bytes placed at their offsets; unknown bytes are zero.
    data: Vec<u8>,
    /// (start, declared end, captured end) of each fragment, kept sorted by start.
    pieces: Vec<(u32, u32, u32)>,
    total: Option<u32>,
}

/// Pending datagrams of one decoder.
#[derive(Default)]
pub struct Defragmenter {
    pending: Vec<Pending>,
    pending_bytes: usize,
    completed: Vec<u8>,
    /// Datagrams dropped by the timeout or the caps.
    pub expired: u64,
}

impl Defragmenter {
    /// The payload of the datagram completed last.
    pub fn completed(&self) -> &[u8] {
        &self.completed
    }

    pub fn add(&mut self, frag: Fragment<'_>) -> Reassembly {
        self.expire(frag.ts_ns);
        let start = frag.offset;
        let end = start.saturating_add(frag.declared_len);
        if end > MAX_DATAGRAM_LEN {
            return Reassembly::Dropped("fragment ends past the largest possible datagram");
        }
        let captured_end = start + (frag.captured.len() as u32).min(frag.declared_len);
        let idx = match self.pending.iter().position(|p| p.key == frag.key) {
            Some(i) => i,
            None => {
                while self.pending.len() >= MAX_DATAGRAMS {
                    self.drop_at(0);
                    self.expired += 1;
                }
                self.pending.push(Pending {
                    key: frag.key,
                    first_ts: frag.ts_ns,
                    data: Vec::new(),
                    pieces: Vec::new(),
                    total: None,
                });
                self.pending.len() - 1
            }
        };
        let Some(p) = self.pending.get_mut(idx) else {
            return Reassembly::Dropped("fragment table out of step");
        };
        if p.pieces.iter().any(|&(s, e, _)| s == start && e == end) {
            return Reassembly::Held;
        }
        if p.pieces.iter().any(|&(s, e, _)| start < e && s < end) {
            self.drop_at(idx);
            return Reassembly::Dropped("overlapping fragments");
        }
        if !frag.more_fragments {
            if p.total.is_some_and(|t| t != end) || p.pieces.iter().any(|&(_, e, _)| e > end) {
                self.drop_at(idx);
                return Reassembly::Dropped("two different last fragments");
            }
            p.total = Some(end);
        } else if p.total.is_some_and(|t| end > t) {
            self.drop_at(idx);
            return Reassembly::Dropped("fragment past the end of its datagram");
        }
        let grow = (captured_end as usize).saturating_sub(p.data.len());
        if self.pending_bytes + grow > MAX_PENDING_BYTES {
            self.drop_at(idx);
            self.expired += 1;
            return Reassembly::Dropped("too many fragment bytes pending");
        }
        let Some(p) = self.pending.get_mut(idx) else {
            return Reassembly::Dropped("fragment table out of step");
        };
        if p.data.len() < captured_end as usize {
            p.data.resize(captured_end as usize, 0);
        }
        // Both ranges are `captured_end - start` long: `data` was just grown to
        // `captured_end`, and `captured_end` is at most `start` plus the captured length.
        let n = (captured_end - start) as usize;
        if let (Some(to), Some(from)) = (
            p.data.get_mut(start as usize..captured_end as usize),
            frag.captured.get(..n),
        ) {
            to.copy_from_slice(from);
        }
        let at = p.pieces.partition_point(|&(s, _, _)| s < start);
        p.pieces.insert(at, (start, end, captured_end));
        self.pending_bytes += grow;

        let Some(total) = p.total else {
            return Reassembly::Held;
        };
        // Whole when the pieces, sorted by start, leave no hole from 0 to the end.
        let mut reach = 0;
        let mut captured_prefix = 0;
        for &(s, e, c) in &p.pieces {
            if s != reach {
                return Reassembly::Held;
            }
            if captured_prefix == s {
                captured_prefix = c;
            }
            reach = e;
        }
        if reach != total {
            return Reassembly::Held;
        }
        let done = self.pending.swap_remove(idx);
        self.pending_bytes -= done.data.len();
        self.completed = done.data;
        self.completed.truncate(captured_prefix as usize);
        Reassembly::Complete {
            total,
            captured: captured_prefix,
        }
    }

    fn expire(&mut self, now: i64) {
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|p| {
            let keep = now.saturating_sub(p.first_ts) <= FRAGMENT_TIMEOUT_NS;
            if !keep {
                freed += p.data.len();
            }
            keep
        });
        self.pending_bytes -= freed;
        self.expired += (before - self.pending.len()) as u64;
    }

    fn drop_at(&mut self, idx: usize) {
        let p = self.pending.remove(idx);
        self.pending_bytes -= p.data.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> FragmentKey {
        FragmentKey {
            src: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            protocol: 6,
            id,
        }
    }

    fn frag(id: u32, ts: i64, offset: u32, more: bool, bytes: &[u8]) -> Fragment<'_> {
        Fragment {
            key: key(id),
            ts_ns: ts,
            offset,
            more_fragments: more,
            declared_len: bytes.len() as u32,
            captured: bytes,
        }
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut d = Defragmenter::default();
        let data: Vec<u8> = (0..40u8).collect();
        assert_eq!(d.add(frag(1, 0, 24, false, &data[24..])), Reassembly::Held);
        assert_eq!(d.add(frag(1, 1, 0, true, &data[..8])), Reassembly::Held);
        assert_eq!(
            d.add(frag(1, 2, 8, true, &data[8..24])),
            Reassembly::Complete {
                total: 40,
                captured: 40
            }
        );
        assert_eq!(d.completed(), &data[..]);
        assert_eq!(d.pending.len(), 0);
        assert_eq!(d.pending_bytes, 0);
    }

    #[test]
    fn overlap_drops_the_datagram_and_duplicates_are_ignored() {
        let mut d = Defragmenter::default();
        let data = [7u8; 32];
        assert_eq!(d.add(frag(2, 0, 0, true, &data[..16])), Reassembly::Held);
        assert_eq!(d.add(frag(2, 0, 0, true, &data[..16])), Reassembly::Held);
        assert!(matches!(
            d.add(frag(2, 0, 8, false, &data[..16])),
            Reassembly::Dropped(_)
        ));
        assert_eq!(d.pending.len(), 0);
        assert_eq!(d.pending_bytes, 0);
    }

    #[test]
    fn stale_datagrams_expire_and_caps_hold() {
        let mut d = Defragmenter::default();
        let data = [1u8; 8];
        for id in 0..(MAX_DATAGRAMS as u32 + 10) {
            d.add(frag(id, 0, 0, true, &data));
        }
        assert_eq!(d.pending.len(), MAX_DATAGRAMS);
        d.add(frag(9999, FRAGMENT_TIMEOUT_NS + 1, 0, true, &data));
        assert_eq!(d.pending.len(), 1);
        assert!(d.expired >= MAX_DATAGRAMS as u64);
    }

    #[test]
    fn cut_fragment_limits_the_captured_prefix() {
        let mut d = Defragmenter::default();
        let data = [3u8; 24];
        let mut first = frag(3, 0, 0, true, &data[..4]);
        first.declared_len = 16;
        assert_eq!(d.add(first), Reassembly::Held);
        assert_eq!(
            d.add(frag(3, 0, 16, false, &data[..8])),
            Reassembly::Complete {
                total: 24,
                captured: 4
            }
        );
        assert_eq!(d.completed().len(), 4);
    }
}
