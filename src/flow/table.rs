//! The live connections of one shard, and their lifecycle in capture time.
//!
//! A connection is finalized (its record made, its memory freed) at the packet that made it
//! over (both FINs acknowledged, see [`Connection::is_over`]), when it closed otherwise and
//! the linger passed, when it idled longer than the idle timeout, when a new connection takes
//! over its 5-tuple, when the live-connection cap needs room (least recently active first),
//! or at the end of the input.
//!
//! Each record carries the moment it was decided, `frame << 1` for the packet that made it
//! over, superseded or evicted it, `frame << 1 | 1` for the tick after `frame` (sent by the
//! reader to every shard at the same frames, every hundredth of a second of capture time)
//! whose sweep found it expired, `u64::MAX` at the end. Records leave the table in (moment,
//! first frame) order, which no number of shards changes.
//!
//! A connection that is over leaves only a tombstone for the linger (its key, ISNs and
//! times), which tells its trailing segments, counted and dropped, from a new connection on
//! the same ports. On short connections nearly all of them end so. Finished at once, their
//! memory is reused by the next connections while it is cached; kept whole for the linger,
//! they made most of the live memory, and finishing each one after 2 s was a round of cache
//! misses (a third of the time on a capture of short connections).
//!
//! Sweeps are frequent and touch only what expires: closed connections wait in a queue
//! ordered by their close, and the idle check reads activity times kept in the table's own
//! entries, once a second. Finishing lingering connections a few at a time, and reusing their
//! boxes at once for new connections, keeps that memory in the cache. For the same reason a
//! connection taken over by a new one on its ports is finished with the next few dozen such,
//! not at once: its memory, untouched since it closed, is warmed with theirs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use hashbrown::HashTable;

use super::connection::{
    Connection, ConnectionRecord, EndReason, FlowConfig, Reusable, StreamHandler,
};
use super::key::FlowKey;
use crate::decode::TcpPacket;

/// Counts of the table's lifecycle decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounters {
    pub evicted: u64,
    pub idle_timeouts: u64,
    pub peak_live: u64,
    /// Segments that arrived on a connection already over (see [`Connection::is_over`])
    /// within its linger: retransmissions, duplicates, strays. They belong to no record.
    pub trailing: u64,
}

/// A live connection with its key's hash and its latest activity (for the idle sweep and
/// the cap, which then read the table only). Boxed: a connection is large, and the table
/// moves its values when it grows.
struct Live<H> {
    hash: u64,
    last_ns: i64,
    first_frame: u64,
    conn: Box<Connection<H>>,
}

/// What is left of a connection that was over and finished at once, for its linger: enough
/// to tell its trailing segments from a new connection's on the same ports.
struct Tombstone {
    hash: u64,
    key: FlowKey,
    first_frame: u64,
    closed_ns: i64,
    last_ns: i64,
    /// The ISN each end sent in its SYN, `key.lo`'s first.
    isns: [Option<u32>; 2],
}

impl Tombstone {
    /// [`Connection::is_superseded_by`] for the connection that was: a SYN with another ISN
    /// opens a new connection (a SYN-ACK too, as this one is closed), and so does any
    /// segment once the linger or the idle timeout passed.
    fn is_superseded_by(&self, p: &TcpPacket<'_>, from_lo: bool, cfg: &FlowConfig) -> bool {
        let isn = self.isns[usize::from(!from_lo)];
        if p.flags.syn() && !p.flags.rst() && isn != Some(p.seq) {
            return true;
        }
        p.ts_ns - self.closed_ns > cfg.linger_ns || p.ts_ns - self.last_ns > cfg.idle_timeout_ns
    }
}

/// How often, in capture time, the idle sweep reads every live connection's activity time.
const IDLE_SWEEP_NS: i64 = 1_000_000_000;

/// Expired connections whose memory is warmed together before they are finished: enough
/// misses to overlap, few enough to stay in the first-level cache's reach.
const WARM_CHUNK: usize = 32;

/// Boxes of finished connections kept for new ones: enough for a sweep's worth on busy
/// short-connection captures, few enough to stay in the cache (about 0.6 MiB).
const SPARE_BOXES: usize = 512;

/// A closed connection waiting to linger out: (close time, first frame, key hash).
type Closed = (i64, u64, u64);

