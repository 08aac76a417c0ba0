//! Admission of new Watch streams, so that what subscribers can make the server hold is bounded
//! and a refusal says what to do:
//!
//! - at most `max_streams` are open at once (each costs about 4 KiB: 20,000 ≈ 80 MiB);
//! - a token bucket bounds how fast streams may be opened, so that a reconnect storm (every
//!   subscriber of a restarted replica arriving at once) is answered with a retryable
//!   RESOURCE_EXHAUSTED instead of overwhelming the server. Clients back off with jitter and come
//!   back spread out.

use std::sync::{Arc, Mutex};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// Why a Watch stream is not admitted; both are answered RESOURCE_EXHAUSTED with this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// As many streams are open as this replica serves.
    #[error(
        "this replica serves its maximum of {0} Watch streams; retry with backoff or on another \
         replica"
    )]
    Full(usize),
    /// Streams are being opened faster than the token bucket allows.
    #[error("too many Watch streams opened at once; retry after a jittered backoff")]
    TooFast,
}

/// Admits Watch streams: at most `max_streams` open, opened no faster than the bucket allows.
#[derive(Debug)]
pub struct WatchAdmission {
    open: Arc<Semaphore>,
    max_streams: usize,
    setups: TokenBucket,
}

/// An admitted stream's place; dropping it lets another stream in.
pub type Admitted = OwnedSemaphorePermit;

impl WatchAdmission {
    /// Admits up to `max_streams` (at least 1) open streams, `burst` at once, then `per_second`.
    pub fn new(max_streams: usize, per_second: u32, burst: u32) -> Self {
        let max_streams = max_streams.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            open: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            setups: TokenBucket::new(per_second, burst),
        }
    }

    /// The most streams open at once.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// A place for one more stream, or why not. A stream refused for being too fast does not
    /// hold a place, and a full replica takes no token.
    pub fn admit(&self) -> Result<Admitted, Refused> {
        let admitted = self
            .open
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full(self.max_streams))?;
        if !self.setups.try_take() {
            return Err(Refused::TooFast);
        }
        Ok(admitted)
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            burst,
            per_second: f64::from(per_second),
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if one is left.
    pub fn try_take(&self) -> bool {
        let now = Instant::now();
        // A poisoned lock only means another taker panicked; the numbers are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *state;
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let bucket = TokenBucket::new(10, 5);
        assert_eq!((0..8).filter(|_| bucket.try_take()).count(), 5, "the burst");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(
            (0..8).filter(|_| bucket.try_take()).count(),
            3,
            "10/s for 300 ms"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            (0..8).filter(|_| bucket.try_take()).count(),
            5,
            "never above the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_streams_are_open_and_a_closed_one_frees_its_place() {
        let admission = WatchAdmission::new(3, 1000, 1000);
        let mut open: Vec<_> = (0..3).map(|_| admission.admit().unwrap()).collect();
        assert_eq!(admission.admit().unwrap_err(), Refused::Full(3));
        open.pop();
        open.push(admission.admit().expect("the closed stream's place"));
        assert_eq!(admission.admit().unwrap_err(), Refused::Full(3));
        assert!(
            Refused::Full(3)
                .to_string()
                .contains("maximum of 3 Watch streams")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_replica_takes_no_token_and_a_stream_refused_for_speed_holds_no_place() {
        // Three tokens and no refill: two streams, then refusals that must spend nothing.
        let admission = WatchAdmission::new(2, 0, 3);
        let first = admission.admit().unwrap();
        let _second = admission.admit().unwrap();
        for _ in 0..5 {
            assert_eq!(admission.admit().unwrap_err(), Refused::Full(2));
        }
        drop(first);
        let third = admission
            .admit()
            .expect("the last token, untouched by the refusals");
        drop(third);
        assert_eq!(admission.admit().unwrap_err(), Refused::TooFast);
        // The stream refused for speed gave its place back: still one place free.
        assert_eq!(admission.open.available_permits(), 1);
    }
}
