//! A steady stream of records into the topic, running in the background (scenario `generate`
//! steps and the TUI's `g` key), so alignment and overtaking can be seen without typing fast.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Topic, TopicError};
use crate::events::{Event, EventBus};

/// The highest rate a generator takes, in records per second.
pub const MAX_GENERATOR_RATE: u64 = 10_000_000;
/// The most records one tick produces: a generator that falls behind catches up over several
/// ticks instead of allocating its whole backlog at once.
const MAX_BATCH: u64 = 100_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSpec {
    /// Records per second.
    pub rate: u64,
    /// How long; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// Values cycled through in order.
    pub keys: Vec<String>,
    /// Pin to one partition; `None` spreads round-robin.
    pub partition: Option<u32>,
}

/// Runs a generator to its end. `active` counts running generators (for the caught-up check).
pub async fn run(topic: Arc<dyn Topic>, spec: GeneratorSpec, active: Arc<AtomicUsize>, events: EventBus) {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _guard = Guard(active);
    events.publish(Event::GeneratorStarted { rate: spec.rate, duration_ms: spec.duration.map_or(0, |d| d.as_millis() as u64) });
    let keys: Vec<String> = if spec.keys.is_empty() { vec!["x".into()] } else { spec.keys.clone() };
    let start = Instant::now();
    // A tick of 10 ms (or one record's spacing when slower) keeps the stream steady without
    // waking thousands of times a second at high rates.
    let rate = spec.rate.clamp(1, MAX_GENERATOR_RATE);
    let spacing = Duration::from_secs_f64(1.0 / rate as f64);
    let tick = spacing.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut produced: u64 = 0;
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed();
        let horizon = match spec.duration {
            Some(d) if elapsed >= d => d,
            _ => elapsed,
        };
        let owed = ((horizon.as_secs_f64() * rate as f64).floor() as u64).max(1);
        let due = owed.min(produced + MAX_BATCH);
        if produced < due {
            let batch: Vec<String> = (produced..due).map(|i| keys[(i % keys.len() as u64) as usize].clone()).collect();
            let result = if topic.produce_may_block() {
                // A broker round trip (or a broker that is down) must not hold a runtime worker.
                let (t, partition) = (topic.clone(), spec.partition);
                tokio::task::spawn_blocking(move || t.produce_many(&batch.iter().map(String::as_str).collect::<Vec<_>>(), partition))
                    .await
                    .unwrap_or(Ok(0))
            } else {
                topic.produce_many(&batch.iter().map(String::as_str).collect::<Vec<_>>(), spec.partition)
            };
            match result {
                Ok(n) => produced += n as u64,
                // Not acknowledged yet: queued in the client and sent when the broker is back.
                Err(TopicError::NotAcknowledged(_)) => produced = due,
                Err(e) => {
                    events.publish(Event::GeneratorStopped { produced, reason: e.to_string() });
                    return;
                }
            }
        }
        if spec.duration.is_some_and(|d| elapsed >= d) && produced >= owed {
            break;
        }
    }
    events.publish(Event::GeneratorFinished { produced });
}
