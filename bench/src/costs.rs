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

pub const NEXUS: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository";

/// A typical cluster-config: the switch, 8 package managers, one unrelated key (10 keys).
pub fn typical() -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("allow-package-registry-proxy".to_owned(), "true".to_owned()),
        ("enable-keyless-signing".to_owned(), "true".to_owned()),
    ]);
    for pm in [
        "npm",
        "pnpm",
        "yarn",
        "gomod",
        "gomod-sum",
        "pip",
        "cargo",
        "bundler",
    ] {
        data.insert(
            format!("package-registry-proxy-{pm}-url"),
            format!("{NEXUS}/{pm}/"),
        );
    }
    data
}

/// `count` package managers; 5,000 make about 1 MiB, the most a ConfigMap holds.
pub fn large(count: usize) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([("allow-package-registry-proxy".to_owned(), "true".to_owned())]);
    for i in 0..count {
        data.insert(
            format!("package-registry-proxy-pm{i}-url"),
            format!("{NEXUS}/repository-with-a-long-name-{i:05}/and/some/more/path/segments/to/reach/the/size/of/the/largest/configmap/kubernetes/stores/"),
        );
    }
    data
}

/// The size of a ConfigMap's data in bytes (keys and values).
pub fn size_of(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

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
