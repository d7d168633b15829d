//! Rate limits per browser session: searches are expensive and audited,
//! so one viewer cannot run them in a loop.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A token bucket per key: `burst` requests at once, refilled at `per`
/// each.
pub(crate) struct Bucket {
    burst: f64,
    per: Duration,
    keys: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 10_000;

impl Bucket {
    pub(crate) fn new(burst: u32, per: Duration) -> Bucket {
        Bucket {
            burst: f64::from(burst),
            per,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; false when it has none left.
    pub(crate) fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS {
            let (burst, per) = (self.burst, self.per.as_secs_f64());
            keys.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() / per < burst
            });
        }
        let (tokens, at) = keys.entry(key.to_owned()).or_insert((self.burst, now));
        let refill = now.duration_since(*at).as_secs_f64() / self.per.as_secs_f64();
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The app's limits.
pub(crate) struct Limits {
    /// Searches (across recordings and in one): 20 at once, one more
    /// every 3 s.
    pub(crate) search: Bucket,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            search: Bucket::new(20, Duration::from_secs(3)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_key() {
        let b = Bucket::new(3, Duration::from_secs(3600));
        assert!((0..3).all(|_| b.allow("a")));
        assert!(!b.allow("a"));
        assert!(b.allow("b"), "another key has its own bucket");
    }
}
