//! Everything a key can do. The serde names are the action names of `conf/keys.toml`; the
//! actions a key file can bind are those strum iterates (the others, `#[strum(disabled)]`, are
//! keys' own meanings: digits, typed characters, popups' keys).

use serde::{Deserialize, Serialize};
use strum::EnumIter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EnumIter)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// In a lesson: the next step, or let the lesson do the one that waits for you.
    LessonNext,
    /// In a lesson: look back at the previous step.
    LessonPrev,
    /// In a lesson: answer the prediction with choice N (the digit keys).
    #[serde(skip)]
    #[strum(disabled)]
    LessonAnswer(u8),
    /// Leave the lesson; the cluster stays.
    LessonLeave,
    /// Focus the input pane to type a record.
    FocusInput,
    /// Kill the selected task manager (its process is gone: RPCs to it fail at once, found
    /// after `heartbeat.rpc-failure-threshold` failed heartbeats).
    Kill,
    /// Kill the selected task manager when the next checkpoint completes, before its tasks are
    /// notified: its sink dies holding a pre-committed transaction the checkpoint keeps, which
    /// the restore commits (a two-phase-commit sink's hardest moment).
    KillBeforeCommit,
    /// Hang the selected task manager: it answers nothing, its connections stay open (found only
    /// at `heartbeat.timeout`).
    Hang,
    /// Select task manager N (1-based; the digit keys).
    #[serde(skip)]
    #[strum(disabled)]
    SelectTm(u8),
    /// Start the selected task manager if it is killed, else a new one.
    Start,
    /// Trigger a checkpoint now.
    Checkpoint,
    /// Take a savepoint into `execution.checkpointing.savepoint-dir`, canonical (Flink's default
    /// format: restorable into either backend).
    Savepoint,
    /// Take a savepoint in the backend's native format (restorable only into the same backend).
    NativeSavepoint,
    /// Stop the job with a savepoint (it ends FINISHED). No default key: bind one in
    /// `conf/keys.toml` (`[command] stop-with-savepoint = "X"`).
    StopWithSavepoint,
    /// Cycle EXACTLY_ONCE aligned -> EXACTLY_ONCE unaligned -> AT_LEAST_ONCE -> off.
    CycleMode,
    /// Cycle the state backend memory -> fs -> rocksdb: a stop-with-savepoint (canonical), then
    /// the job submitted again on the next backend from it.
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
    /// Cycle the extra latency of the slow channel (source[1] -> every counter): off, 300 ms, 1 s.
    SlowChannel,
    /// Cycle the buffer timeout (`execution.buffer-timeout.interval`): 100 ms, 10 ms, 1 ms, 0 ms.
    BufferTimeout,
    /// A fresh cluster: empty topic, empty state, restart back-off reset; the settings stay.
    Reset,
    /// Pick one of the shipped scenarios and play it live.
    OpenScenario,
    /// Open what is selected: a key's detail in the state pane, a scenario in the picker.
    Open,
    /// Cycle the events pane's filter: all, failures, checkpoints.
    EventsFilter,
    /// The output pane where it is narrow: show the read_committed or the read_uncommitted
    /// reader of the Kafka sink's output topic (side by side where it is wide).
    SwitchReader,
    /// Scroll the focused pane a page back / forward, to its start / end.
    PageUp,
    PageDown,
    Home,
    End,
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
    #[strum(disabled)]
    Backspace,
    /// Input mode: a typed character.
    #[serde(skip)]
    #[strum(disabled)]
    Char(char),
    /// Close the help overlay (any key while it is open).
    #[serde(skip)]
    #[strum(disabled)]
    CloseHelp,
    /// Close a popup (detail, scenario picker).
    #[serde(skip)]
    #[strum(disabled)]
    ClosePopup,
    /// Picker: the previous / next scenario.
    #[serde(skip)]
    #[strum(disabled)]
    PickPrev,
    #[serde(skip)]
    #[strum(disabled)]
    PickNext,
}
