//! TCP sequence numbers (RFC 9293 §3.4) mapped to 64-bit stream offsets.
//!
//! Sequence numbers wrap at 2^32; comparisons between them are only meaningful within half
//! the space (serial number arithmetic, RFC 1982). A [`SeqMap`] remembers where offset 0 is
//! (the byte after the SYN, or the first sequence number seen when the capture starts
//! mid-stream) and unwraps each new sequence number relative to a recent offset, so offsets
//! grow past 4 GiB without ambiguity.

/// Unwraps one direction's sequence numbers into offsets from its stream start.
#[derive(Debug, Clone, Copy)]
pub struct SeqMap {
    /// The sequence number of offset 0.
    base: u32,
    /// A recently seen offset, the reference for unwrapping.
    recent: i64,
}

impl SeqMap {
    /// Offset 0 is the byte with sequence number `base`.
    pub fn new(base: u32) -> Self {
        SeqMap { base, recent: 0 }
    }

    /// The offset of `seq`: the one nearest to the recent offset (within ±2^31). Negative
    /// for bytes before the stream start.
    pub fn offset(&self, seq: u32) -> i64 {
        let recent_seq = self.base.wrapping_add(self.recent as u32);
        self.recent + i64::from(seq.wrapping_sub(recent_seq) as i32)
    }

    /// Moves the reference for unwrapping forward as the stream advances.
    pub fn advance_to(&mut self, offset: i64) {
        if offset > self.recent {
            self.recent = offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_unwrap_across_the_32_bit_boundary() {
        let mut m = SeqMap::new(u32::MAX - 10);
        assert_eq!(m.offset(u32::MAX - 10), 0);
        assert_eq!(m.offset(5), 16);
        m.advance_to(16);
        // Four times around the sequence space, moving forward in steps.
        let mut off = 16i64;
        for _ in 0..(4 * 4096) {
            off += 1 << 20;
            let seq = (u32::MAX - 10).wrapping_add(off as u32);
            assert_eq!(m.offset(seq), off);
            m.advance_to(off);
        }
        // An old retransmission, just behind.
        let seq = (u32::MAX - 10).wrapping_add((off - 100) as u32);
        assert_eq!(m.offset(seq), off - 100);
        // A keep-alive probe one before the start.
        let m = SeqMap::new(1000);
        assert_eq!(m.offset(999), -1);
    }
}
