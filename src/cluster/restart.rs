//! Restart strategies: what the JobManager does after a failover (Flink's `restart-strategy`).

use std::time::Duration;

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
    /// fixed-delay attempts used.
    pub attempts: u64,
    /// The next exponential backoff (zero: not started).
    pub backoff: Duration,
}

impl RestartState {
    /// Decides, given how long the job ran since its last (re)start.
    pub fn on_failure(&mut self, cfg: &RestartConfig, kind: RestartKind, ran_for: Duration) -> RestartDecision {
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
                if self.backoff.is_zero() || ran_for >= cfg.reset_threshold {
                    self.backoff = cfg.initial_backoff;
                }
                let delay = self.backoff.min(cfg.max_backoff);
                self.backoff = Duration::from_secs_f64((self.backoff.as_secs_f64() * cfg.multiplier).min(cfg.max_backoff.as_secs_f64()));
                RestartDecision::RestartAfter(delay)
            }
        }
    }
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

    #[test]
    fn exponential_backoff_doubles_then_resets_after_a_stable_run() {
        let cfg = Config::builtin().restart;
        let mut s = RestartState::default();
        let k = RestartKind::ExponentialDelay;
        assert_eq!(s.on_failure(&cfg, k, Duration::ZERO), RestartDecision::RestartAfter(Duration::from_secs(1)));
        assert_eq!(s.on_failure(&cfg, k, Duration::ZERO), RestartDecision::RestartAfter(Duration::from_secs(2)));
        assert_eq!(s.on_failure(&cfg, k, Duration::ZERO), RestartDecision::RestartAfter(Duration::from_secs(4)));
        assert_eq!(s.on_failure(&cfg, k, Duration::from_secs(7200)), RestartDecision::RestartAfter(Duration::from_secs(1)));
    }

    #[test]
    fn fixed_delay_fails_after_its_attempts() {
        let cfg = Config::builtin().restart;
        let mut s = RestartState::default();
        let k = RestartKind::FixedDelay;
        assert_eq!(s.on_failure(&cfg, k, Duration::ZERO), RestartDecision::RestartAfter(Duration::from_secs(1)));
        assert!(matches!(s.on_failure(&cfg, k, Duration::ZERO), RestartDecision::Fail(m) if m.contains("attempts")));
    }
}
