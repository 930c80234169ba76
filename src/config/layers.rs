//! Configuration layers and how they stack, later layers winning key by key: the shipped
//! `conf/ckptlab.toml` (embedded in the binary, or `./conf/ckptlab.toml` when present), `--config
//! FILE`, a scenario's `[config]` table, then the command line (`--set key=value`, `--backend`,
//! `--kafka`) and live changes (a scenario's `set`, the workbench's keys). Each value remembers the
//! layer it came from (a file with its line) so that an error names the file, the key and the
//! allowed values.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use strum::{EnumIter, EnumString, IntoStaticStr, VariantNames};

use super::schema::{canonical_key, in_pattern_table, key_hint, BackendKind, StorageKind, PATTERN_TABLES, SCHEMA};
use super::ConfigError;

/// The configuration file shipped with ckptlab; its values are the defaults.
pub const DEFAULT_CONF: &str = include_str!("../../conf/ckptlab.toml");
/// Where a user's edited copy is looked for, relative to the working directory.
pub const LOCAL_CONF: &str = "conf/ckptlab.toml";

/// A deprecated key found in a layer: it still works, and the user is told its new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeprecatedKey {
    pub origin: String,
    pub key: String,
    pub replacement: String,
}

/// The layer an option's value came from, lowest first (a later layer wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The shipped `conf/ckptlab.toml` (embedded in the binary).
    Default,
    /// A configuration file: `./conf/ckptlab.toml` or `--config FILE` ([`ConfigLayers::merge_file`],
    /// [`ConfigLayers::merge_str`]).
    ConfFile,
    /// A scenario's `[config]` table ([`ConfigLayers::merge_table`]).
    Scenario,
    /// `--set`, `--backend`, `--kafka` ([`ConfigLayers::set`], [`ConfigLayers::set_value`]).
    CommandLine,
    /// A change while the job runs ([`ConfigLayers::set_live`]).
    Live,
}

/// One option as the layers leave it: its value, the layer it came from and where in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveOption {
    pub key: String,
    /// The value as TOML writes it (`"5s"`, `2`, `true`).
    pub value: String,
    pub layer: Layer,
    /// The file and line, or the flag, that set it (`conf/ckptlab.toml (built in):12`, `--set`).
    pub origin: String,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) value: toml::Value,
    pub(super) origin: String,
    pub(super) layer: Layer,
}

/// Configuration layers, merged key by key; `build` validates them into a [`Config`].
#[derive(Debug, Clone, Default)]
pub struct ConfigLayers {
    pub(super) entries: BTreeMap<String, Entry>,
    deprecated: Vec<DeprecatedKey>,
}

impl ConfigLayers {
    /// The defaults: `./conf/ckptlab.toml` if the working directory has one, else the embedded copy.
    pub fn with_defaults() -> Result<Self, ConfigError> {
        let mut layers = ConfigLayers::default();
        layers.merge_text(DEFAULT_CONF, "conf/ckptlab.toml (built in)", Layer::Default)?;
        if Path::new(LOCAL_CONF).is_file() {
            layers.merge_file(Path::new(LOCAL_CONF))?;
        }
        Ok(layers)
    }

    /// The embedded defaults only (tests and benchmarks: independent of the working directory).
    pub fn builtin() -> Self {
        let mut layers = ConfigLayers::default();
        layers
            .merge_text(DEFAULT_CONF, "conf/ckptlab.toml (built in)", Layer::Default)
            .expect("the shipped conf/ckptlab.toml is valid (tested)");
        layers
    }

