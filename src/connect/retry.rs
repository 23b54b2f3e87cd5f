//! Retry policy for calls to services: exponential backoff with full jitter and a
//! per-attempt timeout. Kept apart from the error types: an error says whether it is
//! retryable, the policy says how often and how long.

use std::future::Future;
use std::time::Duration;

use super::ServiceError;

/// How often and how long a call to a service is tried; see [`RetryPolicy::DEFAULT`].
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Limit of one attempt.
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    /// For calls that should answer quickly (database statements, most cloud calls).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(30),
    };

    /// The delay before attempt `n` (1-based, n >= 2): full jitter over an exponential
    /// ceiling, so that many callers that failed together do not retry together.
    pub fn delay_before(&self, n: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (n.saturating_sub(2)).min(16));
        let ceiling = exp.min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Runs `call` until it succeeds, fails with a non-retryable error, or the attempts
    /// are used up. `service` names the endpoint in a timeout error.
    pub async fn run<T, F, Fut>(
        &self,
        service: &'static str,
        mut call: F,
    ) -> Result<T, ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(self.attempt_timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(ServiceError::Timeout {
                    service,
                    timeout: self.attempt_timeout,
                }),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    attempt += 1;
                    let delay = self.delay_before(attempt);
                    tracing::debug!(service, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        attempt_timeout: Duration::from_millis(200),
    };

    fn transient() -> ServiceError {
        ServiceError::Api {
            service: "test",
            code: "Throttling".into(),
            message: "slow down".into(),
            retryable: true,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = FAST
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_and_exhausted_attempts_stop() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = FAST
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ServiceError::Config("bad".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = FAST
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            })
            .await;
        assert_eq!(r.unwrap_err().code(), "Throttling");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_hanging_call_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let r = FAST
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(1)
            })
            .await;
        assert_eq!(r.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn delays_grow_but_stay_under_the_ceiling() {
        for n in 2..30 {
            assert!(RetryPolicy::DEFAULT.delay_before(n) <= RetryPolicy::DEFAULT.max_delay);
        }
    }
}
