//! Randomness for spreading retries and deadlines, so that replicas and streams started together
//! do not act together. Not for cryptography: a per-thread xorshift seeded from the clock.

use std::{cell::Cell, time::Duration};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncation is fine: only the low bits vary between calls.
    (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1
}

/// A number in [0, 1).
pub fn fraction() -> f64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % 1_000_000) as f64 / 1_000_000.0
    })
}

/// `nominal` scaled by a random factor in [`low`, `high`).
pub fn spread(nominal: Duration, low: f64, high: f64) -> Duration {
    nominal.mul_f64(low + (high - low) * fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_in_bounds_and_varies() {
        let nominal = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..1000).map(|_| spread(nominal, 0.8, 1.0)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_secs(80) && *d < Duration::from_secs(100))
        );
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 900, "{} distinct of 1000", distinct.len());
    }
}