    /// Merges a TOML file on top.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { origin: origin.clone(), message: e.to_string() })?;
        self.merge_str(&text, &origin)
    }

    /// Merges TOML text on top; `origin` names it in errors, with the line of each key
    /// (`file.toml:12`), so an error points at the bad key rather than at its table header.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        self.merge_text(text, origin, Layer::ConfFile)
    }

    fn merge_text(&mut self, text: &str, origin: &str, layer: Layer) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax { origin: origin.to_string(), message: syntax_message(text, &e) })?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat);
        let lines = key_lines(text);
        for (key, value) in flat {
            let at = match lines.get(&key) {
                Some(line) => format!("{origin}:{line}"),
                None => origin.to_string(),
            };
            self.insert(key, value, &at, layer)?;
        }
        Ok(())
    }

    /// Merges an already parsed table (a scenario's `[config]`).
    pub fn merge_table(&mut self, table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
        let mut flat = Vec::new();
        flatten("", table, &mut flat);
        for (key, value) in flat {
            self.insert(key, value, origin, Layer::Scenario)?;
        }
        Ok(())
    }

    /// `--set key=value`: the value is read as TOML when it parses as such, else as a string.
    pub fn set(&mut self, assignment: &str, origin: &str) -> Result<(), ConfigError> {
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!("`{assignment}` is not of the form key=value (example: execution.checkpointing.mode=AT_LEAST_ONCE)"),
            });
        };
        self.set_value(key.trim(), parse_loose_value(raw.trim()), origin)
    }

    /// Sets one dotted key.
    /// Sets the seed's backend name (memory, fs, rocksdb) as its two Flink 2 options.
    pub fn set_backend(&mut self, name: &str, origin: &str) -> Result<(), ConfigError> {
        for (k, v) in backend_shorthand(name)? {
            self.set_value(k, toml::Value::String(v.into()), origin)?;
        }
        Ok(())
    }

    pub fn set_value(&mut self, key: &str, value: toml::Value, origin: &str) -> Result<(), ConfigError> {
        self.insert(key.to_string(), value, origin, Layer::CommandLine)
    }

    /// Sets one dotted key while the job runs (a scenario's `set`, the workbench's keys).
    pub fn set_live(&mut self, key: &str, value: toml::Value, origin: &str) -> Result<(), ConfigError> {
        self.insert(key.to_string(), value, origin, Layer::Live)
    }

    /// Every option with its value and the layer it came from, in key order (what `run --json`
    /// reports as the effective configuration).
    pub fn effective(&self) -> Vec<EffectiveOption> {
        self.entries
            .iter()
            .map(|(key, e)| EffectiveOption { key: key.clone(), value: value_text(&e.value), layer: e.layer, origin: e.origin.clone() })
            .collect()
    }

    fn insert(&mut self, key: String, value: toml::Value, origin: &str, layer: Layer) -> Result<(), ConfigError> {
        let canonical = canonical_key(&key);
        if canonical != key {
            self.deprecated.push(DeprecatedKey { origin: origin.to_string(), key: key.clone(), replacement: canonical.to_string() });
        }
        let key = canonical.to_string();
        let known = in_pattern_table(&key) || SCHEMA.iter().any(|s| s.key == key);
        if !known {
            return Err(ConfigError::UnknownKey { origin: origin.to_string(), hint: key_hint(&key), key });
        }
        self.entries.insert(key, Entry { value, origin: origin.to_string(), layer });
        Ok(())
    }

    /// Deprecated spellings the layers used (each still took effect under its new name).
    pub fn deprecated_keys(&self) -> &[DeprecatedKey] {
        &self.deprecated
    }

    /// The raw value of a key, if set.
    pub fn raw(&self, key: &str) -> Option<&toml::Value> {
        self.entries.get(key).map(|e| &e.value)
    }
}

pub(super) fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            // Pattern tables map patterns (which may contain dots) to values.
            toml::Value::Table(t) if PATTERN_TABLES.contains(&key.as_str()) => {
                for (pattern, value) in t {
                    out.push((format!("{key}.{pattern}"), value.clone()));
                }
            }
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().to_string();
    match e.span() {
        Some(span) => format!("line {}: {msg}", line_of(text, span.start)),
        None => msg,
    }
}

/// The 1-based line of every key in TOML text, by its dotted name as [`ConfigLayers`] flattens it
/// (`ckptlab.delays.source[1]->counter[*]`), read from the TOML parser's own spans: text that only
/// looks like a key (inside a multi-line string, or a comment) is none. A table is named by the
/// line of its header; a name that appears twice (the tables of an array) keeps its first line.
/// Empty when the text does not parse (its syntax error names the line instead).
pub fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        table_lines(text, "", doc.as_table(), &mut out);
    }
    out
}

