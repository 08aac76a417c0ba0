//! proxyconf's benchmark suite: everything the README's Performance table reports, measured in one
//! run on one machine, against real processes over loopback.
//!
//! # Layout
//!
//! - [`machine`]: what the figures were measured on.
//! - [`processes`]: the servers under test (proxyconf-server, the bare tonic floor) as child
//!   processes, and their memory and CPU from `/proc`.
//! - [`bare`]: the bare tonic server: one method answering a precomputed constant.
//! - [`load`]: the load generator: closed-loop throughput, open-loop latency.
//! - [`subscribers`]: Watch subscribers as cheap as a client can be, for the fan-out figures.
//! - [`fanout`]: one change to every Watch subscriber, and each idle subscriber's memory.
//! - [`costs`]: in-process costs: resolving ConfigMaps, allocation.
//! - [`client_runs`]: `proxyconf env` as a whole process.
//! - [`abuse`]: `Resolve` latency under rapid reset and PING floods.
//! - [`suite`]: runs it all and builds the [`report::Table`].

pub mod abuse;
pub mod bare;
pub mod client_runs;
pub mod costs;
pub mod fanout;
pub mod file_source;
pub mod load;
pub mod machine;
pub mod processes;
pub mod report;
pub mod subscribers;
pub mod suite;

use std::time::Duration;

/// The median and 99th percentile of `samples` (sorted in place).
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let (p50, p99) = percentiles(&mut samples);
        assert_eq!(p50, Duration::from_millis(51));
        assert_eq!(p99, Duration::from_millis(99));
    }
}
