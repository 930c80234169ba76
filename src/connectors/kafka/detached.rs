//! A librdkafka client closed off-thread: the bottom of the kafka room, taken by every file that
//! holds a client (the readers, the mirror, the reconnects, the transactional output).

/// A client closed on a thread of its own when dropped: a consumer leaves its group when it is
/// dropped, which waits for the group coordinator (the better part of a minute when the broker is
/// unreachable), and nothing should wait for that: not a runtime worker, not the mirror while it
/// replaces its consumer during an outage, not the process's exit after its report.
pub(super) struct Detached<T: Send + 'static>(pub(super) Option<T>);

impl<T: Send + 'static> Detached<T> {
    pub(super) fn new(client: T) -> Self {
        Detached(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("a Detached client is present until dropped")
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // If no thread can be started, the closure (and the client) is dropped here.
            let _ = std::thread::Builder::new().name("ckptlab-kafka-close".into()).spawn(move || drop(client));
        }
    }
}
