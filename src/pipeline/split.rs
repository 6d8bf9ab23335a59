//! One uncompressed pcap or pcapng file on several threads, each of which reads, walks and
//! decodes chunks of
//! the file ([`ChunkedFile`]) and tracks its own shard of the connections.
//!
//! The hand-over (the parent module) reads and decodes on one thread and hands packets to the
//! workers. On large transfers that thread was the bottleneck: besides the walk over every
//! record, it read every packet's headers from blocks the reading thread had copied on the
//! other core, a cache miss each. Here every byte of the file is copied, walked and decoded on
//! one core; what crosses between cores is the decoded header fields of the other shards'
//! packets, written one after another into batches, and the few payload bytes the protocol
//! detectors read.
//!
//! A thread takes the next chunk nobody has taken yet, and
//! 1. reads it (the kernel's copy out of the page cache);
//! 2. waits for where the chunk's first record starts, which the walk of the chunk before
//!    passes on, walks the chunk's record headers and passes on where the next chunk's first
//!    record starts (with the tick clock): a quick pass, which the thread that took the next
//!    chunk seldom waits for, since it took its chunk later;
//! 3. decodes and counts every frame, and sorts its TCP segments into one batch per shard,
//!    with the ticks in place among them;
//! 4. if the chunk holds IP fragments, waits for the one reassembler, which passes from chunk
//!    to chunk, gives it the chunk's fragments in order and passes it on: fragments of one
//!    datagram may lie in different chunks. A chunk without fragments lets it pass;
//! 5. sends each other shard its batch, then tracks its own shard's connections through
//!    every batch that has arrived, in chunk order.
//!
//! Each shard thus sees its packets, and the ticks, in capture order, exactly as on one
//! thread, and the records are merged as in the hand-over ([`super::collect`]).
//!
//! Taking chunks in turn rather than by a fixed rota keeps both cores busy when the chunks
//! differ in work (a chunk of short requests takes several times one of bulk transfer): with
//! every thread given every n-th chunk, a thread a chunk behind held up the walks of the
//! others. A thread waits only for what comes of earlier chunks (a walk, the reassembler, a
//! batch), so the threads cannot wait on each other in a circle; sending never waits. And a
//! thread takes no chunk more than [`WINDOW`] chunks past the first one its shard has not
//! tracked, which bounds the batches and chunk buffers waiting between the threads.
//!
//! `rstscope stats` reads such a file the same way ([`count`]): steps 1 to 4, each
//! thread counting what it decoded, the counts added up at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc};

use super::{Batch, FromShard, Prepare, QUEUE_DEPTH, Shard, TICK_NS, collect, spawn_named};
use crate::capture::{Chunk, ChunkedFile, SharedBlock, Walk};
use crate::decode::{Decoded, Decoder, TcpPacket};
use crate::error::{CaptureError, CaptureErrorKind};
use crate::flow::{FlowConfig, FlowKey, StreamHandler, TableCounters};
use crate::stats::Counter;

/// Bytes per chunk: a chunk and the batches made of it stay in a core's cache.
pub(super) const CHUNK_BYTES: u64 = 1 << 20;

/// How far past the first chunk its shard has not tracked a thread may take chunks, per
/// thread: room for a chunk that takes several times the work of the others.
const WINDOW_PER_THREAD: usize = 4;

/// How many times a thread looks for its turn at a relay, a few microseconds apart, before it
/// sleeps: the walk it waits for is usually done within a chunk's read, and on a virtual
/// machine a thread that slept took about 0.2 ms to wake, longer than the wait itself.
const SPIN_ROUNDS: usize = 64;

