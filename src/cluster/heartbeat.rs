//! How the JobManager finds out that a task manager is gone: Flink 2.3's two detections.
//!
//! The JobMaster is the heartbeat *sender* towards its task managers (JobMaster.java:464-465): one
//! schedule for all of them, the first request when it starts, then one every `heartbeat.interval`
//! (HeartbeatManagerSenderImpl.java:77, :82-90). Each answer resets that task manager's heartbeat
//! timeout (HeartbeatManagerImpl.java:280-286). A task manager stops answering in one of two ways:
//!
//! - **Killed**: its process is gone, so an RPC to it fails at once with a
//!   `RecipientUnreachableException` (Pekko's dead letters answer for it, DeadLettersActor.java
//!   :46-65, FLINK-23202). Each heartbeat request fails; only that exception counts
//!   (HeartbeatManagerImpl.java:261-264), and at `heartbeat.rpc-failure-threshold` consecutive
//!   failures the monitor marks the target unreachable (DefaultHeartbeatMonitor.java:114-129): the
//!   JobMaster disconnects it (JobMaster.java:1674-1681). That is between threshold - 1 and
//!   threshold intervals after the kill: 10-20 s with Flink's defaults, never the heartbeat timeout.
//! - **Hung**: the process stops answering but its connections stay open (a stopped JVM, a long
//!   GC pause, a machine cut off without a reset). A request then fails by nothing but the ask
//!   timeout, which does not count; the heartbeat timeout fires `heartbeat.timeout` after the last
//!   answer (JobMaster.java:1658-1665): 40-50 s with Flink's defaults.
//!
//! Everything here is arithmetic on the schedule, so the JobManager wakes only for the request
//! that decides, and a test can state the bound from the options.
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use ckptlab::cluster::heartbeat::{Detection, HeartbeatOptions, Schedule, Silence};
//! let s = Duration::from_secs;
//! let opts = HeartbeatOptions { interval: s(10), timeout: s(50), rpc_failure_threshold: Some(2) };
//! let t0 = Instant::now();
//! let schedule = Schedule { start: t0, interval: opts.interval };
//! let last = schedule.last_at_or_before(t0 + s(3));
//! // Killed 3 s after a request: the requests at 10 s and 20 s fail; lost at 20 s.
//! let (by, at) = opts.loss(&schedule, last, Silence::Killed { at: t0 + s(3) });
//! assert_eq!((by, at - t0), (Detection::RpcFailures { threshold: 2 }, s(20)));
//! // Hung at the same moment: only the heartbeat timeout tells, 50 s after the answer at 0 s.
//! let (by, at) = opts.loss(&schedule, last, Silence::Hung { since: t0 + s(3) });
//! assert_eq!((by, at - t0), (Detection::HeartbeatTimeout, s(50)));
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// Flink's `HeartbeatManagerOptions.FAILED_RPC_DETECTION_DISABLED`, an option value, kept with
/// the configuration that reads `heartbeat.rpc-failure-threshold`.
pub use crate::config::RPC_FAILURE_DETECTION_DISABLED;
/// Which detection declared a task manager lost: vocabulary the events carry, so it sits in
/// [`crate::types`]; how it reads with the options ([`Detection::describe`]) is here.
pub use crate::types::Detection;

/// The heartbeat options (`heartbeat.interval`, `heartbeat.timeout`,
/// `heartbeat.rpc-failure-threshold`; Flink 2.3's defaults 10 s, 50 s and 2,
/// HeartbeatManagerOptions.java:36-61).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatOptions {
    pub interval: Duration,
    pub timeout: Duration,
    /// `None`: detection by failed RPCs is off (`-1`).
    pub rpc_failure_threshold: Option<u32>,
}

/// How a task manager stopped answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Its process is gone: RPCs to it fail at once.
    Killed { at: Instant },
    /// Its process runs but answers nothing; its connections stay open.
    Hung { since: Instant },
}

impl Silence {
    /// When it stopped answering (a hung TM killed later: when it was killed, for the RPCs).
    pub fn at(self) -> Instant {
        match self {
            Silence::Killed { at } => at,
            Silence::Hung { since } => since,
        }
    }
}

