//! Bounded retries with exponential backoff, used only for failures Talos documents as
//! transient: apid not accepting connections while a node boots, `Unavailable` for
//! read-only calls, and Bootstrap's "not available yet" / "time is not in sync yet".

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Error;

/// Limits of one retry loop. A loop stops at whichever comes first: `max_attempts`
/// attempts, or the next backoff would end after `max_elapsed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 disables retries.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time budget for the whole loop (attempts and backoff sleeps).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 250 ms doubling to 4 s, within 60 s: enough to ride out an apid restart.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A single attempt.
    pub const fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            max_elapsed: Duration::ZERO,
        }
    }

    /// Bootstrap, as talosctl does it: short backoff, about 2 minutes in total.
    pub const fn bootstrap() -> Self {
        RetryPolicy {
            max_attempts: 120,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(120),
        }
    }

    /// Sleep before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Failure of one attempt. `waiting_for` is set when the failure is transient and says
/// what the loop is waiting for (it ends up in [`Error::RetriesExhausted`]).
pub(crate) struct AttemptFailure {
    pub error: Error,
    pub waiting_for: Option<&'static str>,
}

impl AttemptFailure {
    pub fn fatal(error: Error) -> Self {
        AttemptFailure {
            error,
            waiting_for: None,
        }
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or the policy is exhausted.
pub(crate) async fn run<T, F, Fut>(
    policy: RetryPolicy,
    operation: &'static str,
    endpoint: impl Fn() -> String,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttemptFailure>>,
{
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let failure = match attempt().await {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        let Some(waiting_for) = failure.waiting_for else {
            return Err(failure.error);
        };
        let backoff = policy.backoff(n);
        let out_of_attempts = n >= policy.max_attempts.max(1);
        let out_of_time = start.elapsed() + backoff > policy.max_elapsed;
        if out_of_attempts || out_of_time {
            if n == 1 {
                // Retries are disabled (or the budget is zero): the plain error says it all.
                return Err(failure.error);
            }
            return Err(Error::RetriesExhausted {
                operation,
                endpoint: endpoint(),
                attempts: n,
                elapsed: start.elapsed(),
                waiting_for,
                last: Box::new(failure.error),
            });
        }
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            max_elapsed: Duration::from_secs(10),
        };
        let got: Vec<u128> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 700, 700, 700]);
        assert_eq!(p.backoff(200), Duration::from_millis(700));
    }

    fn transient() -> AttemptFailure {
        AttemptFailure {
            error: Error::NoEndpoints,
            waiting_for: Some("the test condition"),
        }
    }

    #[tokio::test]
    async fn stops_after_max_attempts_and_says_what_it_waited_for() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(5),
        };
        let mut calls = 0;
        let err = run(
            policy,
            "Version",
            || "10.0.0.1:50000".into(),
            || {
                calls += 1;
                async { Err::<(), _>(transient()) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        let text = err.to_string();
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert!(text.contains("waiting for the test condition"), "{text}");
        assert!(text.contains("Version via 10.0.0.1:50000"), "{text}");
    }

    #[tokio::test]
    async fn stops_when_time_budget_is_spent() {
        let policy = RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_millis(100),
        };
        let mut calls = 0;
        let err = run(policy, "Bootstrap", String::new, || {
            calls += 1;
            async { Err::<(), _>(transient()) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::RetriesExhausted { .. }));
        assert!((2..=6).contains(&calls), "{calls}");
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let mut calls = 0;
        let err = run(RetryPolicy::default(), "Version", String::new, || {
            calls += 1;
            async { Err::<(), _>(AttemptFailure::fatal(Error::NoEndpoints)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(err, Error::NoEndpoints));
    }

    #[tokio::test]
    async fn success_after_transient_failures() {
        let mut calls = 0;
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let v = run(policy, "Version", String::new, || {
            calls += 1;
            let c = calls;
            async move { if c < 3 { Err(transient()) } else { Ok(c) } }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }
}