/// What the walk of a chunk passes to the walk of the next one.
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

    /// Says that another thread stopped (it panicked): nothing more comes.
    const STOPPED: usize = usize::MAX;
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
    let chunks = Chunks::new(file, n, progress);
    // Thread t receives the batches of shard t from every other thread. They go unbounded, so
    // that sending never waits (see above).
    let (handed_tx, handed_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
    std::thread::scope(|scope| {
        // Bounded: when writing the report is the slow part, the threads wait for it instead
        // of piling up finished records.
        let (out_tx, out_rx) = mpsc::sync_channel::<FromShard<T>>(QUEUE_DEPTH * n);
        let lanes: Vec<_> = handed_rx
            .into_iter()
            .enumerate()
            .map(|(t, handed_rx)| Lane {
                t,
                // The connection engine counts connections itself.
                reading: Reading::new(&chunks, false),
                engine: Shard::new(
                    t,
                    *cfg,
                    cfg.max_connections.div_ceil(n).max(1),
                    prepare,
                    out_tx.clone(),
                ),
                handed_tx: &handed_tx,
                handed_rx,
                waiting: BTreeMap::new(),
                next: 0,
                stopped: false,
                last_frame: 0,
                unreported: 0,
                free_batches: Vec::new(),
            })
            .collect();
        drop(out_tx);
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

/// Reads `file` through the capture and decode stages only, on `threads` threads (this one
/// and `threads - 1` more) taking chunks in turn, and adds what they count to `counter`;
/// `conversations`: distinct TCP 5-tuples too.
pub(super) fn count(
    file: &ChunkedFile,
    counter: &mut Counter,
    threads: usize,
    conversations: bool,
) {
    let n = threads.max(1);
    let quiet = |_: u64| {};
    let chunks = Chunks::new(file, n, &quiet);
    let count_chunks = || {
        let _guard = StopOthersOnPanic {
            chunks: &chunks,
            handed_tx: &[],
        };
        let mut reading = Reading::new(&chunks, conversations);
        while let Some(index) = chunks.take_next() {
            if let Ok((chunk, _)) = reading.read_and_walk(index, 0) {
                reading.decode(&chunk, &mut CountOnly);
                reading.recycle(chunk.block);
            }
        }
        reading.counter
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..n)
            .map(|t| spawn_named(scope, format!("rstscope-count{t}"), count_chunks))
            .collect();
        counter.merge(count_chunks());
        for handle in others {
            if let Ok(part) = handle.join() {
                counter.merge(part);
            }
        }
    });
}

/// What every thread reads and updates to read the chunks in order.
struct Chunks<'a> {
    file: &'a ChunkedFile,
    threads: usize,
    /// The first chunk no thread has taken yet.
    next_chunk: AtomicUsize,
    /// Where the records of the chunk whose turn it is start.
    walks: Relay<Carry>,
    /// The one reassembler of IP fragments.
    fragments: Relay<Box<Decoder>>,
    /// The time of the latest frame walked so far.
    end_ns: AtomicI64,
    /// How far the walks got: for `progress`.
    walked: AtomicU64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<'a> Chunks<'a> {
    fn new(file: &'a ChunkedFile, threads: usize, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        Chunks {
            file,
            threads,
            next_chunk: AtomicUsize::new(0),
            // The first chunk's walk starts at the first record; its reassembler is new.
            walks: Relay::new(Carry {
                walk: file.start(),
                next_tick: i64::MIN,
            }),
            fragments: Relay::new(Box::new(Decoder::new())),
            end_ns: AtomicI64::new(i64::MIN),
            walked: AtomicU64::new(0),
            progress,
        }
    }

    /// The first chunk no thread has taken yet, now taken; `None` once all are.
    fn take_next(&self) -> Option<usize> {
        let index = self.next_chunk.fetch_add(1, Ordering::Relaxed);
        (index < self.file.chunks()).then_some(index)
    }
}

/// Tells the other threads to stop waiting when the thread holding it panics.
struct StopOthersOnPanic<'a> {
    chunks: &'a Chunks<'a>,
    handed_tx: &'a [mpsc::Sender<Handed>],
}

impl Drop for StopOthersOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.chunks.walks.abandon();
            self.chunks.fragments.abandon();
            for tx in self.handed_tx {
                let _ = tx.send(Handed::none(Handed::STOPPED, 0));
            }
        }
    }
}

