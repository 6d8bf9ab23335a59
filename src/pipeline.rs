//! Runs the stages over one input: the capture reader and the decoder on this thread, the
//! connection engine either here too (`shards == 1`) or split into `shards` shards by
//! connection: one on this thread, the others on worker threads.
//!
//! An uncompressed pcap or pcapng file larger than one chunk is split between the threads by
//! chunks instead: each thread reads and decodes the chunks it takes and tracks one shard
//! ([`split`]). What follows is the hand-over, for every other input (compressed, stdin, a
//! pcapng file whose first packet comes before any interface is described).
//!
//! With workers, the capture reader reads ahead on a thread of its own, and this thread
//! decodes each packet just enough to know its connection's key. It tracks the connections
//! of its own shard itself, with no hand-over at all, and adds every other packet to the
//! batch of the worker that owns its key, sending full batches over a bounded channel
//! (backpressure keeps memory bounded when the workers fall behind). Its own shard is
//! smaller than a worker's, as decoding every packet is its work too ([`Owners`]). A batch
//! holds the packets' header fields and where their bytes lie in the reader's shared blocks,
//! not the bytes themselves: on large transfers, copying every payload once more cost this
//! thread as much as the workers saved it. Each shard owns its flow table, so a connection's
//! packets keep capture order on one thread. Emptied batches come back to be refilled, so
//! steady state allocates nothing.
//!
//! Records stream out as connections finish, in (decision frame, first frame) order (see
//! [`crate::flow::table`]): every hundredth of a second of capture time this thread sweeps
//! its own shard and puts a tick in every worker's batch, at which the worker sweeps out
//! expired connections, and once a second it sends the batches off with a tick after which
//! each shard reports how far it got; a collector thread merges the shards' records and hands
//! on those no shard can precede any more. Memory stays bounded
//! by the live connections and about a second of finished ones, and any number of shards
//! gives the same records in the same order (unless the live-connection cap evicts).

mod split;

use std::collections::VecDeque;
use std::sync::mpsc;

use crate::capture::{CaptureReader, Input, SharedBlock};
use crate::decode::{Decoded, Decoder, IpVersion, TcpFlags, TcpPacket};
use crate::flow::reassembly::fingerprint;
use crate::flow::{ConnectionRecord, FlowConfig, FlowKey, FlowTable, StreamHandler, TableCounters};
use crate::stats::{Counter, InputStats};

/// What reading one input left besides its connections.
pub struct InputSummary {
    pub stats: InputStats,
    pub table: TableCounters,
}

/// How often, in capture time, expired connections are swept out: often enough that each
/// sweep finishes a few dozen connections on busy captures, whose memory new connections then
/// reuse while it is still cached (see [`crate::flow::table`]).
const TICK_NS: i64 = 10_000_000;
/// How often, in capture time, the sweep also makes every worker hand on its batch and report
/// how far it got, so that the collector never waits on a quiet worker for longer.
const REPORT_NS: i64 = 1_000_000_000;

/// Reads `input`, tracks its connections on `shards` workers (1: on this thread) and hands
/// each finished connection to `sink`, in (decision frame, first frame) order.
pub fn analyze<H: StreamHandler + 'static>(
    input: &Input,
    cfg: &FlowConfig,
    shards: usize,
    sink: &mut (dyn FnMut(ConnectionRecord<H>) + Send),
) -> InputSummary {
    analyze_with_progress(input, cfg, shards, &|r| (*r, None), sink, &|_| {})
}

/// Turns a finished connection into what the sink takes, and hands the record back when it
/// no longer needs it: its buffers then serve the next connections while they are still
/// cached ([`FlowTable::recycle`]).
pub type Prepare<'a, H, T> =
    dyn Fn(Box<ConnectionRecord<H>>) -> (T, Option<Box<ConnectionRecord<H>>>) + Sync + 'a;