fn table_lines(text: &str, prefix: &str, table: &toml_edit::Table, out: &mut BTreeMap<String, usize>) {
    for (name, _) in table.iter() {
        if let Some((key, item)) = table.get_key_value(name) {
            item_lines(text, prefix, key, item, out);
        }
    }
}

fn item_lines(text: &str, prefix: &str, key: &toml_edit::Key, item: &toml_edit::Item, out: &mut BTreeMap<String, usize>) {
    let path = if prefix.is_empty() { key.get().to_string() } else { format!("{prefix}.{}", key.get()) };
    if let Some(span) = key.span().or_else(|| item.span()) {
        out.entry(path.clone()).or_insert_with(|| line_of(text, span.start));
    }
    match item {
        toml_edit::Item::Table(t) => table_lines(text, &path, t, out),
        toml_edit::Item::ArrayOfTables(tables) => tables.iter().for_each(|t| table_lines(text, &path, t, out)),
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (name, _) in t.iter() {
                if let Some((key, item)) = t.get_key_value(name) {
                    item_lines(text, &path, key, item, out);
                }
            }
        }
        toml_edit::Item::Value(_) | toml_edit::Item::None => {}
    }
}

/// The 1-based line where a dotted key (as [`key_lines`] names it) is assigned in TOML text, or
/// else where the nearest table holding it is; `None` when neither is there (the caller then names
/// the file alone).
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines = key_lines(text);
    let mut at = key;
    loop {
        if let Some(line) = lines.get(at) {
            return Some(*line);
        }
        at = at.rsplit_once('.')?.0;
    }
}

/// The 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `--set` values: TOML when they parse (numbers, booleans, quoted strings), else plain strings.
pub fn parse_loose_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

pub(super) fn value_text(v: &toml::Value) -> String {
    v.to_string()
}

/// The seed's three backends (`--backend`, the workbench's `b` key), each a pair of Flink 2's
/// options; the other spellings the seed's docs use are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, IntoStaticStr, VariantNames, EnumIter)]
#[strum(ascii_case_insensitive)]
pub enum SeedBackend {
    #[strum(to_string = "memory", serialize = "jobmanager", serialize = "memorystatebackend")]
    Memory,
    #[strum(to_string = "fs", serialize = "filesystem", serialize = "fsstatebackend")]
    Fs,
    #[strum(to_string = "rocksdb", serialize = "rocksdbstatebackend")]
    RocksDb,
}

impl SeedBackend {
    /// The backend and the checkpoint storage it stands for.
    pub fn pair(self) -> (BackendKind, StorageKind) {
        match self {
            SeedBackend::Memory => (BackendKind::HashMap, StorageKind::JobManager),
            SeedBackend::Fs => (BackendKind::HashMap, StorageKind::Filesystem),
            SeedBackend::RocksDb => (BackendKind::RocksDb, StorageKind::Filesystem),
        }
    }

    /// The seed's backend a pair is (RocksDB keeps its snapshots as files whatever the storage).
    pub fn of((backend, storage): (BackendKind, StorageKind)) -> SeedBackend {
        match (backend, storage) {
            (BackendKind::HashMap, StorageKind::JobManager) => SeedBackend::Memory,
            (BackendKind::HashMap, StorageKind::Filesystem) => SeedBackend::Fs,
            (BackendKind::RocksDb, _) => SeedBackend::RocksDb,
        }
    }

    /// The seed's class name: `MemoryStateBackend`, `FsStateBackend`, `RocksDBStateBackend`.
    pub fn class_name(self) -> &'static str {
        match self {
            SeedBackend::Memory => "MemoryStateBackend",
            SeedBackend::Fs => "FsStateBackend",
            SeedBackend::RocksDb => "RocksDBStateBackend",
        }
    }
}

