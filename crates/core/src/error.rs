//! Errors. Validation errors name the file, the field and the bad value; every
//! other fallible operation returns an [`anyhow::Error`] with context that is
//! printed as a chain by the binaries.

use std::fmt;
use std::path::{Path, PathBuf};

pub use anyhow::Error;

/// One problem with one registry file. `file` is the logical path (as seen from
/// the host's `/`, not prefixed with a test root) so messages read the same in
/// tests and in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub file: PathBuf,
    /// JSON path of the offending field, e.g. `forwardPorts[1].hostPort`;
    /// `None` when the problem is the file as a whole.
    pub field: Option<String>,
    pub message: String,
}

impl EntryError {
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        EntryError {
            file: file.to_path_buf(),
            field: None,
            message: shorten_quoted(&message.into()),
        }
    }

    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        EntryError {
            file: file.to_path_buf(),
            field: Some(shorten_quoted(&field.into())),
            message: shorten_quoted(&message.into()),
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.file.display(), field, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for EntryError {}

/// Render a JSON value for an error message: short, one line, never more than
/// 80 characters so a 10 MiB string does not flood the journal.
pub fn show_value(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Shorten every double-quoted string in `msg` to at most 80 characters, so
/// an error about a 10 MiB value stays one readable line.
pub fn shorten_quoted(msg: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::with_capacity(msg.len().min(1024));
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        let mut n = 0;
        let mut cut = false;
        while let Some(c) = chars.next() {
            if c == '"' {
                out.push('"');
                break;
            }
            let escaped = if c == '\\' { chars.next() } else { None };
            n += 1;
            if n <= MAX {
                out.push(c);
                if let Some(e) = escaped {
                    out.push(e);
                }
            } else if !cut {
                out.push_str("...");
                cut = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_quoted_values_are_shortened() {
        let long = format!("name: {:?} is too long", "x".repeat(1000));
        let short = super::shorten_quoted(&long);
        assert_eq!(
            short,
            format!("name: \"{}...\" is too long", "x".repeat(80))
        );
        assert_eq!(super::shorten_quoted("a \"b\\\"c\" d"), "a \"b\\\"c\" d");
    }
}