/// [`analyze`], with `prepare` turning each finished connection into what `sink` takes (on
/// the worker that tracked it, so that per-connection work such as classification runs in
/// parallel), and `progress` called now and then with the bytes read so far from the input
/// (the file's bytes, compressed ones for compressed input).
pub fn analyze_with_progress<H: StreamHandler + 'static, T: Send>(
    input: &Input,
    cfg: &FlowConfig,
    shards: usize,
    prepare: &Prepare<'_, H, T>,
    sink: &mut (dyn FnMut(T) + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> InputSummary {
    analyze_in_chunks_of(
        input,
        cfg,
        shards,
        split::CHUNK_BYTES,
        prepare,
        sink,
        progress,
    )
}

/// [`analyze_with_progress`], with an uncompressed pcap or pcapng file read in chunks of
/// `chunk_bytes` when it is split between threads (see [`split`]). For tests: small chunks put chunk boundaries
/// everywhere in small captures.
#[doc(hidden)]
pub fn analyze_in_chunks_of<H: StreamHandler + 'static, T: Send>(
    input: &Input,
    cfg: &FlowConfig,
    shards: usize,
    chunk_bytes: u64,
    prepare: &Prepare<'_, H, T>,
    sink: &mut (dyn FnMut(T) + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> InputSummary {
    // The connection engine counts connections itself.
    let mut counter = Counter::new(&input.display, false);
    let mut reader = match CaptureReader::open(&input.source) {
        Ok(r) => r,
        Err(e) => {
            counter.fault(&e, true);
            return InputSummary {
                stats: counter.finish(None),
                table: TableCounters::default(),
            };
        }
    };
    if shards > 1 {
        // An uncompressed file of more than one chunk: every thread reads and decodes chunks.
        if let Some(file) = reader.chunked(&input.source, chunk_bytes) {
            let table = split::analyze(&file, &mut counter, cfg, shards, prepare, sink, progress);
            progress(file.len());
            return InputSummary {
                stats: counter.finish(Some(&reader)),
                table,
            };
        }
        // With workers, reading (the kernel's copy, or decompressing) gets a thread too.
        reader.read_ahead();
    }
    let table = if shards <= 1 {
        single(&mut reader, &mut counter, cfg, prepare, sink, progress)
    } else {
        sharded(
            &mut reader,
            &mut counter,
            cfg,
            shards,
            prepare,
            sink,
            progress,
        )
    };
    progress(reader.bytes_read());
    InputSummary {
        stats: counter.finish(Some(&reader)),
        table,
    }
}

/// Reads `input` through the capture and decode stages only, and counts what it holds; an
/// uncompressed pcap or pcapng file of more than one chunk on `threads` threads.
pub fn count(input: &Input, threads: usize) -> InputStats {
    count_in_chunks_of(input, threads, split::CHUNK_BYTES)
}

/// [`count`], with an uncompressed pcap or pcapng file read in chunks of `chunk_bytes` when
/// it has more than one and `threads` is more than one: for tests, which cut small captures
/// into many chunks.
#[doc(hidden)]
pub fn count_in_chunks_of(input: &Input, threads: usize, chunk_bytes: u64) -> InputStats {
    let mut counter = Counter::new(&input.display, true);
    match CaptureReader::open(&input.source) {
        Ok(mut reader) => {
            let chunked = (threads > 1)
                .then(|| reader.chunked(&input.source, chunk_bytes))
                .flatten();
            match chunked {
                Some(file) => split::count(&file, &mut counter, threads, true),
                None => {
                    read_loop(&mut reader, &mut counter, |_| {}, &|_| {});
                }
            }
            counter.finish(Some(&reader))
        }
        Err(e) => {
            counter.fault(&e, true);
            counter.finish(None)
        }
    }
}

/// What the read loop hands on.
enum Feed<'a> {
    /// A TCP segment with its 1-based frame number, and the reader's block its frame lies in.
    Tcp(&'a TcpPacket<'a>, u64, &'a SharedBlock),
    /// Capture time passed a tick: `now`, the last frame before it, and whether the workers
    /// are to report their progress (every [`REPORT_NS`]).
    Tick(i64, u64, bool),
}

/// How many frames between progress reports.
const PROGRESS_EVERY: u64 = 1 << 14;

/// Reads and decodes every frame, counts it, and feeds TCP segments and ticks on; reports
/// the bytes read to `progress` every [`PROGRESS_EVERY`] frames. Returns the time of the
/// last packet.
fn read_loop(
    reader: &mut CaptureReader,
    counter: &mut Counter,
    mut feed: impl FnMut(Feed<'_>),
    progress: &(dyn Fn(u64) + Sync),
) -> i64 {
    let mut decoder = Decoder::new();
    let mut frame_no = 0u64;
    let mut end_ns = i64::MIN;
    let mut next_tick = i64::MIN;
    let mut next_report = i64::MIN;
    loop {
        if frame_no.is_multiple_of(PROGRESS_EVERY) {
            progress(reader.bytes_read());
        }
        match reader.next_frame_in_block() {
            Ok(Some((frame, block))) => {
                if frame.ts_ns >= next_tick {
                    let report = frame.ts_ns >= next_report;
                    if next_tick != i64::MIN {
                        feed(Feed::Tick(frame.ts_ns, frame_no, report));
                    }
                    next_tick = frame.ts_ns.saturating_add(TICK_NS);
                    if report {
                        next_report = frame.ts_ns.saturating_add(REPORT_NS);
                    }
                }
                frame_no += 1;
                end_ns = end_ns.max(frame.ts_ns);
                let decoded = decoder.decode(&frame);
                counter.add(&frame, &decoded);
                if let Decoded::Tcp(t) = &decoded {
                    feed(Feed::Tcp(t, frame_no, block));
                }
            }
            Ok(None) => break,
            Err(e) => {
                counter.fault(&e, true);
                break;
            }
        }
    }
    end_ns
}

fn single<H: StreamHandler, T>(
    reader: &mut CaptureReader,
    counter: &mut Counter,
    cfg: &FlowConfig,
    prepare: &Prepare<'_, H, T>,
    sink: &mut (dyn FnMut(T) + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> TableCounters {
    let mut table = FlowTable::<H>::new(*cfg, cfg.max_connections);
    let mut done = Vec::new();
    let end_ns = read_loop(
        reader,
        counter,
        |feed| {
            match feed {
                Feed::Tcp(p, frame, _) => table.packet(p, frame),
                Feed::Tick(now, frame, _) => table.tick(now, frame),
            }
            if table.has_finished() {
                table.take_finished(&mut done);
                for (_, r) in done.drain(..) {
                    let (prepared, spent) = prepare(r);
                    if let Some(r) = spent {
                        table.recycle(r);
                    }
                    sink(prepared);
                }
            }
        },
        progress,
    );
    table.finish(end_ns);
    loop {
        let more = table.take_some_finished(&mut done, FINISH_CHUNK);
        for (_, r) in done.drain(..) {
            sink(prepare(r).0);
        }
        if !more {
            break;
        }
    }
    table.counters
}

/// Connections still open at the end of the input that are finalized at once: their records
/// are handed on before the next ones are made.
const FINISH_CHUNK: usize = 1024;

/// Packets per batch before it is sent. On short connections (about 8 packets each) 2,048
/// packets a batch ran about 10 % faster with two workers than 512: fewer hand-overs between
/// threads; larger batches gained nothing more.
const BATCH_PACKETS: usize = 2048;
/// Captured bytes a batch covers, wherever they lie, before it is sent, so that workers read
/// bytes the reader saw shortly before, likely still in the shared cache. Between 128 KiB
/// and 1 MiB the differences on large transfers were within this machine's noise; the
/// largest hands over least often.
const BATCH_BYTES: usize = 1 << 20;
/// Reader blocks a batch may hold on to before it is sent: a worker that gets few packets
/// must not pin the blocks of a whole second of a busy capture.
const BATCH_BLOCKS: usize = 8;
/// Full batches that may wait for each worker.
const QUEUE_DEPTH: usize = 4;

/// Progress reports without records a shard may skip in a row (one comes after each batch a
/// worker empties, and on the decoding thread after each batch it sends off).
const QUIET_REPORTS: usize = 8;

/// What the reader sends a worker.
enum ToWorker {
    Batch(Batch),
    Tick { now_ns: i64, frame: u64 },
    End { end_ns: i64 },
}

/// What a shard sends the collector: its finished connections, prepared, with their
/// (decision moment, first frame), and how far (see [`crate::flow::table`]) it has decided
/// everything: every record up to `progress`, in the same order, was sent.
struct FromShard<T> {
    shard: usize,
    records: Vec<((u64, u64), T)>,
    progress: (u64, u64),
    counters: Option<TableCounters>,
}

fn sharded<H: StreamHandler + 'static, T: Send>(
    reader: &mut CaptureReader,
    counter: &mut Counter,
    cfg: &FlowConfig,
    shards: usize,
    prepare: &Prepare<'_, H, T>,
    sink: &mut (dyn FnMut(T) + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> TableCounters {
    let owners = Owners::new(shards);
    std::thread::scope(|scope| {
        let (free_tx, free_rx) = mpsc::channel::<Batch>();
        // Bounded: when writing the report is the slow part, the workers and then the reader
        // wait for it instead of piling up finished records.
        let (out_tx, out_rx) = mpsc::sync_channel::<FromShard<T>>(QUEUE_DEPTH * shards);
        let mut senders = Vec::with_capacity(shards - 1);
        for shard in 1..shards {
            let (tx, rx) = mpsc::sync_channel::<ToWorker>(QUEUE_DEPTH);
            let free_tx = free_tx.clone();
            let out_tx = out_tx.clone();
            let cfg = *cfg;
            let max_live = owners.max_live(shard, cfg.max_connections);
            spawn_named(scope, format!("rstscope-work{shard}"), move || {
                let engine = Shard::<H, T>::new(shard, cfg, max_live, prepare, out_tx);
                worker(engine, rx, free_tx)
            });
            senders.push(tx);
        }
        // Shard 0 is this thread's own.
        let mut own = Shard::<H, T>::new(
            0,
            *cfg,
            owners.max_live(0, cfg.max_connections),
            prepare,
            out_tx,
        );
        let collector = spawn_named(scope, "rstscope-merge".into(), move || {
            collect(shards, out_rx, sink)
        });

        // The batches being filled, one per worker (shard 1 and up).
        let mut filling: Vec<Batch> = (1..shards).map(|_| Batch::default()).collect();
        // Emptied batches are refilled last in, first out: the one emptied last is the
        // likeliest to be still in the cache.
        let mut emptied: Vec<Batch> = Vec::new();
        let mut flush =
            |filling: &mut Vec<Batch>, worker: usize, senders: &[mpsc::SyncSender<ToWorker>]| {
                emptied.extend(free_rx.try_iter());
                let fresh = emptied.pop().unwrap_or_default();
                let full = std::mem::replace(&mut filling[worker], fresh);
                // A worker only stops after End, so this send cannot fail.
                let _ = senders[worker].send(ToWorker::Batch(full));
            };
        let mut last_frame = 0;
        let end_ns = read_loop(
            reader,
            counter,
            |feed| match feed {
                Feed::Tcp(p, frame, block) => {
                    last_frame = frame;
                    let (key, from_lo) = FlowKey::of_packet(p);
                    let hash = key.hash();
                    let Some(worker) = owners.of(hash).checked_sub(1) else {
                        own.packet(p, key, hash, from_lo, frame);
                        return;
                    };
                    filling[worker].push(p, frame, key, hash, from_lo, block);
                    if filling[worker].is_full() {
                        flush(&mut filling, worker, &senders);
                        // As often as a worker reports, and for the same reason.
                        own.report((frame << 1, u64::MAX), false);
                    }
                }
                Feed::Tick(now_ns, frame, report) => {
                    own.tick(now_ns, frame);
                    if report {
                        own.report(((frame << 1) | 1, u64::MAX), true);
                    }
                    for (worker, sender) in senders.iter().enumerate() {
                        if !report {
                            // Rides in the batch, in order with its packets: sending it on its
                            // own would send every batch a hundredth of a second old.
                            let batch = &mut filling[worker];
                            batch.ticks.push((batch.metas.len(), now_ns, frame));
                            continue;
                        }
                        if !filling[worker].is_empty() {
                            flush(&mut filling, worker, &senders);
                        }
                        let _ = sender.send(ToWorker::Tick { now_ns, frame });
                    }
                }
            },
            progress,
        );
        for (worker, batch) in filling.drain(..).enumerate() {
            if !batch.is_empty() {
                let _ = senders[worker].send(ToWorker::Batch(batch));
            }
            let _ = senders[worker].send(ToWorker::End { end_ns });
        }
        drop(senders);
        own.report((last_frame << 1, u64::MAX), true);
        own.end(end_ns);
        collector.join().unwrap_or_default()
    })
}

/// Spawns a scoped thread with a name, so that profilers and `top -H` tell the stages apart.
/// Failing to start a thread is as fatal as with `Scope::spawn`.
fn spawn_named<'scope, 'env, R: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: String,
    f: impl FnOnce() -> R + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, R> {
    match std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, f)
    {
        Ok(handle) => handle,
        Err(e) => panic!("cannot start a thread: {e}"),
    }
}

/// A worker thread: tracks its shard's connections through the batches it is sent, then
/// finishes the ones still open at `End`.
fn worker<H: StreamHandler, T>(
    mut engine: Shard<'_, H, T>,
    rx: mpsc::Receiver<ToWorker>,
    free_tx: mpsc::Sender<Batch>,
) {
    for msg in rx {
        let reported = match msg {
            ToWorker::Batch(mut batch) => {
                let last = engine.batch(&batch);
                batch.clear();
                // The reader may have stopped taking batches back; this one is then dropped.
                let _ = free_tx.send(batch);
                engine.report((last, u64::MAX), false)
            }
            ToWorker::Tick { now_ns, frame } => {
                engine.tick(now_ns, frame);
                engine.report(((frame << 1) | 1, u64::MAX), true)
            }
            ToWorker::End { end_ns } => {
                engine.end(end_ns);
                return;
            }
        };
        if !reported {
            return;
        }
    }
}

/// Which shard owns a connection: shard 0 is the reading thread's own, which also decodes
/// every packet, so it takes a smaller share of the connections than each worker.
struct Owners {
    workers: u64,
    /// Of [`Owners::SLOTS`] equal parts of the hash space, the first `own` are shard 0's.
    own: u64,
}

impl Owners {
    const SLOTS: u64 = 1 << 10;

    fn new(shards: usize) -> Self {
        // Half a worker's share. With two shards on short connections, none for this thread
        // took 0.48 s where a third took 0.36 s; from a quarter to a half the differences
        // were within the noise, and on large transfers anything from a third to two thirds
        // gave the same (benches/README.md).
        let shards = shards.max(2) as u64;
        Owners {
            workers: shards - 1,
            own: Self::SLOTS / (2 * shards - 1),
        }
    }

    /// The shard that owns the connection with this key hash. The hash's high half decides,
    /// as the table inside a shard indexes by the low bits: taking the shard from those would
    /// leave most of each table's buckets unused.
    fn of(&self, hash: u64) -> usize {
        let slot = ((hash >> 32) * Self::SLOTS) >> 32;
        match slot.checked_sub(self.own) {
            None => 0,
            Some(past) => 1 + (past * self.workers / (Self::SLOTS - self.own)) as usize,
        }
    }

    /// The live-connection cap of `shard`'s table: its share of `max_live`.
    fn max_live(&self, shard: usize, max_live: usize) -> usize {
        let own = (max_live as u64 * self.own).div_ceil(Self::SLOTS).max(1);
        let cap = if shard == 0 {
            own
        } else {
            (max_live as u64).saturating_sub(own).div_ceil(self.workers)
        };
        cap.max(1) as usize
    }
}

/// One shard's connection engine: its flow table, and its finished connections on their way
/// to the collector. Runs on a worker thread, or inline on the reading thread for its own
/// share of the connections.
struct Shard<'a, H: StreamHandler, T> {
    shard: usize,
    table: FlowTable<H>,
    prepare: &'a Prepare<'a, H, T>,
    out_tx: mpsc::SyncSender<FromShard<T>>,
    finished: Vec<(u64, Box<ConnectionRecord<H>>)>,
    /// Prepared records not yet sent.
    records: Vec<((u64, u64), T)>,
    /// Progress reports skipped since the last one sent.
    quiet: usize,
}

impl<'a, H: StreamHandler, T> Shard<'a, H, T> {
    fn new(
        shard: usize,
        cfg: FlowConfig,
        max_live: usize,
        prepare: &'a Prepare<'a, H, T>,
        out_tx: mpsc::SyncSender<FromShard<T>>,
    ) -> Self {
        Shard {
            shard,
            table: FlowTable::new(cfg, max_live),
            prepare,
            out_tx,
            finished: Vec::new(),
            records: Vec::new(),
            quiet: 0,
        }
    }

    fn packet(&mut self, p: &TcpPacket<'_>, key: FlowKey, hash: u64, from_lo: bool, frame: u64) {
        // The reader already made the key and its hash to choose this shard.
        self.table.packet_keyed(p, key, hash, from_lo, frame);
        // A connection that ended at this packet is prepared while its memory is cached,
        // and its buffers serve the next new connection.
        if self.table.has_finished() {
            self.prepare_finished();
        }
    }

    /// Tracks a batch's packets and ticks, in order. Returns how far it got: its last packet,
    /// or a tick after it (the first half of a progress key).
    fn batch(&mut self, batch: &Batch) -> u64 {
        let mut ticks = batch.ticks.iter().peekable();
        for (i, meta) in batch.metas.iter().enumerate() {
            while let Some(&(_, now_ns, frame)) = ticks.next_if(|t| t.0 <= i) {
                self.tick(now_ns, frame);
            }
            let p = batch.packet(meta);
            self.packet(&p, meta.key, meta.hash, meta.from_lo, meta.frame);
        }
        for &(_, now_ns, frame) in ticks {
            self.tick(now_ns, frame);
        }
        let last_packet = batch.metas.last().map_or(0, |m| m.frame << 1);
        let last_tick = batch.ticks.last().map_or(0, |t| (t.2 << 1) | 1);
        last_packet.max(last_tick)
    }

    /// Prepares the records finished so far and gives their buffers back to the table.
    fn prepare_finished(&mut self) {
        self.table.take_finished(&mut self.finished);
        for (decision, r) in self.finished.drain(..) {
            let key = (decision, r.first_frame);
            let (prepared, spent) = (self.prepare)(r);
            if let Some(r) = spent {
                self.table.recycle(r);
            }
            self.records.push((key, prepared));
        }
    }

    /// Tells the collector that everything up to `progress` was decided, with the records
    /// that came of it. Unless `always`, a report with no records is skipped now and then:
    /// the collector is not woken after every batch, but it still learns this shard's
    /// progress often enough that the other shards' records do not pile up waiting for it.
    /// False once the collector is gone.
    fn report(&mut self, progress: (u64, u64), always: bool) -> bool {
        // Superseded connections still waiting to be finished are decided before the
        // progress this reports.
        self.prepare_finished();
        if self.records.is_empty() && !always && self.quiet < QUIET_REPORTS {
            self.quiet += 1;
            return true;
        }
        self.quiet = 0;
        let records = std::mem::take(&mut self.records);
        self.send(records, progress, None)
    }

    fn send(
        &self,
        records: Vec<((u64, u64), T)>,
        progress: (u64, u64),
        counters: Option<TableCounters>,
    ) -> bool {
        self.out_tx
            .send(FromShard {
                shard: self.shard,
                records,
                progress,
                counters,
            })
            .is_ok()
    }

    /// Capture time passed a tick: expired connections are swept out and prepared.
    fn tick(&mut self, now_ns: i64, frame: u64) {
        self.table.tick(now_ns, frame);
        if self.table.has_finished() {
            self.prepare_finished();
        }
    }

    /// Finishes the connections still open at the end of the input and sends them, a chunk
    /// at a time in first-frame order: the collector hands each chunk on once every shard got
    /// that far. Last, the table's counters.
    fn end(mut self, end_ns: i64) {
        // Normally none: the last report sent them.
        self.prepare_finished();
        let mut records = std::mem::take(&mut self.records);
        self.table.finish(end_ns);
        loop {
            let more = self
                .table
                .take_some_finished(&mut self.finished, FINISH_CHUNK);
            let prepare = self.prepare;
            records.extend(
                self.finished
                    .drain(..)
                    .map(|(decision, r)| ((decision, r.first_frame), prepare(r).0)),
            );
            if !more {
                self.send(records, (u64::MAX, u64::MAX), Some(self.table.counters));
                return;
            }
            let upto = records.last().map_or((0, 0), |(key, _)| *key);
            if !self.send(std::mem::take(&mut records), upto, None) {
                return;
            }
        }
    }
}

/// Merges the shards' records into one stream in (decision frame, first frame) order. Each
/// shard sends its records in that order, so a merge of the per-shard queues suffices.
fn collect<T>(
    shards: usize,
    rx: mpsc::Receiver<FromShard<T>>,
    sink: &mut (dyn FnMut(T) + Send),
) -> TableCounters {
    let mut progress = vec![(0u64, 0u64); shards];
    let mut pending: Vec<VecDeque<((u64, u64), T)>> =
        (0..shards).map(|_| VecDeque::new()).collect();
    let mut counters = TableCounters::default();
    for msg in rx {
        if let Some(p) = progress.get_mut(msg.shard) {
            *p = (*p).max(msg.progress);
        }
        if let Some(queue) = pending.get_mut(msg.shard) {
            queue.extend(msg.records);
        }
        if let Some(c) = msg.counters {
            counters.evicted += c.evicted;
            counters.idle_timeouts += c.idle_timeouts;
            counters.peak_live += c.peak_live;
            counters.trailing += c.trailing;
        }
        let safe = progress.iter().copied().min().unwrap_or((0, 0));
        hand_on(&mut pending, safe, sink);
    }
    // Workers that stopped early (a bug) leave their records here: hand them on anyway.
    hand_on(&mut pending, (u64::MAX, u64::MAX), sink);
    counters
}

/// Hands on, in order, the pending records up to `upto`.
fn hand_on<T>(
    pending: &mut [VecDeque<((u64, u64), T)>],
    upto: (u64, u64),
    sink: &mut (dyn FnMut(T) + Send),
) {
    loop {
        let first = pending
            .iter()
            .enumerate()
            .filter_map(|(shard, queue)| queue.front().map(|(key, _)| (*key, shard)))
            .min();
        let Some((_, shard)) = first.filter(|(key, _)| *key <= upto) else {
            return;
        };
        match pending.get_mut(shard).and_then(VecDeque::pop_front) {
            Some((_, record)) => sink(record),
            None => return,
        }
    }
}

/// A TCP segment: its header fields, and where its options and captured payload lie.
#[derive(Clone, Copy)]
struct Meta {
    frame: u64,
    key: FlowKey,
    hash: u64,
    from_lo: bool,
    ts_ns: i64,
    ip: IpVersion,
    // The addresses and ports are the key's, in the order `from_lo` gives.
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ttl: u8,
    reassembled: bool,
    payload_len: u32,
    frame_len: u32,
    /// Which of the batch's blocks holds the bytes, or [`IN_ARENA`].
    block: u8,
    /// Where the options start, in that block or the arena; the payload follows at
    /// `payload_at`.
    options_at: u32,
    options_len: u8,
    payload_at: u32,
    captured_len: u32,
    fingerprint: Option<u64>,
}

/// [`Meta::block`] of a packet whose bytes were copied into the batch's arena.
const IN_ARENA: u8 = u8::MAX;

#[derive(Default)]
struct Batch {
    metas: Vec<Meta>,
    /// Ticks among the packets: (how many of `metas` came before it, now, frame).
    ticks: Vec<(usize, i64, u64)>,
    /// The reader blocks the packets' bytes lie in, in the order the packets came.
    blocks: Vec<SharedBlock>,
    /// Bytes of packets that lie in no reader block.
    arena: Vec<u8>,
    /// Captured bytes of the packets, wherever they lie.
    bytes: usize,
}

/// Where `part` starts within `block`, if it lies entirely inside it. Compares addresses
/// only; an empty part lies anywhere.
fn offset_in(block: &[u8], part: &[u8]) -> Option<u32> {
    if part.is_empty() {
        return Some(0);
    }
    let at = (part.as_ptr() as usize).wrapping_sub(block.as_ptr() as usize);
    let fits = at <= block.len() && part.len() <= block.len() - at;
    fits.then(|| u32::try_from(at).ok()).flatten()
}

impl Batch {
    fn push(
        &mut self,
        p: &TcpPacket<'_>,
        frame: u64,
        key: FlowKey,
        hash: u64,
        from_lo: bool,
        block: &SharedBlock,
    ) {
        let shared = offset_in(block, p.options).zip(offset_in(block, p.payload));
        let (block_index, options_at, payload_at) = match shared {
            Some((options_at, payload_at)) => {
                if !self
                    .blocks
                    .last()
                    .is_some_and(|b| SharedBlock::ptr_eq(b, block))
                {
                    self.blocks.push(SharedBlock::clone(block));
                }
                let index = u8::try_from(self.blocks.len() - 1).unwrap_or(IN_ARENA);
                (index, options_at, payload_at)
            }
            None => {
                // Defragmented IPv4: the decoder's own buffer, valid only until the next frame.
                let at = self.arena.len() as u32;
                self.arena.extend_from_slice(p.options);
                self.arena.extend_from_slice(p.payload);
                (IN_ARENA, at, at + p.options.len() as u32)
            }
        };
        self.bytes += p.options.len() + p.payload.len();
        // Made here, where the bytes were just read: the shard that tracks the packet would
        // read the payload's last bytes from this core's cache, or from memory.
        let whole = !p.payload.is_empty() && p.payload.len() == p.payload_len as usize;
        let fingerprint = whole.then(|| fingerprint(p.payload));
        self.metas.push(Meta {
            frame,
            key,
            hash,
            from_lo,
            ts_ns: p.ts_ns,
            ip: p.ip,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags.0,
            window: p.window,
            ttl: p.ttl,
            reassembled: p.reassembled,
            payload_len: p.payload_len,
            frame_len: p.frame_len,
            block: block_index,
            options_at,
            options_len: p.options.len().min(255) as u8,
            payload_at,
            captured_len: p.payload.len() as u32,
            fingerprint,
        });
    }

    /// [`Batch::push`] for a packet whose frame may come before packets already in the
    /// batch (a datagram whose IP fragments were reassembled after the batch was filled): it
    /// takes its place in frame order, before the ticks that came after its frame.
    fn insert(
        &mut self,
        p: &TcpPacket<'_>,
        frame: u64,
        key: FlowKey,
        hash: u64,
        from_lo: bool,
        block: &SharedBlock,
    ) {
        let at = self.metas.partition_point(|m| m.frame < frame);
        self.push(p, frame, key, hash, from_lo, block);
        if let Some(moved) = self.metas.get_mut(at..) {
            moved.rotate_right(1);
        }
        for tick in &mut self.ticks {
            // A tick at `at` came after the frame numbered `tick.2`.
            if tick.0 > at || (tick.0 == at && tick.2 >= frame) {
                tick.0 += 1;
            }
        }
    }

    fn is_full(&self) -> bool {
        self.metas.len() >= BATCH_PACKETS
            || self.bytes >= BATCH_BYTES
            || self.blocks.len() >= BATCH_BLOCKS
    }

    fn is_empty(&self) -> bool {
        self.metas.is_empty() && self.ticks.is_empty()
    }

    /// Empties the batch for reuse, letting go of its blocks so the reader can reuse them.
    fn clear(&mut self) {
        self.metas.clear();
        self.ticks.clear();
        self.bytes = 0;
        self.blocks.clear();
        self.arena.clear();
    }

    fn packet(&self, m: &Meta) -> TcpPacket<'_> {
        let bytes: &[u8] = match self.blocks.get(usize::from(m.block)) {
            Some(block) => block,
            None => &self.arena,
        };
        let part = |at: u32, len: usize| {
            let at = at as usize;
            bytes.get(at..at + len).unwrap_or_default()
        };
        let (src, dst) = if m.from_lo {
            (m.key.lo, m.key.hi)
        } else {
            (m.key.hi, m.key.lo)
        };
        TcpPacket {
            ts_ns: m.ts_ns,
            ip: m.ip,
            src: src.ip,
            dst: dst.ip,
            src_port: src.port,
            dst_port: dst.port,
            seq: m.seq,
            ack: m.ack,
            flags: TcpFlags(m.flags),
            window: m.window,
            ttl: m.ttl,
            options: part(m.options_at, usize::from(m.options_len)),
            payload: part(m.payload_at, m.captured_len as usize),
            payload_len: m.payload_len,
            reassembled: m.reassembled,
            frame_len: m.frame_len,
            payload_fingerprint: m.fingerprint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owners of evenly spread hashes, counted per shard.
    fn spread(shards: usize) -> Vec<u64> {
        let owners = Owners::new(shards);
        let mut counts = vec![0u64; shards];
        let samples = 1u64 << 16;
        for i in 0..samples {
            // Evenly spaced over the hash's high half, which decides.
            let hash = (i * (u64::MAX / samples)) ^ 0xDEAD;
            counts[owners.of(hash)] += 1;
        }
        counts
    }

    #[test]
    fn the_reading_thread_owns_half_a_workers_share() {
        for shards in 2..=8 {
            let counts = spread(shards);
            let total: u64 = counts.iter().sum();
            let share = |c: u64| c as f64 / total as f64;
            let own = 1.0 / (2 * shards - 1) as f64;
            assert!(
                (share(counts[0]) - own).abs() < 0.01,
                "{shards}: {counts:?}"
            );
            for &c in &counts[1..] {
                assert!((share(c) - 2.0 * own).abs() < 0.01, "{shards}: {counts:?}");
            }
        }
    }

    #[test]
    fn every_hash_has_an_owner_and_the_caps_add_up() {
        for shards in 2..=8 {
            let owners = Owners::new(shards);
            assert!(owners.of(0) < shards && owners.of(u64::MAX) < shards);
            let caps: usize = (0..shards).map(|s| owners.max_live(s, 100_000)).sum();
            assert!(
                (100_000..100_000 + shards).contains(&caps),
                "{shards}: {caps}"
            );
            assert!(owners.max_live(1, 100_000) > owners.max_live(0, 100_000));
            assert_eq!(owners.max_live(0, 1), 1);
        }
    }
}
