//! The read and decode path allocates nothing per packet: counted with a global allocator
//! that tallies every allocation made while frames are read and decoded.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use rstscope::capture::{CaptureReader, InputSource};
use rstscope::decode::{Decoded, Decoder};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn reading_and_decoding_allocate_nothing_per_packet() {
    // Only one test in this binary, so no other thread allocates meanwhile.
    for name in [
        "http-v4.pcap",
        "two-interfaces.pcapng",
        "http-any-sll2.pcap",
        "ipv6-ext-headers.pcap",
        "qinq.pcap",
        "snaplen96.pcap",
    ] {
        let mut reader = CaptureReader::open(&InputSource::File(ingest(name))).unwrap();
        let mut decoder = Decoder::new();
        // The file and section headers are read with the first frame; from there on, the
        // count must not move.
        assert!(reader.next_frame().unwrap().is_some());
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut packets = 1u64;
        let mut tcp = 0u64;
        while let Some(frame) = reader.next_frame().unwrap() {
            packets += 1;
            if let Decoded::Tcp(_) = decoder.decode(&frame) {
                tcp += 1;
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert!(packets > 20 && tcp > 20, "{name}");
        // pcapng blocks that are not packets (interface descriptions and statistics after
        // the first packet) may allocate for their options (pcap-parser collects them in a
        // Vec, which grows as it fills: a few allocations a block); packets never do.
        let bytes = std::fs::read(ingest(name)).unwrap();
        let other_blocks = if name.ends_with(".pcapng") {
            let blocks = pcapng_blocks(&bytes);
            let first_packet = blocks.iter().position(|b| b.1 == 6).unwrap();
            blocks[first_packet..].iter().filter(|b| b.1 != 6).count() as u64
        } else {
            0
        };
        assert!(
            allocated <= 4 * other_blocks,
            "{name}: {allocated} allocations over {packets} packets and {other_blocks} other blocks"
        );
    }
}