impl Detection {
    /// In words, with the options, for the failure cause.
    pub fn describe(self, opts: &HeartbeatOptions) -> String {
        match self {
            Detection::RpcFailures { threshold } => format!(
                "{threshold} heartbeat RPCs failed, heartbeat.rpc-failure-threshold = {threshold}, one every heartbeat.interval = {}",
                crate::duration::format_duration(opts.interval)
            ),
            Detection::HeartbeatTimeout => {
                format!("no heartbeat for heartbeat.timeout = {}", crate::duration::format_duration(opts.timeout))
            }
        }
    }
}

/// The JobManager's heartbeat requests: at `start`, then every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub start: Instant,
    pub interval: Duration,
}

impl Schedule {
    /// The last request at or before `t` (`start` when `t` is earlier): a request at the very
    /// instant of a kill was answered, the kill came after it.
    pub fn last_at_or_before(&self, t: Instant) -> Instant {
        let n = self.index_at_or_before(t);
        self.start + self.interval * n
    }

    /// The `n`-th request strictly after `t` (`n` >= 1).
    pub fn nth_after(&self, t: Instant, n: u32) -> Instant {
        let first = if t < self.start { 0 } else { self.index_at_or_before(t) + 1 };
        self.start + self.interval * (first + n.saturating_sub(1))
    }

    /// The requests in `(after, upto]`.
    pub fn count_between(&self, after: Instant, upto: Instant) -> u32 {
        if upto <= after || upto < self.start {
            return 0;
        }
        let last = self.index_at_or_before(upto);
        if after < self.start {
            last + 1
        } else {
            last - self.index_at_or_before(after)
        }
    }

    fn index_at_or_before(&self, t: Instant) -> u32 {
        let elapsed = t.saturating_duration_since(self.start).as_nanos();
        let step = self.interval.as_nanos().max(1);
        (elapsed / step).min(u32::MAX as u128) as u32
    }
}

impl HeartbeatOptions {
    /// When a task manager whose last answer came at `last_answer` and that then fell `silence`
    /// is declared lost, and by which detection. The failed requests are those after the kill;
    /// the heartbeat timeout runs from the last answer in both cases (for a killed TM too: with
    /// failed-RPC detection off, or a threshold that takes longer, it is what fires).
    pub fn loss(&self, schedule: &Schedule, last_answer: Instant, silence: Silence) -> (Detection, Instant) {
        let timeout_at = last_answer + self.timeout;
        match (silence, self.rpc_failure_threshold) {
            (Silence::Killed { at }, Some(threshold)) => {
                let rpc_at = schedule.nth_after(at, threshold);
                if rpc_at <= timeout_at {
                    (Detection::RpcFailures { threshold }, rpc_at)
                } else {
                    (Detection::HeartbeatTimeout, timeout_at)
                }
            }
            (Silence::Killed { .. }, None) | (Silence::Hung { .. }, _) => (Detection::HeartbeatTimeout, timeout_at),
        }
    }

