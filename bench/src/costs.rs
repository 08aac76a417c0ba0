//! In-process costs: resolving ConfigMaps into snapshots, and the memory a snapshot holds.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    hint::black_box,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use proxyconf_server::resolve::{Policy, resolve};

/// Counts live heap bytes, to measure what a resolved snapshot holds.
pub struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is only
// arithmetic on the sizes it was given.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Live heap bytes now (meaningful when [`CountingAllocator`] is the global allocator).
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
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

/// Heap bytes a resolved snapshot of `data` holds.
pub fn resolved_bytes(data: &BTreeMap<String, String>) -> usize {
    let before = live_bytes();
    let resolved = resolve(data, &Policy::default());
    let held = live_bytes().saturating_sub(before);
    drop(black_box(resolved));
    held
}
