//! Configuration: every option with Flink 2.x's name, its default and the values it allows.
//!
//! - [`schema`]: the option table ([`SCHEMA`]): each key, the kind of value it holds, whether a
//!   running job picks up a change, and the enums whose names are a choice's values.
//! - [`layers`]: where values come from and how they stack ([`ConfigLayers`]): the shipped
//!   defaults, `--config FILE`, a scenario's `[config]`, the command line, live changes.
//! - [`model`]: the typed configuration the engine gets ([`Config`]), validated out of the layers
//!   by [`ConfigLayers::build`].
//! - [`kafka_sink`]: the Kafka sink's option values and refusals ([`DeliveryGuarantee`], the
//!   transaction timeouts), which the configuration checks and the sink and broker take from here.
//!
//! Every public item is re-exported here, so callers write `crate::config::Config`.
//!
//! # How to add an option
//! The one place that declares an option is its row in [`SCHEMA`] (`schema.rs`): key, kind, and
//! whether it changes at run time; for a choice, a strum enum beside the others there, whose
//! names are its values (`Kind::Choice(MyEnum::VARIANTS)`). The rest is pointed at for you:
//! 1. `conf/ckptlab.toml` must give its default with a one-line comment (the test
//!    `shipped_conf_lists_every_option_and_only_known_ones` fails until it does);
//! 2. if the engine reads it, a field of [`Config`] (`model.rs`): the compiler then points at the
//!    one `Config { .. }` in [`ConfigLayers::build`], where a `Reader` call (`r.duration(key)`,
//!    `r.choice(key)`, ...) reads and validates it.

mod backend;
pub mod kafka_sink;
pub mod layers;
pub mod model;
pub mod schema;

pub use kafka_sink::*;
pub use layers::*;
pub use model::*;
pub use schema::*;

/// A configuration error that names where the bad value came from, the key and what is allowed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    #[error("{origin}: cannot read: {message}")]
    Io { origin: String, message: String },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey { origin: String, key: String, hint: String },
    #[error("{origin}: `{key}` = {value}: {message}")]
    BadValue { origin: String, key: String, value: String, message: String },
    /// A choice option's value is none of its enum's names.
    #[error("{origin}: `{key}` = {value}: allowed values: {}", allowed.join(", "))]
    BadChoice { origin: String, key: String, value: String, allowed: &'static [&'static str] },
    /// A command-line shorthand (`--backend`) names none of its values.
    #[error("{flag} {value}: allowed values: {} (any case)", allowed.join(", "))]
    BadShorthand { flag: &'static str, value: String, allowed: &'static [&'static str] },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl ConfigError {
    /// The key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::BadValue { key, .. } | ConfigError::BadChoice { key, .. } => Some(key),
            ConfigError::Io { .. } | ConfigError::Syntax { .. } | ConfigError::Invalid { .. } | ConfigError::BadShorthand { .. } => None,
        }
    }

    /// The error without where it came from, for a caller that names the file and line itself.
    pub fn detail(&self) -> String {
        match self {
            ConfigError::Io { message, .. } => format!("cannot read: {message}"),
            ConfigError::Syntax { message, .. } | ConfigError::Invalid { message, .. } => message.clone(),
            ConfigError::UnknownKey { key, hint, .. } => format!("unknown key `{key}`{hint}"),
            ConfigError::BadValue { key, value, message, .. } => format!("`{key}` = {value}: {message}"),
            ConfigError::BadChoice { key, value, allowed, .. } => format!("`{key}` = {value}: allowed values: {}", allowed.join(", ")),
            e @ ConfigError::BadShorthand { .. } => e.to_string(),
        }
    }

    /// The values the key allows, when they are a list (a choice, a shorthand's names).
    pub fn allowed(&self) -> Option<&'static [&'static str]> {
        match self {
            ConfigError::BadChoice { allowed, .. } | ConfigError::BadShorthand { allowed, .. } => Some(allowed),
            ConfigError::Io { .. }
            | ConfigError::Syntax { .. }
            | ConfigError::UnknownKey { .. }
            | ConfigError::BadValue { .. }
            | ConfigError::Invalid { .. } => None,
        }
    }
}
