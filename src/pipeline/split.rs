//! One plain pcap file on several threads, each of which reads, walks and decodes its own
//! chunks of the file ([`ChunkedFile`]) and tracks its own shard of the connections.
//!
//! The hand-over (the parent module) reads and decodes on one thread and hands packets to the
//! workers. On large transfers that thread was the bottleneck: besides the walk over every
//! record, it read every packet's headers from blocks the reading thread had copied on the
//! other core, a cache miss each. Here every byte of the file is copied, walked and decoded on
//! one core; what crosses between cores is the decoded header fields of the other shards'
//! packets, written one after another into batches, and the few payload bytes the protocol
//! detectors read.
//!
//! Thread `t` of `n` takes chunks `t`, `t + n`, `t + 2n`, ... For each it
//! 1. reads the chunk (the kernel's copy out of the page cache);
//! 2. waits for where the chunk's first record starts, which the walk of the chunk before
//!    passes on, walks the chunk's record headers and passes on where the next chunk's first
//!    record starts (with the tick clock): a quick pass, done an iteration before the chunk
//!    is decoded, so that the walks run ahead of the decoding;
//! 3. decodes and counts every frame, and sorts its TCP segments into one batch per shard,
//!    with the ticks in place among them;
//! 4. waits for the one reassembler of IP fragments, which passes from chunk to chunk, gives
//!    it the chunk's fragments in order and passes it on: fragments of one datagram may lie in
//!    different chunks;
//! 5. sends each other shard its batch, then tracks its own shard's connections through the
//!    batches of every chunk up to the round before this one, in chunk order.
//!
//! Each shard thus sees its packets, and the ticks, in capture order, exactly as on one
//! thread, and the records are merged as in the hand-over ([`super::collect`]).
//!
//! A thread waits only to receive, and only for what comes of earlier chunks (a walk, the
//! reassembler, a batch), so the threads cannot wait on each other in a circle; sending never
//! waits. Chunk `i` is decoded only after chunk `i - 1`, whose thread first tracked its shard
//! up to the round before: so no thread runs more than a few rounds ahead of another, and
//! that bounds the batches waiting in the channels.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;

use super::{Batch, FromShard, Prepare, QUEUE_DEPTH, Shard, TICK_NS, collect, spawn_named};
use crate::capture::{Chunk, ChunkedFile, SharedBlock, Walk};
use crate::decode::{Decoded, Decoder, TcpPacket};
use crate::error::{CaptureError, CaptureErrorKind};
use crate::flow::{FlowConfig, FlowKey, StreamHandler, TableCounters};
use crate::stats::Counter;

/// Bytes per chunk: a chunk and the batches made of it stay in a core's cache.
pub(super) const CHUNK_BYTES: u64 = 1 << 20;

/// What the walk of a chunk passes to the walk of the next one.
#[derive(Clone, Copy)]
struct Carry {
    walk: Walk,
    /// When the next tick is due, in capture time.
    next_tick: i64,
}

/// A chunk's ticks: (index of the record the tick comes before, now, number of the frame
/// before it).
type Ticks = Vec<(usize, i64, u64)>;

/// A chunk's batch for one shard, or `None`: the input ended before that chunk.
struct Handed {
    chunk: usize,
    batch: Option<Batch>,
    /// The number of the chunk's last frame (of the last one before it, if it has none).
    last_frame: u64,
}

impl Handed {
    fn none(chunk: usize, last_frame: u64) -> Handed {
        Handed {
            chunk,
            batch: None,
            last_frame,
        }
    }
}

/// A shard reports how far it got after this many chunks, or once it holds this many
/// records: each report wakes the merging thread, which on two cores took a core from a shard
/// thread, and reporting every chunk cost a tenth of the time on large transfers.
const REPORT_CHUNKS: usize = 16;
const REPORT_RECORDS: usize = 1024;

/// Chunk buffers a thread keeps to refill once nobody holds them any more.
const SPARE_BUFFERS: usize = 16;

/// The shard of a connection, from its key hash's high half (the table inside a shard
/// indexes by the low bits).
fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

