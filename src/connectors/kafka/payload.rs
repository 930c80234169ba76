//! Payloads as record values: text as it is, anything else escaped, so that distinct payloads stay
//! distinct keys.

use std::sync::Arc;

use rdkafka::message::Message;

/// How a null payload (a tombstone) is shown: a form no other payload takes (see [`record_value`]).
pub const NULL_VALUE: &str = "\\null";

/// A payload as a record value, one-to-one so that distinct payloads stay distinct keys: UTF-8
/// text without a backslash as it is (the seed's records); anything else escaped, a backslash as
/// `\\` and each byte that is not UTF-8 as `\xNN`; a null payload as [`NULL_VALUE`], apart from
/// the empty one (`""`).
pub fn record_value(payload: Option<&[u8]>) -> Arc<str> {
    let Some(bytes) = payload else { return Arc::from(NULL_VALUE) };
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\\') => Arc::from(text),
        _ => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == '\\' {
                        out.push_str("\\\\");
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            Arc::from(out)
        }
    }
}

pub(super) fn value_of(m: &impl Message) -> Arc<str> {
    record_value(m.payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_payloads_stay_distinct_values() {
        let payloads: [Option<&[u8]>; 8] =
            [None, Some(b""), Some(b"a"), Some(b"\xff"), Some(b"\xfe"), Some(b"\\xff"), Some(b"\\null"), Some(b"a\\b")];
        let values: Vec<Arc<str>> = payloads.iter().map(|p| record_value(*p)).collect();
        let distinct: std::collections::HashSet<&str> = values.iter().map(|v| v.as_ref()).collect();
        assert_eq!(distinct.len(), payloads.len(), "{values:?}");
        assert_eq!(values[0].as_ref(), NULL_VALUE);
        assert_eq!(values[1].as_ref(), "");
        assert_eq!(values[2].as_ref(), "a", "text as it is");
        assert_eq!(values[3].as_ref(), "\\xff");
        assert_eq!(values[5].as_ref(), "\\\\xff");
    }
}
