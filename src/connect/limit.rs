//! A bound on the calls in flight to one service.
//!
//! A refresh reads every family at once; each reads under a limit of its own, sized
//! from the run's parallelism, so that PostgreSQL reads never wait for AWS slots and a
//! throttled service (whose calls back off and retry while holding their slot) slows
//! down only itself.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// At most `n` calls in flight at once through this limit (and its clones).
#[derive(Clone, Debug)]
pub struct CallLimit {
    permits: Arc<Semaphore>,
}

impl CallLimit {
    /// A limit of `n` calls at once (at least one).
    pub fn new(n: usize) -> Self {
        CallLimit {
            permits: Arc::new(Semaphore::new(n.max(1))),
        }
    }

    /// Runs `call` once a slot is free, holding the slot until it ends.
    pub async fn run<F: Future>(&self, call: F) -> F::Output {
        // The semaphore is never closed, so acquiring only waits.
        let _slot = self.permits.acquire().await.ok();
        call.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn no_more_than_the_limit_run_at_once() {
        let limit = CallLimit::new(3);
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let calls = (0..12).map(|_| {
            limit.run(async {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            })
        });
        futures::future::join_all(calls).await;
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
