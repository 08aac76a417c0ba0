//! In-process costs: resolving ConfigMaps into snapshots, and the memory a snapshot holds.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    hint::black_box,
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use proxyconf_server::resolve::{Policy, resolve};

/// Counts live heap bytes while [`counting`] is on, to measure what a resolved snapshot holds.
/// Off, it costs one relaxed load per call, so that it does not slow the timed measurements.
pub struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Runs `f` with allocations counted; returns its result and the heap bytes it left allocated.
pub fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let value = f();
    COUNTING.store(false, Ordering::SeqCst);
    // Frees of memory allocated before counting make it lower, never wrong upwards.
    let live = LIVE_BYTES.load(Ordering::SeqCst);
    (value, usize::try_from(live).unwrap_or(0))
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is only
// arithmetic on the sizes it was given.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

pub use proxyconf_e2e::fixtures::{large, size_of, typical};

/// The median time of one `resolve(data)`, over `samples` batches sized to take ~1 ms each.
pub fn resolve_time(data: &BTreeMap<String, String>, samples: usize) -> Duration {
    let policy = Policy::default();
    let start = Instant::now();
    black_box(resolve(data, &policy));
    let once = start.elapsed().max(Duration::from_nanos(100));
    let batch = (Duration::from_millis(1).as_nanos() / once.as_nanos()).clamp(1, 10_000) as u32;
    let mut per_call: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(resolve(black_box(data), &policy));
            }
            start.elapsed() / batch
        })
        .collect();
    crate::percentiles(&mut per_call).0
}

/// Heap bytes a resolved snapshot of `data` holds (when [`CountingAllocator`] is the global
/// allocator, as in the `proxyconf-bench` binary).
pub fn resolved_bytes(data: &BTreeMap<String, String>) -> usize {
    let (resolved, held) = counting(|| resolve(data, &Policy::default()));
    drop(black_box(resolved));
    held
}