/// Analyzes `file` on `shards` threads (this one and `shards - 1` more) and hands each
/// finished connection to `sink`, in (decision frame, first frame) order.
pub(super) fn analyze<H: StreamHandler + 'static, T: Send>(
    file: &ChunkedFile,
    counter: &mut Counter,
    cfg: &FlowConfig,
    shards: usize,
    prepare: &Prepare<'_, H, T>,
    sink: &mut (dyn FnMut(T) + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> TableCounters {
    let n = shards.max(1);
    let shared = Shared {
        file,
        threads: n,
        end_ns: AtomicI64::new(i64::MIN),
        walked: AtomicU64::new(0),
        progress,
    };
    std::thread::scope(|scope| {
        // Bounded: when writing the report is the slow part, the threads wait for it instead
        // of piling up finished records.
        let (out_tx, out_rx) = mpsc::sync_channel::<FromShard<T>>(QUEUE_DEPTH * n);
        // Thread t receives on the t-th of each: walks and the reassembler come from the
        // thread before it in the ring, batches from every other thread. Batches go unbounded,
        // so that sending never waits (see above).
        let (carry_tx, carry_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        let (token_tx, token_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        let (handed_tx, handed_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        // The first chunk's walk starts at the first record; its reassembler is new.
        let _ = carry_tx[0].send(Carry {
            walk: file.start(),
            next_tick: i64::MIN,
        });
        let _ = token_tx[0].send(Box::new(Decoder::new()));
        let receivers = carry_rx.into_iter().zip(token_rx).zip(handed_rx);
        let lanes: Vec<_> = receivers
            .enumerate()
            .map(|(t, ((carry_rx, token_rx), handed_rx))| Lane {
                t,
                shared: &shared,
                engine: Shard::new(
                    t,
                    *cfg,
                    cfg.max_connections.div_ceil(n).max(1),
                    prepare,
                    out_tx.clone(),
                ),
                counter: Counter::new("", false),
                decoder: Decoder::deferring_fragments(),
                carry_rx,
                carry_tx: carry_tx[(t + 1) % n].clone(),
                token_rx,
                token_tx: token_tx[(t + 1) % n].clone(),
                handed_rx,
                handed_tx: handed_tx.clone(),
                waiting: BTreeMap::new(),
                next: 0,
                last_frame: 0,
                unreported: 0,
                free_batches: Vec::new(),
                spare: Vec::new(),
            })
            .collect();
        drop((out_tx, carry_tx, token_tx, handed_tx));
        let collector = spawn_named(scope, "rstscope-merge".into(), move || {
            collect(n, out_rx, sink)
        });
        let mut lanes = lanes.into_iter();
        let first = lanes.next();
        let others: Vec<_> = lanes
            .map(|lane| {
                spawn_named(scope, format!("rstscope-work{}", lane.t), move || {
                    lane.run()
                })
            })
            .collect();
        if let Some(lane) = first {
            counter.merge(lane.run());
        }
        for handle in others {
            // A thread that panicked lost its part; the panic is reported by the runtime.
            if let Ok(part) = handle.join() {
                counter.merge(part);
            }
        }
        collector.join().unwrap_or_default()
    })
}

/// What every thread reads and updates.
struct Shared<'a> {
    file: &'a ChunkedFile,
    threads: usize,
    /// The time of the latest frame walked so far.
    end_ns: AtomicI64,
    /// How far the walks got: for `progress`.
    walked: AtomicU64,
    progress: &'a (dyn Fn(u64) + Sync),
}

/// One thread: its chunks, its shard, and its links to the other threads.
struct Lane<'a, H: StreamHandler, T> {
    t: usize,
    shared: &'a Shared<'a>,
    engine: Shard<'a, H, T>,
    counter: Counter,
    /// Decodes this thread's chunks, leaving fragments to the one reassembler.
    decoder: Decoder,
    /// Where this thread's chunks start, from the thread before in the ring; and where the
    /// next thread's start, to it.
    carry_rx: mpsc::Receiver<Carry>,
    carry_tx: mpsc::Sender<Carry>,
    /// The one reassembler of IP fragments, likewise round the ring.
    token_rx: mpsc::Receiver<Box<Decoder>>,
    token_tx: mpsc::Sender<Box<Decoder>>,
    /// Batches of this thread's shard from the other threads' chunks.
    handed_rx: mpsc::Receiver<Handed>,
    handed_tx: Vec<mpsc::Sender<Handed>>,
    /// Batches received before their turn, by chunk.
    waiting: BTreeMap<usize, Handed>,
    /// The next chunk whose batch this shard tracks.
    next: usize,
    /// The last frame of the last chunk tracked.
    last_frame: u64,
    /// Chunks tracked since this shard last reported.
    unreported: usize,
    free_batches: Vec<Batch>,
    spare: Vec<SharedBlock>,
}

impl<H: StreamHandler, T> Lane<'_, H, T> {
    /// Runs this thread's chunks, then tracks the other threads' chunks up to the input's
    /// end; finishes this shard. Returns what this thread counted.
    fn run(mut self) -> Counter {
        let n = self.shared.threads;
        let mut index = self.t;
        // Each chunk is read and walked an iteration before it is decoded: the walk of the
        // next chunk, on the other thread, then seldom waits for this one's.
        let mut ahead = self.read_and_walk(index);
        while let Some((chunk, ticks)) = ahead.take() {
            ahead = self.read_and_walk(index + n);
            let batches = self.decode(&chunk, &ticks);
            let last_frame = chunk.frames_before + chunk.records as u64;
            for (shard, batch) in batches.into_iter().enumerate() {
                let handed = Handed {
                    chunk: index,
                    batch: Some(batch),
                    last_frame,
                };
                if shard == self.t {
                    self.waiting.insert(index, handed);
                } else {
                    // A thread only stops taking batches after the input's end.
                    let _ = self.handed_tx[shard].send(handed);
                }
            }
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(chunk.block);
            }
            // This shard tracks the chunks up to the round before this one: the other threads
            // decoded those long ago, so this thread rarely waits for their batches.
            self.track_until((index + 1).saturating_sub(n));
            index += n;
        }
        // The chunks after this thread's last one.
        self.track_until(usize::MAX);
        self.engine.report((self.last_frame << 1, u64::MAX), true);
        let end_ns = self.shared.end_ns.load(Ordering::Relaxed);
        let Lane {
            engine, counter, ..
        } = self;
        engine.end(end_ns);
        counter
    }

    /// Reads chunk `index` and walks it, once the walk of the chunk before says where its
    /// records start. `None` if the input ends before it.
    fn read_and_walk(&mut self, index: usize) -> Option<(Chunk, Ticks)> {
        let file = self.shared.file;
        if index >= file.chunks() {
            return None;
        }
        let buffer = self.take_buffer();
        let read = file.read(index, buffer);
        let carry = match self.carry_rx.recv() {
            Ok(carry) if !carry.walk.ended => carry,
            Ok(carry) => {
                self.pass_on_end(index, carry);
                return None;
            }
            // The thread of the chunk before stopped (it panicked): so do the others.
            Err(_) => {
                let walk = Walk {
                    at: 0,
                    frames: self.last_frame,
                    ended: true,
                };
                self.pass_on_end(
                    index,
                    Carry {
                        walk,
                        next_tick: i64::MIN,
                    },
                );
                return None;
            }
        };
        match read {
            Ok(bytes) => Some(self.walk(index, bytes, carry)),
            Err(e) => {
                let kind = CaptureErrorKind::Io {
                    detail: e.to_string(),
                };
                self.counter
                    .fault(&CaptureError::new(carry.walk.at, kind), true);
                let walk = Walk {
                    ended: true,
                    ..carry.walk
                };
                self.pass_on_end(index, Carry { walk, ..carry });
                None
            }
        }
    }

    /// Chunk `index` holds no records: tells the next chunk's walk, and every shard.
    fn pass_on_end(&mut self, index: usize, carry: Carry) {
        if index + 1 < self.shared.file.chunks() {
            let _ = self.carry_tx.send(carry);
        }
        for (shard, tx) in self.handed_tx.iter().enumerate() {
            if shard != self.t {
                let _ = tx.send(Handed::none(index, carry.walk.frames));
            }
        }
        self.waiting
            .insert(index, Handed::none(index, carry.walk.frames));
    }

    /// Walks chunk `index`'s records and passes on where the next chunk's start. Returns the
    /// chunk and its ticks.
    fn walk(&mut self, index: usize, bytes: Vec<u8>, carry: Carry) -> (Chunk, Ticks) {
        let file = self.shared.file;
        let mut ticks = Vec::new();
        let mut next_tick = carry.next_tick;
        let mut latest = i64::MIN;
        let frames_before = carry.walk.frames;
        let (chunk, walk, fault) = file.walk(index, bytes, carry.walk, |record, ts_ns| {
            // As the single-threaded read loop does: a tick before the first frame at or
            // after the time it is due, none before the very first frame.
            if ts_ns >= next_tick {
                if next_tick != i64::MIN {
                    ticks.push((record, ts_ns, frames_before + record as u64));
                }
                next_tick = ts_ns.saturating_add(TICK_NS);
            }
            latest = latest.max(ts_ns);
        });
        if index + 1 < file.chunks() {
            let _ = self.carry_tx.send(Carry { walk, next_tick });
        }
        if let Some(e) = fault {
            self.counter.fault(&e, true);
        }
        self.shared.end_ns.fetch_max(latest, Ordering::Relaxed);
        let walked = self.shared.walked.fetch_max(walk.at, Ordering::Relaxed);
        (self.shared.progress)(walked.max(walk.at));
        (chunk, ticks)
    }

    /// Decodes and counts the chunk's frames and sorts its TCP segments into a batch per
    /// shard; then has the reassembler take the chunk's IP fragments, in order.
    fn decode(&mut self, chunk: &Chunk, ticks: &Ticks) -> Vec<Batch> {
        let n = self.shared.threads;
        let mut batches: Vec<Batch> = (0..n)
            .map(|_| self.free_batches.pop().unwrap_or_default())
            .collect();
        let mut deferred = Vec::new();
        let mut ticks = ticks.iter().peekable();
        for (record, frame) in chunk.frames().enumerate() {
            while let Some(&(_, now_ns, before)) = ticks.next_if(|t| t.0 <= record) {
                for batch in &mut batches {
                    batch.ticks.push((batch.metas.len(), now_ns, before));
                }
            }
            let frame_no = chunk.frames_before + record as u64 + 1;
            let decoded = self.decoder.decode(&frame);
            if let Decoded::FragmentDeferred { .. } = decoded {
                deferred.push((frame_no, frame));
                continue;
            }
            self.counter.add(&frame, &decoded);
            if let Decoded::Tcp(p) = &decoded {
                sort(&mut batches, p, frame_no, &chunk.block, false);
            }
        }
        // Every chunk takes the reassembler in turn, also one without fragments: the next one
        // may hold the rest of a datagram that started in an earlier one.
        if let Ok(mut reassembler) = self.token_rx.recv() {
            for (frame_no, frame) in &deferred {
                let decoded = reassembler.decode(frame);
                self.counter.add(frame, &decoded);
                if let Decoded::Tcp(p) = &decoded {
                    sort(&mut batches, p, *frame_no, &chunk.block, true);
                }
            }
            if chunk.index + 1 < self.shared.file.chunks() {
                let _ = self.token_tx.send(reassembler);
            }
        }
        batches
    }

    /// Tracks this shard's batches of the chunks before `upto`, or up to the input's end.
    fn track_until(&mut self, upto: usize) {
        while self.next < upto {
            match self.receive(self.next) {
                Some(h) => self.track_handed(h),
                None => return,
            }
        }
    }

    /// This shard's batch of chunk `index`, from the thread that decoded it; `None` if the
    /// input ended before it.
    fn receive(&mut self, index: usize) -> Option<Handed> {
        if index >= self.shared.file.chunks() {
            return None;
        }
        loop {
            if let Some(h) = self.waiting.remove(&index) {
                return h.batch.is_some().then_some(h);
            }
            let h = self.handed_rx.recv().ok()?;
            self.waiting.insert(h.chunk, h);
        }
    }

    fn track_handed(&mut self, h: Handed) {
        self.next = h.chunk + 1;
        if let Some(batch) = h.batch {
            self.track(batch, h.last_frame);
        }
    }

    /// Tracks one chunk's batch of this shard; now and then reports how far it got.
    fn track(&mut self, mut batch: Batch, last_frame: u64) {
        self.engine.batch(&batch);
        self.last_frame = last_frame;
        self.unreported += 1;
        if self.unreported >= REPORT_CHUNKS || self.engine.records.len() >= REPORT_RECORDS {
            self.engine.report((last_frame << 1, u64::MAX), true);
            self.unreported = 0;
        }
        batch.clear();
        if self.free_batches.len() < 2 * self.shared.threads {
            self.free_batches.push(batch);
        }
    }

    /// A buffer for the next chunk: a spare one nobody holds any more, or a new one.
    fn take_buffer(&mut self) -> Vec<u8> {
        let free = self
            .spare
            .iter_mut()
            .rposition(|b| SharedBlock::get_mut(b).is_some());
        match free.map(|i| self.spare.swap_remove(i)) {
            Some(mut block) => SharedBlock::get_mut(&mut block)
                .map(std::mem::take)
                .unwrap_or_default(),
            None => Vec::with_capacity(CHUNK_BYTES as usize + (256 << 10)),
        }
    }
}

/// Puts a TCP segment in the batch of the shard that owns its connection; `insert`: in frame
/// order among the packets already there.
fn sort(batches: &mut [Batch], p: &TcpPacket<'_>, frame: u64, block: &SharedBlock, insert: bool) {
    let (key, from_lo) = FlowKey::of_packet(p);
    let hash = key.hash();
    let shards = batches.len();
    let Some(batch) = batches.get_mut(shard_of(hash, shards)) else {
        return;
    };
    if insert {
        batch.insert(p, frame, key, hash, from_lo, block);
    } else {
        batch.push(p, frame, key, hash, from_lo, block);
    }
}
