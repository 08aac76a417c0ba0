//! What the server and the client share about the connection between them: HTTP/2 keepalive,
//! exponential backoff with jitter, and error chains printed on one line.

use std::time::Duration;

/// HTTP/2 keepalive: a PING after this much silence, so that a Watch on a dead connection fails
/// within a minute instead of hanging (both sides send them).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive PING may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `nominal` scaled by a random factor in [`low`, `high`), so that replicas, clients and streams
/// started together do not act together. Not for cryptography.
pub fn spread(nominal: Duration, low: f64, high: f64) -> Duration {
    nominal.mul_f64(low + (high - low) * fastrand::f64())
}

/// Exponential backoff with jitter: pauses grow ×2 from `first` up to `max`, each spread over
/// [½, 1½) of its nominal length.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let pause = spread(self.next, 0.5, 1.5);
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// `error` and its causes on one line, `outer: inner: innermost`, leaving out a cause that its
/// error already quotes (hyper and tonic often repeat theirs).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let pauses: Vec<Duration> = (0..6).map(|_| b.next_pause()).collect();
        for (pause, nominal) in pauses.iter().zip([100, 200, 400, 800, 800, 800]) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *pause >= nominal / 2 && *pause < nominal * 3 / 2,
                "{pause:?} vs {nominal:?}"
            );
        }
        b.reset();
        assert!(b.next_pause() < Duration::from_millis(150));
    }

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

    #[test]
    fn error_chain_leaves_out_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E("connection refused", None);
        let middle = E("tcp connect error", Some(Box::new(inner)));
        let outer = E("transport error: tcp connect error", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&outer),
            "transport error: tcp connect error: connection refused"
        );
    }
}
