//! Restart strategies: what the JobManager does after a failover (Flink's `restart-strategy`).
//!
//! The exponential-delay strategy follows Flink 2's `ExponentialDelayRestartBackoffTimeStrategy`
//! (FLINK-33736): the n-th restart since the last reset waits
//! `min(initial-backoff x multiplier^(n-1), max-backoff)` plus or minus up to `jitter-factor` of it
//! (never below the initial backoff nor above the maximum); a job that ran
//! `reset-backoff-threshold` since its last restart starts again from the initial backoff; after
//! `attempts-before-reset-backoff` restarts without a reset the job fails. A failure that comes
//! before the scheduled restart happened is part of the same failover and uses no attempt.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{RestartConfig, RestartKind};

/// The decision after a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartDecision {
    RestartAfter(Duration),
    Fail(String),
}

/// Restart bookkeeping of one job.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Restarts since the start (fixed-delay) or since the backoff was last reset (exponential-delay).
    pub attempts: u64,
    /// When the last scheduled restart happens (exponential-delay).
    next_restart: Option<Instant>,
}

impl RestartState {
    /// Decides after a failure at `now`, with a random jitter.
    pub fn on_failure(&mut self, cfg: &RestartConfig, kind: RestartKind, now: Instant) -> RestartDecision {
        self.on_failure_with_jitter(cfg, kind, now, |bound| {
            if bound == 0 {
                0
            } else {
                rand::Rng::gen_range(&mut rand::thread_rng(), -bound..=bound)
            }
        })
    }

    /// Decides after a failure at `now`; `jitter(bound)` picks a value in `-bound..=bound` (ms).
    pub fn on_failure_with_jitter(
        &mut self,
        cfg: &RestartConfig,
        kind: RestartKind,
        now: Instant,
        jitter: impl FnOnce(i64) -> i64,
    ) -> RestartDecision {
        match kind {
            RestartKind::None => RestartDecision::Fail(
                "restart-strategy none (Flink's default when checkpointing is off): the job stays down; resubmit it".into(),
            ),
            RestartKind::FixedDelay => {
                if self.attempts < cfg.fixed_attempts {
                    self.attempts += 1;
                    RestartDecision::RestartAfter(cfg.fixed_delay)
                } else {
                    RestartDecision::Fail(format!(
                        "fixed-delay restart strategy exhausted its {} attempt(s) (restart-strategy.fixed-delay.attempts)",
                        cfg.fixed_attempts
                    ))
                }
            }
            RestartKind::ExponentialDelay => {
                if let Some(next) = self.next_restart {
                    if now <= next {
                        // The same failover: the restart already scheduled stands.
                        return RestartDecision::RestartAfter(next - now);
                    }
                    if now - next >= cfg.reset_threshold {
                        self.attempts = 0;
                    }
                } else {
                    self.attempts = 0;
                }
                if self.attempts >= cfg.attempts_before_reset {
                    return RestartDecision::Fail(format!(
                        "exponential-delay restart strategy exhausted its {} attempt(s) without a reset \
                         (restart-strategy.exponential-delay.attempts-before-reset-backoff)",
                        cfg.attempts_before_reset
                    ));
                }
                let delay = backoff(cfg, self.attempts, jitter);
                self.attempts += 1;
                self.next_restart = Some(now + delay);
                RestartDecision::RestartAfter(delay)
            }
        }
    }
}

/// The backoff before the restart that follows `attempt` earlier ones, jitter included.
fn backoff(cfg: &RestartConfig, attempt: u64, jitter: impl FnOnce(i64) -> i64) -> Duration {
    let initial = cfg.initial_backoff.as_millis() as f64;
    let max = cfg.max_backoff.as_millis() as f64;
    let base = (initial * cfg.multiplier.powf(attempt.min(i32::MAX as u64) as f64)).min(max);
    let bound = (base * cfg.jitter_factor) as i64;
    let with_jitter = (base as i64).saturating_add(jitter(bound)) as f64;
    Duration::from_millis(with_jitter.min(max).max(initial) as u64)
}

