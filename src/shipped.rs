//! The shipped scenarios (`assets/scenarios/*.toml`), embedded in the binary: one list for the
//! workbench's `o` picker, `ckptlab tour` and `ckptlab run NAME`, so that an installed binary (the
//! tarball, the wheel) plays them from any directory and no second list can drift from this one.

use std::path::Path;

use crate::scenario::{Scenario, ScenarioError};

/// Scenarios the workbench can play (`o` lists them in this order).
pub const WORKBENCH: &[(&str, &str)] = &[
    ("assets/scenarios/seed-checkpoints-disabled.toml", include_str!("../assets/scenarios/seed-checkpoints-disabled.toml")),
    ("assets/scenarios/seed-exactly-once.toml", include_str!("../assets/scenarios/seed-exactly-once.toml")),
    ("assets/scenarios/seed-at-least-once.toml", include_str!("../assets/scenarios/seed-at-least-once.toml")),
    ("assets/scenarios/at-least-once-overcounts.toml", include_str!("../assets/scenarios/at-least-once-overcounts.toml")),
    ("assets/scenarios/exactly-once-slow-channel.toml", include_str!("../assets/scenarios/exactly-once-slow-channel.toml")),
    ("assets/scenarios/unaligned-under-backpressure.toml", include_str!("../assets/scenarios/unaligned-under-backpressure.toml")),
    ("assets/scenarios/checkpoint-expired.toml", include_str!("../assets/scenarios/checkpoint-expired.toml")),
    ("assets/scenarios/rocksdb-incremental.toml", include_str!("../assets/scenarios/rocksdb-incremental.toml")),
    ("assets/scenarios/rocksdb-slow-storage.toml", include_str!("../assets/scenarios/rocksdb-slow-storage.toml")),
];

/// `[compare]` scenarios: one cluster per mode (`ckptlab run` plays them; the workbench does not).
pub const COMPARE: &[(&str, &str)] = &[
    ("assets/scenarios/compare-modes.toml", include_str!("../assets/scenarios/compare-modes.toml")),
    ("assets/scenarios/compare-sinks.toml", include_str!("../assets/scenarios/compare-sinks.toml")),
    ("assets/scenarios/compare-delivery-guarantees.toml", include_str!("../assets/scenarios/compare-delivery-guarantees.toml")),
];

/// What `ckptlab tour` walks through: the seed tutorial's three experiments, then the one built to
/// make at-least-once count twice.
pub const TOUR: &[&str] = &["seed-checkpoints-disabled", "seed-exactly-once", "seed-at-least-once", "at-least-once-overcounts"];

/// A scenario's name: its file name without `.toml` (`seed-exactly-once`).
pub fn name_of(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".toml").unwrap_or(base)
}

/// Every shipped scenario's name, the workbench's first.
pub fn names() -> Vec<&'static str> {
    WORKBENCH.iter().chain(COMPARE).map(|(file, _)| name_of(file)).collect()
}

/// The shipped scenario called `name` (`seed-exactly-once`, `seed-exactly-once.toml` or
/// `assets/scenarios/seed-exactly-once.toml`): its file and text.
pub fn find(name: &str) -> Option<(&'static str, &'static str)> {
    let wanted = name_of(name);
    WORKBENCH.iter().chain(COMPARE).find(|(file, _)| name_of(file) == wanted).copied()
}

/// Reads a scenario: the file at `path` when there is one, else the shipped scenario of that name.
/// A path that is neither says so and lists the names.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    if path.exists() {
        return Scenario::load(path);
    }
    let text = path.to_string_lossy();
    match find(&text) {
        Some((file, body)) => Scenario::parse(body, file),
        None => {
            let why = std::fs::metadata(path).err().map_or_else(|| "not a file".to_string(), |e| e.to_string());
            Err(ScenarioError {
                file: text.into_owned(),
                line: 0,
                message: format!("cannot read: {why}; nor is it a shipped scenario's name (shipped: {})", names().join(", ")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list is the directory: a scenario added to assets/scenarios without a line here (or a
    /// line left for a removed file) fails, so `ckptlab run NAME` and `o` never miss one.
    #[test]
    fn every_file_in_assets_scenarios_is_shipped_once_and_parses() {
        let mut on_disk: Vec<String> = std::fs::read_dir("assets/scenarios")
            .expect("assets/scenarios")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .map(|n| name_of(&n).to_string())
            .collect();
        on_disk.sort();
        let mut shipped: Vec<String> = names().into_iter().map(String::from).collect();
        shipped.sort();
        assert_eq!(shipped, on_disk);
        for (file, text) in WORKBENCH {
            let s = Scenario::parse(text, file).unwrap_or_else(|e| panic!("{e}"));
            assert!(s.compare.is_none(), "{file} is a [compare] scenario: it belongs in COMPARE");
        }
        for (file, text) in COMPARE {
            assert!(Scenario::parse(text, file).unwrap_or_else(|e| panic!("{e}")).compare.is_some(), "{file}");
        }
        assert!(TOUR.iter().all(|n| find(n).is_some()), "{TOUR:?}");
    }

    #[test]
    fn a_name_finds_its_scenario_in_three_spellings_and_an_unknown_one_lists_the_names() {
        for spelling in ["seed-exactly-once", "seed-exactly-once.toml", "assets/scenarios/seed-exactly-once.toml"] {
            assert_eq!(find(spelling).map(|(f, _)| f), Some("assets/scenarios/seed-exactly-once.toml"), "{spelling}");
        }
        assert!(find("seed").is_none());
        let e = load(Path::new("no-such-scenario")).unwrap_err().to_string();
        assert!(e.contains("no-such-scenario") && e.contains("seed-exactly-once") && e.contains("compare-modes"), "{e}");
    }
}
