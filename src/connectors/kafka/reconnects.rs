//! Lost connections: every consumer is paused and replaced when one of them lost an established
//! connection to a broker, so that none fetches from a restarted broker before the mirror has
//! checked what it still holds (and librdkafka 2.12's crash on such a fetch is never reached).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::client::Detached;
use super::health::HealthContext;

/// The defence against a librdkafka 2.12 crash (upstream #4964 / #4778, not fixed in 2.12.1): a
/// consumer whose broker restarted without the topic gets a fetch reply naming a new leader for a
/// topic without id, and librdkafka's main thread looks that topic up by a null name (SIGSEGV in
/// `rd_kafka_metadata_cache_find` via `rd_kafka_metadata_update_op`). Only a consumer that had
/// the topic's metadata before the restart fetches then; a new consumer asks for metadata first.
/// So consumers wait [`CONSUMER_RECONNECT_BACKOFF`] before reconnecting, and when one of them
/// lost an established connection, every consumer is paused at once and replaced by a new one.
pub(super) struct Reconnects {
    /// Moves on whenever a consumer lost an established connection to a broker.
    pub(super) epoch: AtomicU64,
    /// The source readers' consumers, paused by the mirror when the epoch moves (a reader is
    /// replaced only when its source reads again, which a paused job does not do).
    pub(super) readers: Mutex<Vec<Weak<BaseConsumer<HealthContext>>>>,
}

impl Reconnects {
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Pauses every live reader's consumer: none fetches again before it is replaced.
    pub(super) fn pause_readers(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| r.strong_count() > 0);
        // Detached: should a reader be dropped meanwhile, its consumer is not closed here.
        for c in readers.iter().filter_map(Weak::upgrade).map(Detached::new) {
            if let Ok(assigned) = c.assignment() {
                let _ = c.pause(&assigned);
            }
        }
    }

    pub(super) fn register(&self, reader: &Arc<BaseConsumer<HealthContext>>) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(reader));
    }
}

/// How long a consumer waits before reconnecting to a broker that closed its connection: the
/// time the mirror has (it polls every [`MIRROR_POLL`]) to pause and replace the consumers.
pub(super) const CONSUMER_RECONNECT_BACKOFF: Duration = Duration::from_secs(2);
