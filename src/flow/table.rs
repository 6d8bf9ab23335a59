//! The live connections of one shard, and their lifecycle in capture time.
//!
//! A connection is finalized (its record made, its memory freed) when it closed and the
//! linger passed, when it idled longer than the idle timeout, when a new connection takes
//! over its 5-tuple, when the live-connection cap needs room (least recently active first),
//! or at the end of the input.
//!
//! Each record carries the moment it was decided, `frame << 1` for the packet that superseded
//! or evicted it, `frame << 1 | 1` for the tick after `frame` (sent by the reader to every
//! shard at the same frames, once a second of capture time) whose sweep found it expired,
//! `u64::MAX` at the end. Records leave the table in (moment, first frame) order, which no
//! number of shards changes.

use hashbrown::HashTable;

use super::connection::{Connection, ConnectionRecord, EndReason, FlowConfig, StreamHandler};
use super::key::{Endpoint, FlowKey};
use crate::decode::TcpPacket;

/// Counts of the table's lifecycle decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounters {
    pub evicted: u64,
    pub idle_timeouts: u64,
    pub peak_live: u64,
}

/// A live connection with its key's hash. Boxed: a connection is large, and the table
/// moves its values when it grows.
struct Live<H> {
    hash: u64,
    conn: Box<Connection<H>>,
}

/// One shard's connections.
pub struct FlowTable<H> {
    cfg: FlowConfig,
    max_live: usize,
    /// Keyed by [`FlowKey::hash`], computed once per packet by whoever reads it.
    live: HashTable<Live<H>>,
    /// Finished records with their decision frame, not yet taken.
    done: Vec<(u64, ConnectionRecord<H>)>,
    /// Once the input ended: the connections still to be finalized, the first one last, and
    /// the input's end. They are finalized as they are taken, a few at a time, so that the
    /// end of a capture with many open connections does not hold all their records at once.
    closing: Vec<Box<Connection<H>>>,
    end_ns: i64,
    pub counters: TableCounters,
}

impl<H: StreamHandler> FlowTable<H> {
    /// A table holding at most `max_live` connections at once.
    pub fn new(cfg: FlowConfig, max_live: usize) -> Self {
        FlowTable {
            cfg,
            max_live: max_live.max(1),
            live: HashTable::new(),
            done: Vec::new(),
            closing: Vec::new(),
            end_ns: i64::MAX,
            counters: TableCounters::default(),
        }
    }

    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Takes a TCP packet; `frame` is its 1-based number in the input.
    pub fn packet(&mut self, p: &TcpPacket<'_>, frame: u64) {
        let src = Endpoint {
            ip: p.src,
            port: p.src_port,
        };
        let dst = Endpoint {
            ip: p.dst,
            port: p.dst_port,
        };
        let (key, from_lo) = FlowKey::of(src, dst);
        self.packet_keyed(p, key, key.hash(), from_lo, frame);
    }

    /// [`Self::packet`] with the key, its [`FlowKey::hash`] and which end of it sent `p`
    /// already made.
    pub fn packet_keyed(
        &mut self,
        p: &TcpPacket<'_>,
        key: FlowKey,
        hash: u64,
        from_lo: bool,
        frame: u64,
    ) {
        if let Ok(mut entry) = self.live.find_entry(hash, |l| l.conn.key() == key) {
            let live = entry.get_mut();
            if !live.conn.is_superseded_by(p, from_lo, &self.cfg) {
                live.conn.handle(p, from_lo, &self.cfg);
                return;
            }
            let (old, _) = entry.remove();
            let reason = if old.conn.closed_ns().is_some() {
                None
            } else if p.ts_ns - old.conn.last_ns() > self.cfg.idle_timeout_ns {
                self.counters.idle_timeouts += 1;
                Some(EndReason::IdleTimeout)
            } else {
                Some(EndReason::Superseded)
            };
            self.done
                .push((frame << 1, old.conn.finish(reason, None, &self.cfg)));
        } else if self.live.len() >= self.max_live {
            self.evict(frame);
        }
        let mut conn = Box::new(Connection::new(key, p, from_lo, frame));
        conn.handle(p, from_lo, &self.cfg);
        self.live
            .insert_unique(hash, Live { hash, conn }, |l| l.hash);
        self.counters.peak_live = self.counters.peak_live.max(self.live.len() as u64);
    }

