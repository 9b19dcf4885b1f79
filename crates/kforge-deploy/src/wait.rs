//! Bounded waiting: every wait in kforge-deploy polls a real signal at a bounded interval
//! until a deadline, bounds each probe by its own timeout, and on giving up says what it
//! waited for, for how long, and what it saw last. No fixed sleeps, no unbounded loops.

use std::time::Duration;

use tokio::time::Instant;

/// What one probe of a wait found.
pub(crate) enum Check<T, E> {
    /// The condition holds.
    Done(T),
    /// Not yet; the text says what was seen (it ends up in the timeout message).
    Pending(String),
    /// A failure that waiting cannot fix (e.g. credentials rejected).
    Failed(E),
}

/// A wait that gave up. The message is complete on its own:
/// "timed out after 5m waiting for etcd on cp-2 (10.0.1.12) to report 3 healthy members;
/// last seen: 2 members".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {} waiting for {what}; last seen: {last_seen}", human(*.waited))]
pub struct TimedOut {
    /// What was waited for, naming the node and the step.
    pub what: String,
    pub waited: Duration,
    pub last_seen: String,
}

/// Durations as people write them: `5m`, `1m 30s`, `250ms`.
pub fn human(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    humantime::format_duration(rounded).to_string()
}

/// Limits of one wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitLimits {
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between probes.
    pub interval: Duration,
}

impl WaitLimits {
    pub const fn new(timeout: Duration, interval: Duration) -> Self {
        WaitLimits { timeout, interval }
    }
}

pub(crate) enum WaitError<E> {
    TimedOut(TimedOut),
    Failed(E),
}

/// Polls `probe` until it reports `Done`, fails, or `limits.timeout` passes. Each probe is
/// cut off at `probe_timeout` (and at the overall deadline). `on_pending` sees every
/// pending observation (for progress events).
pub(crate) async fn poll_until<T, E>(
    what: impl Into<String>,
    limits: WaitLimits,
    probe_timeout: Duration,
    mut on_pending: impl FnMut(&str),
    mut probe: impl AsyncFnMut() -> Check<T, E>,
) -> Result<T, WaitError<E>> {
    let start = Instant::now();
    let deadline = start + limits.timeout;
    let mut last_seen: Option<String> = None;
    loop {
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(probe_timeout);
        // At the deadline a probe could not finish anyway; keep what was seen last.
        if !budget.is_zero() || last_seen.is_none() {
            match tokio::time::timeout(budget.max(Duration::from_millis(1)), probe()).await {
                Ok(Check::Done(v)) => return Ok(v),
                Ok(Check::Failed(e)) => return Err(WaitError::Failed(e)),
                Ok(Check::Pending(seen)) => {
                    on_pending(&seen);
                    last_seen = Some(seen);
                }
                Err(_) => {
                    // Cut short by the overall deadline: the earlier observation says more.
                    if budget == probe_timeout || last_seen.is_none() {
                        let seen = format!("no answer within {}", human(budget));
                        on_pending(&seen);
                        last_seen = Some(seen);
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut(TimedOut {
                what: what.into(),
                waited: now - start,
                last_seen: last_seen.unwrap_or_else(|| "nothing".into()),
            }));
        }
        let pause = limits
            .interval
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        tokio::time::sleep(pause).await;
    }
}

/// Exponential backoff between `initial` and `max`, for bounded retry loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The pause after `attempt` failed attempts (attempt counts from 1).
    pub fn pause(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_with_the_last_observation() {
        let mut n = 0;
        let r: Result<(), WaitError<()>> = poll_until(
            "etcd on cp-2 (10.0.1.12) to report 3 healthy members",
            WaitLimits::new(Duration::from_secs(300), Duration::from_secs(5)),
            Duration::from_secs(10),
            |_| {},
            || {
                n += 1;
                let seen = format!("{} members", n.min(2));
                async move { Check::Pending(seen) }
            },
        )
        .await;
        let Err(WaitError::TimedOut(t)) = r else {
            panic!("expected a timeout")
        };
        assert_eq!(
            t.to_string(),
            "timed out after 5m waiting for etcd on cp-2 (10.0.1.12) to report 3 healthy \
             members; last seen: 2 members"
        );
        // One probe at t=0 and one every 5 s until the deadline: bounded.
        assert_eq!(n, 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_is_cut_off() {
        let r: Result<(), WaitError<()>> = poll_until(
            "apid on cp-1",
            WaitLimits::new(Duration::from_secs(30), Duration::from_secs(1)),
            Duration::from_secs(2),
            |_| {},
            || async {
                std::future::pending::<()>().await;
                Check::Done(())
            },
        )
        .await;
        let Err(WaitError::TimedOut(t)) = r else {
            panic!("expected a timeout")
        };
        assert_eq!(t.last_seen, "no answer within 2s");
    }

    #[tokio::test(start_paused = true)]
    async fn done_and_failed_end_the_wait() {
        let r: Result<u32, WaitError<&str>> = poll_until(
            "x",
            WaitLimits::new(Duration::from_secs(30), Duration::from_secs(1)),
            Duration::from_secs(2),
            |_| {},
            || async { Check::Done(7) },
        )
        .await;
        assert!(matches!(r, Ok(7)));
        let r: Result<u32, WaitError<&str>> = poll_until(
            "x",
            WaitLimits::new(Duration::from_secs(30), Duration::from_secs(1)),
            Duration::from_secs(2),
            |_| {},
            || async { Check::Failed("no") },
        )
        .await;
        assert!(matches!(r, Err(WaitError::Failed("no"))));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.pause(1), Duration::from_millis(100));
        assert_eq!(b.pause(3), Duration::from_millis(400));
        assert_eq!(b.pause(40), Duration::from_secs(5));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(90_400)), "1m 30s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
