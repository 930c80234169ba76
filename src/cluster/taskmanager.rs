//! Task managers' names: `tm-1` .. `tm-64` ([`MAX_TASK_MANAGERS`]), the only names a scenario
//! step, a key or a command can give. A name also names the TM's local directory, so nothing else
//! may pass: `kill = "/tmp/victim"` is refused before it gets near a path.

use crate::config::MAX_TASK_MANAGERS;

/// The number in `tm-N`, or why the text is not a task manager's name.
///
/// ```
/// use ckptlab::cluster::taskmanager::parse_name;
/// assert_eq!(parse_name("tm-2"), Ok(2));
/// assert!(parse_name("/tmp/victim").is_err());
/// assert!(parse_name("tm-0").is_err());
/// ```
pub fn parse_name(text: &str) -> Result<usize, String> {
    let n = text
        .strip_prefix("tm-")
        .filter(|d| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
        .and_then(|d| d.parse::<usize>().ok());
    match n {
        Some(n) if (1..=MAX_TASK_MANAGERS).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a task manager: they are named tm-1 .. tm-{MAX_TASK_MANAGERS}")),
    }
}

/// `tm-N`.
pub fn name(n: usize) -> String {
    format!("tm-{n}")
}

/// "tm-1, tm-2": the names of task managers 1..=count, for messages.
pub fn list(count: usize) -> String {
    (1..=count).map(name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tm_n_names_pass() {
        assert_eq!(parse_name("tm-64"), Ok(64));
        for bad in ["tm-65", "tm-01", "tm-", "tm-1/..", "../tm-1", "filesystem", "/", "", "tm--1", "TM-1", "tm-1 "] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