    /// The capture reached `now_ns` after `frame`: finalizes connections that closed and
    /// lingered out, or idled out.
    pub fn tick(&mut self, now_ns: i64, frame: u64) {
        let now = now_ns;
        let cfg = self.cfg;
        let mut expired: Vec<Box<Connection<H>>> = self
            .live
            .extract_if(|l| {
                l.conn.closed_ns().is_some_and(|t| now - t > cfg.linger_ns)
                    || now - l.conn.last_ns() > cfg.idle_timeout_ns
            })
            .map(|l| l.conn)
            .collect();
        // Sorted while still boxed: sorting the finished records would move kilobytes each.
        expired.sort_unstable_by_key(|c| c.first_frame());
        for c in expired {
            let reason = if c.closed_ns().is_none() {
                self.counters.idle_timeouts += 1;
                Some(EndReason::IdleTimeout)
            } else {
                None
            };
            self.done
                .push(((frame << 1) | 1, c.finish(reason, None, &cfg)));
        }
    }

    /// Makes room: finalizes the least recently active sixteenth of the live connections,
    /// so that eviction costs O(1) per new connection on average.
    fn evict(&mut self, frame: u64) {
        let mut by_age: Vec<i64> = self.live.iter().map(|l| l.conn.last_ns()).collect();
        let n = (by_age.len() / 16).max(1);
        // The n-th oldest activity time: connections idle since then or longer go.
        let cutoff = if n < by_age.len() {
            *by_age.select_nth_unstable(n - 1).1
        } else {
            i64::MAX
        };
        let mut evicted: Vec<Box<Connection<H>>> = Vec::with_capacity(n);
        let mut taken = 0;
        // Exactly n go: at least n were active no later than the cutoff, and ties at it
        // are taken in the table's order, which the same input always gives.
        for l in self.live.extract_if(|l| {
            let go = taken < n && l.conn.last_ns() <= cutoff;
            taken += usize::from(go);
            go
        }) {
            evicted.push(l.conn);
        }
        evicted.sort_unstable_by_key(|c| c.first_frame());
        for c in evicted {
            // A connection that already closed (RST, or both FINs) only lingered to catch
            // trailing packets: the cap cut nothing short, so it ends as it closed, as a
            // lingered-out one does in `tick`, and is not counted as evicted.
            let reason = if c.closed_ns().is_some() {
                None
            } else {
                self.counters.evicted += 1;
                Some(EndReason::Evicted)
            };
            self.done
                .push((frame << 1, c.finish(reason, None, &self.cfg)));
        }
    }

    /// Whether [`Self::take_finished`] has records to hand out: a check cheap enough for
    /// every packet.
    pub fn has_finished(&self) -> bool {
        !self.done.is_empty() || !self.closing.is_empty()
    }

    /// Moves the records finished so far, in (decision frame, first frame) order, to `out`;
    /// after [`Self::finish`], those of every connection still open too.
    pub fn take_finished(&mut self, out: &mut Vec<(u64, ConnectionRecord<H>)>) {
        while self.take_some_finished(out, usize::MAX) {}
    }

    /// [`Self::take_finished`], but finalizes at most `limit` of the connections left open at
    /// the end of the input; returns whether some are still left.
    pub fn take_some_finished(
        &mut self,
        out: &mut Vec<(u64, ConnectionRecord<H>)>,
        limit: usize,
    ) -> bool {
        out.append(&mut self.done);
        let cfg = self.cfg;
        for _ in 0..limit {
            let Some(c) = self.closing.pop() else {
                break;
            };
            out.push((u64::MAX, c.finish(None, Some(self.end_ns), &cfg)));
        }
        !self.closing.is_empty()
    }

    /// The input ended at `end_ns`: every connection still live is to be finalized. Their
    /// records have the decision frame `u64::MAX`, come in first-frame order, and are made
    /// as they are taken with [`Self::take_finished`] or [`Self::take_some_finished`].
    pub fn finish(&mut self, end_ns: i64) {
        self.end_ns = end_ns;
        self.closing = self.live.drain().map(|l| l.conn).collect();
        // Popped from the end: the first frame last.
        self.closing
            .sort_unstable_by_key(|c| std::cmp::Reverse(c.first_frame()));
    }
}
