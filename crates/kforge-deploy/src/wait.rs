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
    /// The longest time between probes.
    pub interval: Duration,
    /// The shortest time between probes. When it is below `interval` the wait is
    /// *adaptive*: the pause is 1/[`ADAPTIVE_DIVISOR`] of the time waited so far, clamped
    /// to `first_interval..=interval` — quick to notice a signal that comes soon, and a
    /// wait of `T` overshoots by at most `T / 20` (plus one probe), yet long waits on real
    /// clusters poll no more often than every `interval`.
    pub first_interval: Duration,
}

/// See [`WaitLimits::first_interval`].
pub const ADAPTIVE_DIVISOR: u32 = 20;

impl WaitLimits {
    /// Probes every `interval`.
    pub const fn new(timeout: Duration, interval: Duration) -> Self {
        WaitLimits {
            timeout,
            interval,
            first_interval: interval,
        }
    }

    /// Probes every `first` at first, then every 1/20 of the time waited so far, at
    /// most every `max`.
    pub fn adaptive(timeout: Duration, first: Duration, max: Duration) -> Self {
        WaitLimits {
            timeout,
            interval: max,
            first_interval: first.min(max),
        }
    }

    /// The pause before the next probe, `waited` into the wait.
    pub fn pause(&self, waited: Duration) -> Duration {
        (waited / ADAPTIVE_DIVISOR).clamp(self.first_interval.min(self.interval), self.interval)
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
            .pause(now - start)
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
    fn adaptive_pauses_grow_with_the_wait() {
        let l = WaitLimits::adaptive(
            Duration::from_secs(600),
            Duration::from_millis(200),
            Duration::from_secs(2),
        );
        assert_eq!(l.pause(Duration::ZERO), Duration::from_millis(200));
        assert_eq!(l.pause(Duration::from_secs(3)), Duration::from_millis(200));
        assert_eq!(l.pause(Duration::from_secs(10)), Duration::from_millis(500));
        assert_eq!(l.pause(Duration::from_secs(300)), Duration::from_secs(2));
        let fixed = WaitLimits::new(Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(fixed.pause(Duration::ZERO), Duration::from_secs(5));
        assert_eq!(fixed.pause(Duration::from_secs(59)), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_adaptive_wait_overshoots_by_a_twentieth() {
        // The condition holds from t = 30 s; an adaptive wait notices within 1.5 s.
        let start = Instant::now();
        let r: Result<Duration, WaitError<()>> = poll_until(
            "x",
            WaitLimits::adaptive(
                Duration::from_secs(600),
                Duration::from_millis(200),
                Duration::from_secs(2),
            ),
            Duration::from_secs(2),
            |_| {},
            || async move {
                let t = start.elapsed();
                if t >= Duration::from_secs(30) {
                    Check::Done(t)
                } else {
                    Check::Pending("no".into())
                }
            },
        )
        .await;
        let Ok(t) = r else { panic!("expected done") };
        assert!(t <= Duration::from_millis(31_500), "{t:?}");
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