/// The closed connections in close-time order. Closes come in capture order, so nearly all
/// are appended; the few stamped before the latest one (the capture's clock stepped back)
/// wait in a heap, so that a capture whose clock keeps stepping back costs a heap push per
/// close, not a move of half the queue.
#[derive(Default)]
struct Lingering {
    in_order: VecDeque<Closed>,
    stepped_back: BinaryHeap<Reverse<Closed>>,
}

impl Lingering {
    fn push(&mut self, c: Closed) {
        if self.in_order.back().is_none_or(|last| *last <= c) {
            self.in_order.push_back(c);
        } else {
            self.stepped_back.push(Reverse(c));
        }
    }

    /// The earliest close.
    fn first(&self) -> Option<Closed> {
        let heap = self.stepped_back.peek().map(|r| r.0);
        match (self.in_order.front().copied(), heap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop_first(&mut self) {
        let from_heap = match (self.in_order.front(), self.stepped_back.peek()) {
            (Some(a), Some(b)) => b.0 < *a,
            (a, _) => a.is_none(),
        };
        if from_heap {
            self.stepped_back.pop();
        } else {
            self.in_order.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.in_order.len() + self.stepped_back.len()
    }

    fn retain(&mut self, keep: impl Fn(&Closed) -> bool) {
        self.in_order.retain(|c| keep(c));
        self.stepped_back.retain(|c| keep(&c.0));
    }

    fn clear(&mut self) {
        self.in_order.clear();
        self.stepped_back.clear();
    }
}

/// One shard's connections.
pub struct FlowTable<H> {
    cfg: FlowConfig,
    max_live: usize,
    /// Keyed by [`FlowKey::hash`], computed once per packet by whoever reads it.
    live: HashTable<Live<H>>,
    /// Finished records with their decision frame, not yet taken. Boxed: a record is most of
    /// a kilobyte, and on its way to being read and handed back it would be moved five times.
    done: Vec<(u64, Box<ConnectionRecord<H>>)>,
    /// Once the input ended: the connections still to be finalized, the first one last, and
    /// the input's end. They are finalized as they are taken, a few at a time, so that the
    /// end of a capture with many open connections does not hold all their records at once.
    closing: Vec<Box<Connection<H>>>,
    end_ns: i64,
    /// Closed connections, the next to linger out first. Entries of connections that left
    /// the table earlier are skipped when they come up.
    lingering: Lingering,
    next_idle_sweep: i64,
    /// Boxes of finished connections, the latest last: reused before allocating.
    spare: Vec<Box<Connection<H>>>,
    /// Handlers and timelines of finished connections handed back by [`Self::recycle`], the
    /// latest last: new connections take them before allocating their own.
    reusable: Vec<Reusable<H>>,
    /// The boxes of records handed back, emptied: the next records are written into them.
    husks: Vec<Box<ConnectionRecord<H>>>,
    /// The input ended: nothing more to reuse.
    ended: bool,
    /// Connections a new one took over, with their decision moment and end reason, in
    /// decision order: finished a batch at a time (see [`Self::finish_batch`]), before any
    /// later decision is finished. On short connections whose ports come round again within
    /// the linger, nearly half of all connections end this way.
    superseded: Vec<(u64, Option<EndReason>, Box<Connection<H>>)>,
    /// Connections that were over and were finished at once, remembered for their linger.
    tombstones: HashTable<Tombstone>,
    /// (close time, key hash, first frame) of the tombstones, oldest first.
    tombstone_order: VecDeque<Closed>,
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
            lingering: Lingering::default(),
            next_idle_sweep: i64::MIN,
            spare: Vec::new(),
            reusable: Vec::new(),
            husks: Vec::new(),
            ended: false,
            superseded: Vec::new(),
            tombstones: HashTable::new(),
            tombstone_order: VecDeque::new(),
            counters: TableCounters::default(),
        }
    }

    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Takes a TCP packet; `frame` is its 1-based number in the input.
    pub fn packet(&mut self, p: &TcpPacket<'_>, frame: u64) {
        let (key, from_lo) = FlowKey::of_packet(p);
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
        // The whole hash first: the key is in the connection's box, a cache miss away for
        // the entries whose few hash bits the table matched by chance (about one in eight
        // lookups of a new connection's key on a busy table).
        let same = |l: &Live<H>| l.hash == hash && l.conn.key() == key;
        if let Ok(mut entry) = self.live.find_entry(hash, same) {
            let live = entry.get_mut();
            if !live.conn.is_superseded_by(p, from_lo, &self.cfg) {
                let was_open = live.conn.closed_ns().is_none();
                live.conn.handle(p, from_lo, &self.cfg);
                live.last_ns = live.conn.last_ns();
                if was_open {
                    Self::note_close(&mut self.lingering, &live.conn, hash);
                }
                if self.cfg.finish_when_over
                    && live.conn.closed_ns().is_some()
                    && live.conn.is_over()
                {
                    let (over, _) = entry.remove();
                    self.finish_over(over, frame);
                }
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
            self.superseded.push((frame << 1, reason, old.conn));
        } else {
            if let Ok(entry) = self.tombstones.find_entry(hash, |t| t.key == key) {
                if !entry.get().is_superseded_by(p, from_lo, &self.cfg) {
                    self.counters.trailing += 1;
                    return;
                }
                entry.remove();
            }
            if self.live.len() >= self.max_live {
                self.evict(frame);
            }
        }
        let conn = Connection::reusing(key, p, from_lo, frame, self.reusable.pop());
        let mut conn = match self.spare.pop() {
            Some(mut spare) => {
                *spare = conn;
                spare
            }
            None => Box::new(conn),
        };
        conn.handle(p, from_lo, &self.cfg);
        Self::note_close(&mut self.lingering, &conn, hash);
        let live = Live {
            hash,
            last_ns: conn.last_ns(),
            first_frame: frame,
            conn,
        };
        self.live.insert_unique(hash, live, |l| l.hash);
        self.counters.peak_live = self.counters.peak_live.max(self.live.len() as u64);
        if self.lingering.len() > 2 * self.max_live + 1024 {
            self.forget_gone();
        }
    }

    /// Finishes a connection that is over (see [`Connection::is_over`]) at the packet that
    /// made it so, `frame`, while its memory is still cached, and keeps a tombstone of it
    /// for its linger. Lingering out seconds later instead would find its memory cold, and
    /// on short connections nearly all live memory would be such lingering connections.
    fn finish_over(&mut self, over: Live<H>, frame: u64) {
        // Records leave in decision order: the superseded ones were decided earlier.
        self.finish_superseded();
        let conn = &over.conn;
        let closed_ns = conn.closed_ns().unwrap_or(over.last_ns);
        let tombstone = Tombstone {
            hash: over.hash,
            key: conn.key(),
            first_frame: over.first_frame,
            closed_ns,
            last_ns: over.last_ns,
            isns: conn.isns(),
        };
        self.tombstones
            .insert_unique(over.hash, tombstone, |t| t.hash);
        self.tombstone_order
            .push_back((closed_ns, over.hash, over.first_frame));
        // Tombstones only keep trailing segments out of new records: beyond the cap, the
        // oldest go.
        while self.tombstones.len() > self.max_live {
            self.forget_oldest_tombstone();
        }
        // Entries of tombstones a new connection replaced wait for their time in the queue:
        // when ports come round fast, they are dropped early, so that the queue stays
        // bounded by the cap however many connections end within one linger.
        if self.tombstone_order.len() > 2 * self.max_live + 1024 {
            let tombstones = &self.tombstones;
            self.tombstone_order.retain(|&(_, hash, first_frame)| {
                tombstones
                    .find(hash, |t| t.first_frame == first_frame)
                    .is_some()
            });
        }
        self.finish_one(frame << 1, over.conn, None);
    }

    fn forget_oldest_tombstone(&mut self) {
        if let Some((_, hash, first_frame)) = self.tombstone_order.pop_front()
            && let Ok(entry) = self
                .tombstones
                .find_entry(hash, |t| t.first_frame == first_frame)
        {
            entry.remove();
        }
    }

    /// Queues `conn` to linger out if it is closed (called once, when it closes).
    fn note_close(lingering: &mut Lingering, conn: &Connection<H>, hash: u64) {
        if let Some(t) = conn.closed_ns() {
            lingering.push((t, conn.first_frame(), hash));
        }
    }

    /// Drops the lingering entries of connections no longer in the table (superseded or
    /// evicted ones), so that the queue stays bounded by the live connections.
    fn forget_gone(&mut self) {
        let live = &self.live;
        self.lingering.retain(|&(_, first_frame, hash)| {
            live.find(hash, |l| l.first_frame == first_frame).is_some()
        });
    }

    /// Makes `conn`'s record, decided at `moment`, and keeps its box for a new connection.
    fn finish_one(&mut self, moment: u64, mut conn: Box<Connection<H>>, reason: Option<EndReason>) {
        let record = conn.finish(reason, None, &self.cfg);
        let record = match self.husks.pop() {
            Some(mut husk) => {
                *husk = record;
                husk
            }
            None => Box::new(record),
        };
        self.done.push((moment, record));
        if self.spare.len() < SPARE_BOXES {
            self.spare.push(conn);
        }
    }

    /// The capture reached `now_ns` after `frame`: finalizes connections that closed and
    /// lingered out, or idled out.
    pub fn tick(&mut self, now_ns: i64, frame: u64) {
        let now = now_ns;
        let cfg = self.cfg;
        // Tombstones were stamped in the order their connections ended, which is nearly
        // the order they closed: one that closed earlier than the one before it goes a
        // little late, which only matters for memory.
        while self
            .tombstone_order
            .front()
            .is_some_and(|&(closed_ns, ..)| now - closed_ns > cfg.linger_ns)
        {
            self.forget_oldest_tombstone();
        }
        let mut expired: Vec<Box<Connection<H>>> = Vec::new();
        while let Some((closed_ns, first_frame, hash)) = self.lingering.first() {
            if now - closed_ns <= cfg.linger_ns {
                break;
            }
            self.lingering.pop_first();
            if let Ok(entry) = self.live.find_entry(hash, |l| l.first_frame == first_frame) {
                expired.push(entry.remove().0.conn);
            }
        }
        if now >= self.next_idle_sweep {
            self.next_idle_sweep = now.saturating_add(IDLE_SWEEP_NS);
            expired.extend(
                self.live
                    .extract_if(|l| now - l.last_ns > cfg.idle_timeout_ns)
                    .map(|l| l.conn),
            );
        }
        // Sorted while still boxed: sorting the finished records would move kilobytes each.
        // The superseded ones go first: they were decided at packets before this tick.
        expired.sort_unstable_by_key(|c| c.first_frame());
        let moment = (frame << 1) | 1;
        let mut batch = std::mem::take(&mut self.superseded);
        batch.extend(expired.into_iter().map(|c| {
            let reason = if c.closed_ns().is_none() {
                self.counters.idle_timeouts += 1;
                Some(EndReason::IdleTimeout)
            } else {
                None
            };
            (moment, reason, c)
        }));
        self.finish_batch(batch);
    }

    /// Finishes the connections superseded since the last batch.
    fn finish_superseded(&mut self) {
        if !self.superseded.is_empty() {
            let batch = std::mem::take(&mut self.superseded);
            self.finish_batch(batch);
        }
    }

    /// Finishes `batch`, in its order (decision moment, then first frame). Their memory was
    /// last touched long ago, so it is warmed a chunk at a time first: the reads of one
    /// connection independent of the others', their cache misses overlap, where finishing
    /// them one by one would wait for each miss in turn.
    fn finish_batch(&mut self, mut batch: Vec<(u64, Option<EndReason>, Box<Connection<H>>)>) {
        // Taken from the end.
        batch.reverse();
        while !batch.is_empty() {
            let from = batch.len().saturating_sub(WARM_CHUNK);
            let chunk = batch.get(from..).unwrap_or_default();
            let mut w = chunk.iter().fold(0, |w, c| w ^ c.2.warm_state());
            w = chunk.iter().fold(w, |w, c| w ^ c.2.warm_heap());
            std::hint::black_box(w);
            for (moment, reason, c) in batch.drain(from..).rev() {
                self.finish_one(moment, c, reason);
            }
        }
    }

    /// Makes room: finalizes the least recently active sixteenth of the live connections,
    /// so that eviction costs O(1) per new connection on average.
    fn evict(&mut self, frame: u64) {
        self.finish_superseded();
        let mut by_age: Vec<i64> = self.live.iter().map(|l| l.last_ns).collect();
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
            let go = taken < n && l.last_ns <= cutoff;
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
            self.finish_one(frame << 1, c, reason);
        }
    }

    /// Takes back a record handed out by [`Self::take_finished`] once it was read: what it
    /// allocated serves the next connections (see [`Reusable`]).
    pub fn recycle(&mut self, mut record: Box<ConnectionRecord<H>>) {
        if !self.ended && self.reusable.len() < SPARE_BOXES {
            self.reusable.push(Reusable::from_record(&mut record));
            if self.husks.len() < SPARE_BOXES {
                self.husks.push(record);
            }
        }
    }

    /// Whether [`Self::take_finished`] has records to hand out, or enough superseded
    /// connections to finish together: a check cheap enough for every packet. A few
    /// superseded connections may still be waiting when it says no; [`Self::take_finished`]
    /// finishes them too.
    pub fn has_finished(&self) -> bool {
        !self.done.is_empty() || !self.closing.is_empty() || self.superseded.len() >= WARM_CHUNK
    }

    /// Moves the records finished so far, in (decision frame, first frame) order, to `out`;
    /// after [`Self::finish`], those of every connection still open too.
    pub fn take_finished(&mut self, out: &mut Vec<(u64, Box<ConnectionRecord<H>>)>) {
        while self.take_some_finished(out, usize::MAX) {}
    }

    /// [`Self::take_finished`], but finalizes at most `limit` of the connections left open at
    /// the end of the input; returns whether some are still left.
    pub fn take_some_finished(
        &mut self,
        out: &mut Vec<(u64, Box<ConnectionRecord<H>>)>,
        limit: usize,
    ) -> bool {
        self.finish_superseded();
        if out.is_empty() {
            // Records are most of a kilobyte each: handed over without moving them.
            std::mem::swap(out, &mut self.done);
        } else {
            out.append(&mut self.done);
        }
        let cfg = self.cfg;
        for _ in 0..limit {
            let Some(mut c) = self.closing.pop() else {
                break;
            };
            out.push((u64::MAX, Box::new(c.finish(None, Some(self.end_ns), &cfg))));
        }
        !self.closing.is_empty()
    }

    /// The input ended at `end_ns`: every connection still live is to be finalized. Their
    /// records have the decision frame `u64::MAX`, come in first-frame order, and are made
    /// as they are taken with [`Self::take_finished`] or [`Self::take_some_finished`].
    pub fn finish(&mut self, end_ns: i64) {
        self.finish_superseded();
        self.end_ns = end_ns;
        self.closing = self.live.drain().map(|l| l.conn).collect();
        self.lingering.clear();
        self.tombstones.clear();
        self.tombstone_order.clear();
        self.spare.clear();
        self.reusable.clear();
        self.husks.clear();
        self.ended = true;
        // Popped from the end: the first frame last.
        self.closing
            .sort_unstable_by_key(|c| std::cmp::Reverse(c.first_frame()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;

    const S: i64 = 1_000_000_000;

    /// A segment from 127.0.0.1:`port` to 127.0.0.1:80 with `payload` and `flags`.
    fn packet(ts_ns: i64, port: u16, flags: u8, payload: &[u8]) -> TcpPacket<'_> {
        TcpPacket::loopback(ts_ns, (port, 80), flags, (1000, 0), payload)
    }

    fn first_frames(table: &mut FlowTable<()>) -> Vec<u64> {
        let mut done = Vec::new();
        table.take_finished(&mut done);
        done.iter().map(|(_, r)| r.first_frame).collect()
    }

    #[test]
    fn a_close_stamped_before_an_earlier_one_still_lingers_out_on_time() {
        let mut table = FlowTable::<()>::new(FlowConfig::default(), 16);
        // Frame 1 closes at 5 s; frame 2's RST carries a timestamp a second earlier, as
        // captures merged from several interfaces can.
        table.packet(&packet(5 * S, 1001, TcpFlags::RST, &[]), 1);
        table.packet(&packet(4 * S, 1002, TcpFlags::RST, &[]), 2);
        table.tick(6 * S + 1, 2);
        assert_eq!(first_frames(&mut table), [2]);
        table.tick(7 * S + 1, 2);
        assert_eq!(first_frames(&mut table), [1]);
        assert_eq!(table.live(), 0);
    }

    #[test]
    fn closes_come_out_in_close_order_whatever_order_they_were_stamped_in() {
        let mut lingering = Lingering::default();
        // Mostly ascending, every third stepping back by a varying amount.
        let times: Vec<i64> = (0..3000i64)
            .map(|i| {
                if i % 3 == 2 {
                    i * 10 - (i * 7919) % 500
                } else {
                    i * 10
                }
            })
            .collect();
        for (i, &t) in times.iter().enumerate() {
            lingering.push((t, i as u64, 0));
        }
        assert_eq!(lingering.len(), times.len());
        let mut out = Vec::new();
        while let Some(c) = lingering.first() {
            lingering.pop_first();
            out.push(c);
        }
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(out, sorted);
        assert_eq!(out.len(), times.len());
    }

    #[test]
    fn the_lingering_queue_forgets_connections_that_left_the_table() {
        let max_live = 4;
        let mut table = FlowTable::<()>::new(FlowConfig::default(), max_live);
        // Closed connections that the cap pushes out before they linger out.
        for i in 0..20_000u64 {
            table.packet(
                &packet(S, 1000 + (i % 60_000) as u16, TcpFlags::RST, &[]),
                i + 1,
            );
            assert!(table.lingering.len() <= 2 * max_live + 1024 + 1);
        }
        assert_eq!(first_frames(&mut table).len(), 20_000 - max_live);
    }

    #[test]
    fn a_superseded_connection_is_handed_on_before_later_decisions() {
        let mut table = FlowTable::<()>::new(FlowConfig::default(), 2);
        table.packet(&packet(0, 1001, TcpFlags::SYN, &[]), 1);
        table.packet(&packet(0, 1001, TcpFlags::RST, &[]), 2);
        // A new SYN on the same ports takes over at frame 3: decided then, finished later.
        let mut syn = packet(S / 10, 1001, TcpFlags::SYN, &[]);
        syn.seq = 5000;
        table.packet(&syn, 3);
        table.packet(&packet(S / 10, 1002, TcpFlags::SYN, &[]), 4);
        // The cap (2) evicts at frame 5, after the takeover at frame 3.
        table.packet(&packet(S / 10, 1003, TcpFlags::SYN, &[]), 5);
        let mut done = Vec::new();
        table.take_finished(&mut done);
        let decided: Vec<(u64, u64)> = done.iter().map(|(m, r)| (*m, r.first_frame)).collect();
        assert_eq!(decided, [(3 << 1, 1), (5 << 1, 3)]);
        assert_eq!(done[0].1.end, EndReason::Reset);
        assert_eq!(done[1].1.end, EndReason::Evicted);
    }

    /// A segment of the connection 127.0.0.1:1001 -> 127.0.0.1:80, from the client or the
    /// server.
    fn segment(ts_ns: i64, from_client: bool, flags: u8, seq: u32, ack: u32) -> TcpPacket<'static> {
        let mut p = packet(ts_ns, 1001, flags, &[]);
        if !from_client {
            (p.src_port, p.dst_port) = (80, 1001);
        }
        (p.seq, p.ack) = (seq, ack);
        p
    }

    /// A whole connection on 127.0.0.1:1001 -> 127.0.0.1:80 whose client ISN is `isn`: the
    /// handshake, both FINs, and the acknowledgment of the last, which ends it.
    fn whole_connection(ts_ns: i64, isn: u32) -> [TcpPacket<'static>; 6] {
        const A: u8 = TcpFlags::ACK;
        [
            segment(ts_ns, true, TcpFlags::SYN, isn, 0),
            segment(ts_ns, false, TcpFlags::SYN | A, 500, isn + 1),
            segment(ts_ns, true, A, isn + 1, 501),
            segment(ts_ns, true, TcpFlags::FIN | A, isn + 1, 501),
            segment(ts_ns, false, TcpFlags::FIN | A, 501, isn + 2),
            segment(ts_ns, true, A, isn + 2, 502),
        ]
    }

    #[test]
    fn tombstones_stay_bounded_when_ports_come_round_within_the_linger() {
        let max_live = 4;
        let mut table = FlowTable::<()>::new(FlowConfig::default(), max_live);
        let mut frame = 0;
        let mut done = Vec::new();
        // 20,000 connections on the same ports at the same instant: each replaces the
        // tombstone of the one before.
        for i in 0..20_000u32 {
            for p in whole_connection(S, 1000 + i * 10) {
                frame += 1;
                table.packet(&p, frame);
            }
            assert!(table.tombstone_order.len() <= 2 * max_live + 1024 + 1);
            assert!(table.tombstones.len() <= 1);
            table.take_finished(&mut done);
        }
        assert_eq!(done.len(), 20_000);
        assert!(done.iter().all(|(_, r)| r.end == EndReason::Closed));
    }

    #[test]
    fn a_connection_is_finished_once_over_and_its_trailing_segments_join_nothing() {
        const A: u8 = TcpFlags::ACK;
        let mut table = FlowTable::<()>::new(FlowConfig::default(), 16);
        let handshake_and_fins = [
            segment(0, true, TcpFlags::SYN, 100, 0),
            segment(1, false, TcpFlags::SYN | A, 500, 101),
            segment(2, true, A, 101, 501),
            segment(3, true, TcpFlags::FIN | A, 101, 501),
            segment(4, false, TcpFlags::FIN | A, 501, 102),
        ];
        for (i, p) in handshake_and_fins.iter().enumerate() {
            table.packet(p, i as u64 + 1);
        }
        // Both FINs seen, the server's not yet acknowledged: still live.
        assert!(!table.has_finished());
        assert_eq!(table.live(), 1);
        table.packet(&segment(5, true, A, 102, 502), 6);
        // Over: finished at that packet, without a sweep.
        assert_eq!(table.live(), 0);
        let mut done = Vec::new();
        table.take_finished(&mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, 6 << 1);
        let r = &done[0].1;
        assert_eq!((r.end, r.end_ns), (EndReason::Closed, 5));
        assert_eq!(r.client_sent.packets + r.server_sent.packets, 6);
        // A duplicate of the last acknowledgment and a late RST: trailing, no new connection.
        table.packet(&segment(6, true, A, 102, 502), 7);
        table.packet(&segment(7, false, TcpFlags::RST, 502, 0), 8);
        assert_eq!(table.counters.trailing, 2);
        assert_eq!(table.live(), 0);
        // A SYN with a new ISN on the same ports opens the next connection.
        table.packet(&segment(S, true, TcpFlags::SYN, 9000, 0), 9);
        assert_eq!(table.live(), 1);
        // As does any segment once the linger passed: the tombstone is gone by then.
        table.finish(S);
        table.take_finished(&mut done);
        table = FlowTable::<()>::new(FlowConfig::default(), 16);
        for (i, p) in handshake_and_fins.iter().enumerate() {
            table.packet(p, i as u64 + 1);
        }
        table.packet(&segment(5, true, A, 102, 502), 6);
        table.tick(3 * S, 6);
        assert!(table.tombstones.is_empty());
        table.packet(&segment(3 * S, true, A, 102, 502), 7);
        assert_eq!((table.live(), table.counters.trailing), (1, 0));
    }

    #[test]
    fn a_reused_box_holds_only_the_new_connection() {
        let mut table = FlowTable::<()>::new(FlowConfig::default(), 16);
        table.packet(&packet(0, 1001, TcpFlags::ACK | TcpFlags::PSH, b"hello"), 1);
        table.packet(&packet(0, 1001, TcpFlags::RST, &[]), 2);
        table.tick(3 * S, 2);
        let mut done = Vec::new();
        table.take_finished(&mut done);
        let (_, first) = done.pop().unwrap();
        assert_eq!(first.first_frame, 1);
        assert!(!first.events.is_empty());
        let room = first.events.capacity();
        table.recycle(first);
        assert_eq!(
            table.spare.len(),
            1,
            "the finished connection's box is kept"
        );
        assert_eq!(table.reusable.len(), 1, "and its timeline, handed back");
        assert_eq!(table.reusable[0].events.capacity(), room);
        table.packet(&packet(3 * S, 1002, TcpFlags::ACK, &[]), 3);
        assert!(table.spare.is_empty(), "both reused");
        assert!(table.reusable.is_empty());
        table.finish(3 * S);
        let mut done = Vec::new();
        table.take_finished(&mut done);
        let r = &done[0].1;
        assert_eq!(
            (r.first_frame, r.start_ns, r.end),
            (3, 3 * S, EndReason::CaptureEnd)
        );
        assert_eq!(r.client_sent.packets + r.server_sent.packets, 1);
        assert_eq!(r.client_sent.stream_bytes + r.server_sent.stream_bytes, 0);
        assert!(r.events.iter().all(|e| e.ts_ns == 3 * S));
    }
}
