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

/// Runs `futures` to their ends, at most `n` alive at once (made only as earlier ones
/// finish), answering in their order. Unlike `join_all`, which makes and keeps every
/// future of a batch at once, what a batch of a thousand tenants holds in memory stays
/// that of `n` calls.
pub async fn in_order<I>(futures: I, n: usize) -> Vec<<I::Item as Future>::Output>
where
    I: IntoIterator,
    I::Item: Future,
{
    use futures::StreamExt;
    futures::stream::iter(futures)
        .buffered(n.max(1))
        .collect()
        .await
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

    #[tokio::test]
    async fn in_order_makes_no_more_than_n_futures_at_once_and_keeps_the_order() {
        let (made, done, peak) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let futures = (0..20u64).map(|i| {
            // Counted when the future is made, not when it is first polled.
            let alive = made.fetch_add(1, Ordering::SeqCst) + 1 - done.load(Ordering::SeqCst);
            peak.fetch_max(alive, Ordering::SeqCst);
            let done = &done;
            async move {
                // Later ones finish first: the answers must still come in order.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                done.fetch_add(1, Ordering::SeqCst);
                i
            }
        });
        let answers = in_order(futures, 4).await;
        assert_eq!(answers, (0..20).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 5, "peak {peak:?}");
    }
}