pub fn strategy_name(kind: RestartKind) -> &'static str {
    match kind {
        RestartKind::None => "none",
        RestartKind::FixedDelay => "fixed-delay",
        RestartKind::ExponentialDelay => "exponential-delay",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NO_JITTER: fn(i64) -> i64 = |_| 0;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_backoff_has_flink_2_defaults_and_resets_after_a_stable_run() {
        let cfg = Config::builtin().restart;
        assert_eq!((cfg.initial_backoff, cfg.max_backoff, cfg.multiplier), (Duration::from_secs(1), Duration::from_secs(60), 1.5));
        assert_eq!((cfg.jitter_factor, cfg.reset_threshold), (0.1, Duration::from_secs(3600)));
        let mut s = RestartState::default();
        let k = RestartKind::ExponentialDelay;
        let t0 = Instant::now();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let RestartDecision::RestartAfter(d) = s.on_failure_with_jitter(&cfg, k, now, NO_JITTER) else { panic!("restarts") };
            delays.push(d);
            now += d + MS(10);
        }
        assert_eq!(&delays[..4], &[MS(1000), MS(1500), MS(2250), MS(3375)]);
        assert_eq!(delays[11], Duration::from_secs(60), "capped at max-backoff");
        // Running an hour since the last restart resets the backoff.
        now += Duration::from_secs(3600);
        assert_eq!(s.on_failure_with_jitter(&cfg, k, now, NO_JITTER), RestartDecision::RestartAfter(MS(1000)));
    }

    #[test]
    fn exponential_jitter_stays_within_the_factor_and_the_bounds() {
        let cfg = Config::builtin().restart;
        let k = RestartKind::ExponentialDelay;
        let now = Instant::now();
        let mut s = RestartState::default();
        // 10% of the initial 1 s: at most 100 ms, and never below the initial backoff.
        assert_eq!(s.on_failure_with_jitter(&cfg, k, now, |b| b), RestartDecision::RestartAfter(MS(1100)));
        let mut s = RestartState::default();
        assert_eq!(s.on_failure_with_jitter(&cfg, k, now, |b| -b), RestartDecision::RestartAfter(MS(1000)));
        let mut s = RestartState::default();
        let mut bounds = Vec::new();
        let _ = s.on_failure_with_jitter(&cfg, k, now, |b| {
            bounds.push(b);
            0
        });
        assert_eq!(bounds, vec![100]);
        for _ in 0..200 {
            let mut s = RestartState::default();
            let RestartDecision::RestartAfter(d) = s.on_failure(&cfg, k, now) else { panic!() };
            assert!((MS(1000)..=MS(1100)).contains(&d), "{d:?}");
        }
    }

    #[test]
    fn a_failure_before_the_scheduled_restart_uses_no_attempt() {
        let cfg = Config::builtin().restart;
        let k = RestartKind::ExponentialDelay;
        let now = Instant::now();
        let mut s = RestartState::default();
        assert_eq!(s.on_failure_with_jitter(&cfg, k, now, NO_JITTER), RestartDecision::RestartAfter(MS(1000)));
        assert_eq!(s.on_failure_with_jitter(&cfg, k, now + MS(400), NO_JITTER), RestartDecision::RestartAfter(MS(600)));
        assert_eq!(s.attempts, 1);
    }

    #[test]
    fn exponential_delay_fails_after_attempts_before_reset_backoff() {
        let mut cfg = Config::builtin().restart;
        assert_eq!(cfg.attempts_before_reset, i32::MAX as u64, "Flink's default: Integer.MAX_VALUE");
        cfg.attempts_before_reset = 2;
        let k = RestartKind::ExponentialDelay;
        let mut s = RestartState::default();
        let mut now = Instant::now();
        for _ in 0..2 {
            assert!(matches!(s.on_failure_with_jitter(&cfg, k, now, NO_JITTER), RestartDecision::RestartAfter(_)));
            now += Duration::from_secs(10);
        }
        let d = s.on_failure_with_jitter(&cfg, k, now, NO_JITTER);
        assert!(matches!(&d, RestartDecision::Fail(m) if m.contains("attempts-before-reset-backoff")), "{d:?}");
    }

    #[test]
    fn fixed_delay_fails_after_its_attempts() {
        let cfg = Config::builtin().restart;
        let mut s = RestartState::default();
        let k = RestartKind::FixedDelay;
        let now = Instant::now();
        assert_eq!(s.on_failure(&cfg, k, now), RestartDecision::RestartAfter(Duration::from_secs(1)));
        assert!(matches!(s.on_failure(&cfg, k, now), RestartDecision::Fail(m) if m.contains("attempts")));
    }
}
