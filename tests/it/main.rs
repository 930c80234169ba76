//! The integration tests, one binary (issue 26): each file below is one surface, as the 24
//! binaries were, so that RocksDB and librdkafka are linked once instead of once per file. Run one
//! surface with `cargo test --release --test it semantics::` (a test's path is `FILE::NAME`).

mod common;

mod anatomy;
mod async_snapshot;
mod audit_reference;
mod checkpointing;
mod cli;
mod compare;
mod e2e_tmux;
mod failure_detection;
mod flink;
mod fuzz;
mod kafka;
mod keygroups;
mod lesson;
mod recovery;
mod report;
mod restore_checks;
mod retain;
mod retention;
mod rocksdb;
mod safety;
mod scenarios;
mod semantics;
mod slow_storage;
mod start_delay;
mod tui;
mod tui_compare;
mod before_commit;
