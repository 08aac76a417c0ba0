//! Admission of new Watch streams: a token bucket that bounds how fast streams may be opened, so
//! that a reconnect storm (every subscriber of a restarted replica arriving at once) is answered
//! with a retryable RESOURCE_EXHAUSTED instead of overwhelming the server. Clients back off with
//! jitter and come back spread out.

use std::sync::Mutex;

use tokio::time::Instant;

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
}