/// A value that passes from chunk to chunk in chunk order, whichever threads took them: the
/// walk's carry, the fragment reassembler. A chunk that does not need it lets it pass.
struct Relay<V> {
    state: Mutex<RelayState<V>>,
    turn_came: Condvar,
}

struct RelayState<V> {
    /// The chunk whose turn it is.
    turn: usize,
    /// Here between turns; `None` while a chunk has it.
    value: Option<V>,
    /// Later chunks that let the value pass: their turns end as they come.
    passed_over: BTreeSet<usize>,
    /// Threads waiting for a turn: only then does passing the value wake anyone.
    sleepers: usize,
    /// A thread stopped (it panicked): the turns may never come.
    abandoned: bool,
}

impl<V> Relay<V> {
    fn new(value: V) -> Self {
        Relay {
            state: Mutex::new(RelayState {
                turn: 0,
                value: Some(value),
                passed_over: BTreeSet::new(),
                sleepers: 0,
                abandoned: false,
            }),
            turn_came: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RelayState<V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for chunk `index`'s turn and takes the value; `None` if a thread stopped.
    fn take(&self, index: usize) -> Option<V> {
        for _ in 0..SPIN_ROUNDS {
            {
                let mut state = self.lock();
                if state.turn == index
                    && let Some(value) = state.value.take()
                {
                    return Some(value);
                }
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            // With more threads than cores, the one this waits for may need this core.
            std::thread::yield_now();
        }
        let mut state = self.lock();
        loop {
            if state.abandoned {
                return None;
            }
            if state.turn == index
                && let Some(value) = state.value.take()
            {
                return Some(value);
            }
            state.sleepers += 1;
            state = self
                .turn_came
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleepers -= 1;
        }
    }

    /// Chunk `index` is done with the value: gives it to the next chunk that needs it.
    fn pass(&self, index: usize, value: V) {
        let mut state = self.lock();
        state.value = Some(value);
        self.end_turn(&mut state, index);
    }

    /// Chunk `index` does not need the value: its turn ends as soon as it comes.
    fn pass_over(&self, index: usize) {
        let mut state = self.lock();
        if state.turn == index {
            self.end_turn(&mut state, index);
        } else {
            state.passed_over.insert(index);
        }
    }

    fn end_turn(&self, state: &mut RelayState<V>, index: usize) {
        let mut turn = index + 1;
        while state.passed_over.remove(&turn) {
            turn += 1;
        }
        state.turn = turn;
        if state.sleepers > 0 {
            self.turn_came.notify_all();
        }
    }

    fn abandon(&self) {
        self.lock().abandoned = true;
        self.turn_came.notify_all();
    }
}

/// Where a chunk's TCP segments go: the analysis sorts them into a batch per shard; `stats`
/// only counts them, which [`Reading::decode`] does for every frame.
trait Segments {
    /// Comes before the chunk's record `record` (with the number of records: after the last).
    fn before(&mut self, record: usize);
    /// A TCP segment of frame `frame`; `insert`: one reassembled from IP fragments after the
    /// chunk's other frames, whose frame may come before segments already given.
    fn segment(&mut self, p: &TcpPacket<'_>, frame: u64, block: &SharedBlock, insert: bool);
}

struct CountOnly;

impl Segments for CountOnly {
    fn before(&mut self, _: usize) {}
    fn segment(&mut self, _: &TcpPacket<'_>, _: u64, _: &SharedBlock, _: bool) {}
}

/// The analysis's [`Segments`]: a batch per shard, with the chunk's ticks in place.
struct Sorted {
    batches: Vec<Batch>,
    ticks: Ticks,
    /// The first of `ticks` not yet in the batches.
    next_tick: usize,
}

impl Segments for Sorted {
    fn before(&mut self, record: usize) {
        while let Some(&(at, now_ns, before)) = self.ticks.get(self.next_tick) {
            if at > record {
                break;
            }
            for batch in &mut self.batches {
                batch.ticks.push((batch.metas.len(), now_ns, before));
            }
            self.next_tick += 1;
        }
    }

    fn segment(&mut self, p: &TcpPacket<'_>, frame: u64, block: &SharedBlock, insert: bool) {
        sort(&mut self.batches, p, frame, block, insert);
    }
}

/// One thread's part in reading the chunks: its buffers, its decoder, what it counted.
struct Reading<'a> {
    chunks: &'a Chunks<'a>,
    counter: Counter,
    /// Decodes this thread's chunks, leaving fragments to the one reassembler.
    decoder: Decoder,
    spare: Vec<SharedBlock>,
}

impl<'a> Reading<'a> {
    fn new(chunks: &'a Chunks<'a>, conversations: bool) -> Self {
        Reading {
            chunks,
            counter: Counter::new("", conversations),
            decoder: Decoder::deferring_fragments(),
            spare: Vec::new(),
        }
    }

    /// Reads chunk `index` and walks it, once the walk of the chunk before says where its
    /// records start. If the input ends before it, passes that on and returns how many frames
    /// it held (`frames_so_far` if another thread stopped); nobody takes another chunk.
    fn read_and_walk(&mut self, index: usize, frames_so_far: u64) -> Result<(Chunk, Ticks), u64> {
        let chunks = self.chunks;
        let buffer = self.take_buffer();
        let read = chunks.file.read(index, buffer);
        let Some(carry) = chunks.walks.take(index) else {
            // Another thread stopped: so does this one.
            return Err(self.pass_on_end(
                index,
                Carry {
                    walk: Walk::ended(0, frames_so_far),
                    next_tick: i64::MIN,
                },
            ));
        };
        if carry.walk.ended {
            return Err(self.pass_on_end(index, carry));
        }
        match read {
            Ok(bytes) => Ok(self.walk(index, bytes, carry)),
            Err(e) => {
                let kind = CaptureErrorKind::Io {
                    detail: e.to_string(),
                };
                self.counter
                    .fault(&CaptureError::new(carry.walk.at, kind), true);
                let walk = Walk::ended(carry.walk.at, carry.walk.frames);
                Err(self.pass_on_end(
                    index,
                    Carry {
                        walk,
                        next_tick: carry.next_tick,
                    },
                ))
            }
        }
    }

    /// Chunk `index` holds no records: tells the next chunk's walk and the reassembler, and
    /// has nobody take another chunk. Returns the frames before it.
    fn pass_on_end(&mut self, index: usize, carry: Carry) -> u64 {
        let chunks = self.chunks;
        chunks
            .next_chunk
            .fetch_max(chunks.file.chunks(), Ordering::Relaxed);
        let frames = carry.walk.frames;
        chunks.walks.pass(index, carry);
        chunks.fragments.pass_over(index);
        frames
    }

    /// Walks chunk `index`'s records and passes on where the next chunk's start. Returns the
    /// chunk and its ticks.
    fn walk(&mut self, index: usize, bytes: Vec<u8>, carry: Carry) -> (Chunk, Ticks) {
        let chunks = self.chunks;
        let mut ticks = Vec::new();
        let mut next_tick = carry.next_tick;
        let mut latest = i64::MIN;
        let frames_before = carry.walk.frames;
        let (chunk, walk, fault) = chunks.file.walk(index, bytes, carry.walk, |record, ts_ns| {
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
        let walked_to = walk.at;
        chunks.walks.pass(index, Carry { walk, next_tick });
        for e in &chunk.skipped {
            self.counter.skip(e);
        }
        if let Some(e) = fault {
            self.counter.fault(&e, true);
        }
        chunks.end_ns.fetch_max(latest, Ordering::Relaxed);
        let walked = chunks.walked.fetch_max(walked_to, Ordering::Relaxed);
        (chunks.progress)(walked.max(walked_to));
        (chunk, ticks)
    }

    /// Decodes and counts the chunk's frames and gives its TCP segments to `segments`; then
    /// has the reassembler take the chunk's IP fragments, in order.
    fn decode(&mut self, chunk: &Chunk, segments: &mut impl Segments) {
        let mut deferred = Vec::new();
        for (record, frame) in chunk.frames().enumerate() {
            segments.before(record);
            let frame_no = chunk.frames_before + record as u64 + 1;
            let decoded = self.decoder.decode(&frame);
            if let Decoded::FragmentDeferred { .. } = decoded {
                deferred.push((frame_no, frame));
                continue;
            }
            self.counter.add(&frame, &decoded);
            if let Decoded::Tcp(p) = &decoded {
                segments.segment(p, frame_no, &chunk.block, false);
            }
        }
        segments.before(chunk.records);
        // Fragments of one datagram may lie in this chunk and earlier ones: the reassembler
        // takes them once every earlier chunk's fragments are in.
        let fragments = &self.chunks.fragments;
        if deferred.is_empty() {
            fragments.pass_over(chunk.index);
        } else if let Some(mut reassembler) = fragments.take(chunk.index) {
            for (frame_no, frame) in &deferred {
                let decoded = reassembler.decode(frame);
                self.counter.add(frame, &decoded);
                if let Decoded::Tcp(p) = &decoded {
                    segments.segment(p, *frame_no, &chunk.block, true);
                }
            }
            fragments.pass(chunk.index, reassembler);
        }
    }

    /// Keeps a chunk's buffer, to refill once nobody holds it any more.
    fn recycle(&mut self, block: SharedBlock) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(block);
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

/// One thread of the analysis: the chunks it takes, its shard, and what it receives from the
/// other threads.
struct Lane<'a, H: StreamHandler, T> {
    t: usize,
    reading: Reading<'a>,
    engine: Shard<'a, H, T>,
    /// To each shard's thread, the batches of that shard.
    handed_tx: &'a [mpsc::Sender<Handed>],
    /// Batches of this thread's shard from the other threads' chunks.
    handed_rx: mpsc::Receiver<Handed>,
    /// Batches received before their turn, by chunk.
    waiting: BTreeMap<usize, Handed>,
    /// The next chunk whose batch this shard tracks.
    next: usize,
    /// Another thread stopped: this one tracks no more.
    stopped: bool,
    /// The last frame of the last chunk tracked.
    last_frame: u64,
    /// Chunks tracked since this shard last reported.
    unreported: usize,
    free_batches: Vec<Batch>,
}

impl<H: StreamHandler, T> Lane<'_, H, T> {
    /// Takes chunks until none is left, then tracks the other threads' chunks up to the
    /// input's end; finishes this shard. Returns what this thread counted.
    fn run(mut self) -> Counter {
        let chunks = self.reading.chunks;
        let _guard = StopOthersOnPanic {
            chunks,
            handed_tx: self.handed_tx,
        };
        let window = WINDOW_PER_THREAD * chunks.threads;
        loop {
            let upcoming = chunks.next_chunk.load(Ordering::Relaxed);
            if upcoming >= self.next + window {
                self.track_until(upcoming + 1 - window);
            }
            let Some(index) = chunks.take_next() else {
                break;
            };
            self.run_chunk(index);
            self.track_ready();
        }
        self.track_until(usize::MAX);
        self.engine.report((self.last_frame << 1, u64::MAX), true);
        let end_ns = chunks.end_ns.load(Ordering::Relaxed);
        let Lane {
            engine, reading, ..
        } = self;
        engine.end(end_ns);
        reading.counter
    }

    /// Reads, walks and decodes chunk `index`, and hands each shard its batch.
    fn run_chunk(&mut self, index: usize) {
        let (chunk, ticks) = match self.reading.read_and_walk(index, self.last_frame) {
            Ok(walked) => walked,
            Err(frames) => {
                // The input ended before this chunk: every shard is told.
                for (shard, tx) in self.handed_tx.iter().enumerate() {
                    if shard != self.t {
                        let _ = tx.send(Handed::none(index, frames));
                    }
                }
                self.waiting.insert(index, Handed::none(index, frames));
                return;
            }
        };
        let n = self.reading.chunks.threads;
        let mut sorted = Sorted {
            batches: (0..n)
                .map(|_| self.free_batches.pop().unwrap_or_default())
                .collect(),
            ticks,
            next_tick: 0,
        };
        self.reading.decode(&chunk, &mut sorted);
        let last_frame = chunk.frames_before + chunk.records as u64;
        for (shard, batch) in sorted.batches.into_iter().enumerate() {
            let handed = Handed {
                chunk: index,
                batch: Some(batch),
                last_frame,
            };
            if shard == self.t {
                self.waiting.insert(index, handed);
            } else if let Some(tx) = self.handed_tx.get(shard) {
                // A thread only stops taking batches after the input's end.
                let _ = tx.send(handed);
            }
        }
        self.reading.recycle(chunk.block);
    }

    /// Tracks this shard's batches that have arrived, in chunk order, as far as they go.
    fn track_ready(&mut self) {
        while let Ok(h) = self.handed_rx.try_recv() {
            self.file_away(h);
        }
        while !self.stopped {
            match self.waiting.remove(&self.next) {
                Some(h) if h.batch.is_some() => self.track_handed(h),
                Some(h) => {
                    // The input ended before this chunk: nothing more to track.
                    self.waiting.insert(h.chunk, h);
                    return;
                }
                None => return,
            }
        }
    }

    /// Keeps a batch that arrived until its turn.
    fn file_away(&mut self, h: Handed) {
        if h.chunk == Handed::STOPPED {
            self.stopped = true;
        } else {
            self.waiting.insert(h.chunk, h);
        }
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
        if index >= self.reading.chunks.file.chunks() {
            return None;
        }
        loop {
            if self.stopped {
                return None;
            }
            if let Some(h) = self.waiting.remove(&index) {
                if h.batch.is_some() {
                    return Some(h);
                }
                // The input ended before this chunk; kept, for whoever asks next.
                self.waiting.insert(index, h);
                return None;
            }
            let h = self.handed_rx.recv().ok()?;
            self.file_away(h);
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
        if self.free_batches.len() < 2 * self.reading.chunks.threads {
            self.free_batches.push(batch);
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

#[cfg(test)]
mod tests {
    use super::Relay;

    #[test]
    fn a_relay_skips_the_chunks_that_pass_over_in_any_order() {
        let relay = Relay::new(0_u32);
        // Chunks 1 and 3 let the value pass before chunk 0 has had it: their turns end as
        // they come.
        relay.pass_over(3);
        relay.pass_over(1);
        let value = relay.take(0);
        assert_eq!(value, Some(0));
        relay.pass(0, 10);
        assert_eq!(relay.take(2), Some(10));
        relay.pass(2, 20);
        assert_eq!(relay.take(4), Some(20));
    }

    #[test]
    fn a_relay_waits_for_the_turn_of_the_chunk_before() {
        let relay = Relay::new(String::from("start"));
        std::thread::scope(|scope| {
            let later = scope.spawn(|| relay.take(1));
            // Whether chunk 1 already sleeps or still spins, it gets the value chunk 0
            // passes on, not the one chunk 0 took.
            let first = relay.take(0);
            assert_eq!(first.as_deref(), Some("start"));
            relay.pass(0, String::from("after chunk 0"));
            assert_eq!(
                later.join().ok().flatten().as_deref(),
                Some("after chunk 0")
            );
        });
    }

    #[test]
    fn a_waiting_thread_stops_when_the_relay_is_abandoned() {
        let relay = Relay::new(());
        std::thread::scope(|scope| {
            // Chunk 5's turn never comes: chunks 0 to 4 belong to a thread that stopped.
            let waiting = scope.spawn(|| relay.take(5));
            relay.abandon();
            assert_eq!(waiting.join().ok(), Some(None));
        });
    }
}