/// "hashmap + jobmanager (MemoryStateBackend)": Flink 2's names, then the seed's.
pub fn backend_label(pair: (BackendKind, StorageKind)) -> String {
    let (b, s): (&str, &str) = (pair.0.into(), pair.1.into());
    format!("{b} + {s} ({})", SeedBackend::of(pair).class_name())
}

/// `--kafka host:port|mock`: the Kafka source at that broker list (or librdkafka's mock cluster).
pub fn kafka_shorthand(servers: &str) -> [(&'static str, String); 2] {
    [("source.kind", "kafka".into()), ("source.bootstrap-servers", servers.to_string())]
}

/// `--backend memory|fs|rocksdb`: the seed's three backends as Flink 2 option pairs.
pub fn backend_shorthand(name: &str) -> Result<[(&'static str, &'static str); 2], ConfigError> {
    // Case-insensitive, as every other choice value.
    let seed: SeedBackend = name.trim().parse().map_err(|_| ConfigError::BadShorthand {
        flag: "--backend",
        value: name.to_string(),
        allowed: SeedBackend::VARIANTS,
    })?;
    let (backend, storage) = seed.pair();
    Ok([("state.backend.type", backend.into()), ("execution.checkpointing.storage", storage.into())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BUFFER_TIMEOUT_DISABLED;
    use std::time::Duration;

    #[test]
    fn the_old_buffer_timeout_key_is_an_alias_of_flink_2s_interval_with_a_note() {
        let mut l = ConfigLayers::builtin();
        assert!(l.deprecated_keys().is_empty(), "the shipped conf uses Flink 2's names only");
        assert_eq!(l.build().unwrap().buffer_timeout, Duration::from_millis(100), "Flink's default interval");
        l.merge_str("[execution]\nbuffer-timeout = \"7ms\"\n", "old.toml").unwrap();
        assert_eq!(l.build().unwrap().buffer_timeout, Duration::from_millis(7));
        assert_eq!(
            l.deprecated_keys(),
            &[DeprecatedKey {
                origin: "old.toml:2".into(),
                key: "execution.buffer-timeout".into(),
                replacement: "execution.buffer-timeout.interval".into()
            }]
        );
        // The new name, in a later layer, wins as any later layer does.
        l.set("execution.buffer-timeout.interval=9ms", "--set").unwrap();
        assert_eq!(l.build().unwrap().buffer_timeout, Duration::from_millis(9));
        l.set("execution.buffer-timeout.enabled=false", "--set").unwrap();
        assert_eq!(l.build().unwrap().buffer_timeout, BUFFER_TIMEOUT_DISABLED, "flushed only when full");
    }

    #[test]
    fn unknown_key_is_an_error_with_known_siblings() {
        let mut l = ConfigLayers::builtin();
        let e = l.merge_str("[execution.checkpointing]\nintervall = \"1s\"\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("intervall") && e.contains("execution.checkpointing.interval"), "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let mut l = ConfigLayers::builtin();
        let e = l.merge_str("[job]\nparallelism = 2\nname = \n", "y.toml").unwrap_err().to_string();
        assert!(e.contains("y.toml") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn set_overrides_and_parses_loosely() {
        let mut l = ConfigLayers::builtin();
        l.set("execution.checkpointing.interval=off", "--set").unwrap();
        l.set("job.parallelism=3", "--set").unwrap();
        l.set("taskmanager.count=3", "--set").unwrap();
        l.set("ckptlab.delays.source[1]->counter[*]=300ms", "--set").unwrap();
        let c = l.build().unwrap();
        assert_eq!(c.checkpointing.interval, None);
        assert_eq!(c.job.parallelism, 3);
        assert_eq!(c.extra_delay(("source", 1), ("counter", 0)), Duration::from_millis(300));
        assert_eq!(c.extra_delay(("source", 0), ("counter", 0)), Duration::ZERO);
        let e = l.set("job.parallelism", "--set").unwrap_err().to_string();
        assert!(e.contains("key=value"));
        l.set("job.parallelism=0", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("--set") && e.contains("from 1 to 64"), "{e}");
    }

    #[test]
    fn errors_name_the_line_of_the_bad_key_not_its_table() {
        let text = "[job]\nname = \"x\"\n\nparallelism = 0\n";
        let mut l = ConfigLayers::builtin();
        l.merge_str(text, "c.toml").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.starts_with("c.toml:4: `job.parallelism`"), "{e}");
        assert_eq!(line_of_key("[restart-strategy]\nfixed-delay.attempts = 3\n", "restart-strategy.fixed-delay.attempts"), Some(2));
        assert_eq!(line_of_key("[config.ckptlab.delays]\n\"a->b\" = 1\n", "config.ckptlab.delays.a->b"), Some(2));
        assert_eq!(line_of_key("x = { rate = 7 }\n", "x.rate"), Some(1));
    }

    #[test]
    fn the_effective_configuration_names_each_options_layer_and_the_latest_wins() {
        let mut l = ConfigLayers::builtin();
        let all = l.effective();
        assert!(SCHEMA.iter().all(|s| all.iter().any(|o| o.key == s.key)), "every option has a value");
        assert!(all.iter().all(|o| o.layer == Layer::Default), "{all:?}");
        l.merge_str("[job]\nname = \"mine\"\nparallelism = 1\n", "my.toml").unwrap();
        l.merge_table(&"[job]\nparallelism = 2\n".parse().unwrap(), "s.toml [config]").unwrap();
        l.set("taskmanager.count=3", "--set").unwrap();
        l.set_live("ckptlab.hop-delay", parse_loose_value("5ms"), "runtime change").unwrap();
        let at = |key: &str| l.effective().into_iter().find(|o| o.key == key).unwrap();
        let name = at("job.name");
        assert_eq!((name.value.as_str(), name.layer, name.origin.as_str()), ("\"mine\"", Layer::ConfFile, "my.toml:2"));
        assert_eq!((at("job.parallelism").value, at("job.parallelism").layer), ("2".to_string(), Layer::Scenario));
        assert_eq!(at("taskmanager.count").layer, Layer::CommandLine);
        assert_eq!(at("ckptlab.hop-delay").layer, Layer::Live);
        assert_eq!(at("job.key-by").layer, Layer::Default);
        let json = serde_json::to_string(&at("taskmanager.count")).unwrap();
        assert_eq!(json, r#"{"key":"taskmanager.count","value":"3","layer":"command_line","origin":"--set"}"#);
    }

    #[test]
    fn a_key_is_placed_by_the_parser_not_by_text_that_looks_like_one() {
        // The line search this replaced read line 3 (inside the string) as `job.parallelism`, and
        // line 4 as a `[source]` header, so it also put `source.topic` on line 7 under [job].
        let text = "[job]\nname = \"\"\"\nparallelism = 9\n[source]\n\"\"\"\n# parallelism = 5\nparallelism = 0\n[source]\ntopic = \"t\"\n";
        let mut l = ConfigLayers::builtin();
        l.merge_str(text, "c.toml").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.starts_with("c.toml:7: `job.parallelism` = 0: ") && e.ends_with("allowed: an integer from 1 to 64"), "{e}");
        assert_eq!(line_of_key(text, "job.name"), Some(2));
        assert_eq!(line_of_key(text, "source.topic"), Some(9));
        assert_eq!(line_of_key(text, "source"), Some(8), "a table is named by its header");
        // A key the text lacks is placed at the nearest table holding it.
        assert_eq!(line_of_key(text, "source.partitions"), Some(8));
        assert_eq!(line_of_key(text, "nothing.here"), None);
    }

    #[test]
    fn backend_shorthands_map_to_flink2_pairs() {
        let mut l = ConfigLayers::builtin();
        for (k, v) in backend_shorthand("fs").unwrap() {
            l.set_value(k, toml::Value::String(v.into()), "--backend").unwrap();
        }
        assert_eq!(l.build().unwrap().seed_backend_name(), "FsStateBackend");
        let e = backend_shorthand("nvram").unwrap_err();
        assert_eq!(e.to_string(), "--backend nvram: allowed values: memory, fs, rocksdb (any case)");
        assert_eq!(e.allowed(), Some(&["memory", "fs", "rocksdb"][..]));
    }
}
