//! Everything a key can do. The serde names are the action names of `conf/keys.toml`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Focus the input pane to type a record.
    FocusInput,
    /// Kill the selected task manager.
    Kill,
    /// Select task manager N (1-based; the digit keys).
    #[serde(skip)]
    SelectTm(u8),
    /// Start the selected task manager if it is killed, else a new one.
    Start,
    /// Trigger a checkpoint now.
    Checkpoint,
    /// Take a savepoint into `execution.checkpointing.savepoint-dir`.
    Savepoint,
    /// Stop the job with a savepoint (it ends FINISHED). No default key: bind one in
    /// `conf/keys.toml` (`[command] stop-with-savepoint = "X"`).
    StopWithSavepoint,
    /// Cycle EXACTLY_ONCE aligned -> EXACTLY_ONCE unaligned -> AT_LEAST_ONCE -> off.
    CycleMode,
    /// Cycle the state backend memory -> fs -> rocksdb (restarts the job from its latest checkpoint).
    CycleBackend,
    /// Longer checkpoint interval.
    IntervalUp,
    /// Shorter checkpoint interval.
    IntervalDown,
    /// Start or stop the steady record generator.
    ToggleGenerator,
    /// Cycle the generator's rate.
    CycleRate,
    /// Slower: more hop delay.
    Slower,
    /// Faster: less hop delay.
    Faster,
    /// Pause or resume records and barriers.
    Pause,
    /// Submit the job again after it FAILED.
    Resubmit,
    FocusNext,
    FocusPrev,
    ScrollUp,
    ScrollDown,
    Help,
    Quit,
    /// Input mode: produce the typed record.
    Submit,
    /// Input mode: back to command mode.
    ExitInput,
    /// Input mode: delete the last character.
    #[serde(skip)]
    Backspace,
    /// Input mode: a typed character.
    #[serde(skip)]
    Char(char),
    /// Close the help overlay (any key while it is open).
    #[serde(skip)]
    CloseHelp,
}