    /// How many heartbeat RPCs to a TM killed at `killed_at` have failed by `now`.
    pub fn failed_rpcs(&self, schedule: &Schedule, killed_at: Instant, now: Instant) -> u32 {
        schedule.count_between(killed_at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn flink() -> HeartbeatOptions {
        HeartbeatOptions { interval: S(10), timeout: S(50), rpc_failure_threshold: Some(2) }
    }

    /// Catches: a kill found at the heartbeat timeout (the old model), or at once.
    #[test]
    fn a_kill_is_found_at_the_thresholdth_failed_request_wherever_it_falls_between_requests() {
        let opts = flink();
        let t0 = Instant::now();
        let schedule = Schedule { start: t0, interval: opts.interval };
        for offset_ms in [0, 1, 3_000, 9_999, 10_000, 27_500] {
            let kill = t0 + MS(offset_ms);
            let last = schedule.last_at_or_before(kill);
            let (by, at) = opts.loss(&schedule, last, Silence::Killed { at: kill });
            assert_eq!(by, Detection::RpcFailures { threshold: 2 }, "kill at {offset_ms} ms");
            let after = at - kill;
            assert!(after > S(10) && after <= S(20), "kill at {offset_ms} ms: lost {after:?} later, in (interval, 2 x interval]");
            assert!(after < opts.timeout);
            assert_eq!(opts.failed_rpcs(&schedule, kill, at), 2);
            assert_eq!(opts.failed_rpcs(&schedule, kill, at - MS(1)), 1);
        }
    }

    /// Catches: a hang detected by failed RPCs (a hung TM's requests time out, which does not count).
    #[test]
    fn a_hang_is_found_only_at_the_heartbeat_timeout_after_the_last_answer() {
        let opts = flink();
        let t0 = Instant::now();
        let schedule = Schedule { start: t0, interval: opts.interval };
        for offset_ms in [0, 4_000, 19_999] {
            let hang = t0 + MS(offset_ms);
            let last = schedule.last_at_or_before(hang);
            let (by, at) = opts.loss(&schedule, last, Silence::Hung { since: hang });
            assert_eq!(by, Detection::HeartbeatTimeout);
            assert_eq!(at, last + opts.timeout);
            let after = at - hang;
            assert!(after > opts.timeout - opts.interval && after <= opts.timeout, "hang at {offset_ms} ms: {after:?}");
        }
    }

    #[test]
    fn with_failed_rpc_detection_off_or_a_long_threshold_a_kill_waits_for_the_heartbeat_timeout() {
        let t0 = Instant::now();
        let off = HeartbeatOptions { rpc_failure_threshold: None, ..flink() };
        let schedule = Schedule { start: t0, interval: off.interval };
        assert_eq!(off.loss(&schedule, t0, Silence::Killed { at: t0 + S(1) }), (Detection::HeartbeatTimeout, t0 + S(50)));
        let long = HeartbeatOptions { rpc_failure_threshold: Some(6), ..flink() };
        assert_eq!(long.loss(&schedule, t0, Silence::Killed { at: t0 + S(1) }), (Detection::HeartbeatTimeout, t0 + S(50)));
        let five = HeartbeatOptions { rpc_failure_threshold: Some(5), ..flink() };
        assert_eq!(five.loss(&schedule, t0, Silence::Killed { at: t0 + S(1) }), (Detection::RpcFailures { threshold: 5 }, t0 + S(50)));
    }

    /// A hung TM killed later: its requests fail from the kill on, its timeout still runs from
    /// its last answer before the hang.
    #[test]
    fn a_hung_tm_killed_later_fails_rpcs_from_the_kill_and_keeps_its_last_answer() {
        let opts = flink();
        let t0 = Instant::now();
        let schedule = Schedule { start: t0, interval: opts.interval };
        let last = schedule.last_at_or_before(t0 + S(5));
        assert_eq!(opts.loss(&schedule, last, Silence::Killed { at: t0 + S(35) }), (Detection::RpcFailures { threshold: 2 }, t0 + S(50)));
        assert_eq!(opts.loss(&schedule, last, Silence::Killed { at: t0 + S(42) }), (Detection::HeartbeatTimeout, t0 + S(50)));
    }

    #[test]
    fn the_schedule_counts_requests_in_half_open_ranges() {
        let t0 = Instant::now();
        let s = Schedule { start: t0 + S(1), interval: S(2) };
        assert_eq!(s.last_at_or_before(t0), t0 + S(1));
        assert_eq!(s.last_at_or_before(t0 + S(4)), t0 + S(3));
        assert_eq!(s.nth_after(t0, 1), t0 + S(1));
        assert_eq!(s.nth_after(t0 + S(3), 1), t0 + S(5));
        assert_eq!(s.nth_after(t0 + S(3), 2), t0 + S(7));
        assert_eq!(s.count_between(t0, t0 + S(5)), 3);
        assert_eq!(s.count_between(t0 + S(3), t0 + S(5)), 1);
        assert_eq!(s.count_between(t0 + S(3), t0 + S(3)), 0);
    }
}
