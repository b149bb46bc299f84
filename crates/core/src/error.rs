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
            message: message.into(),
        }
    }

    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        EntryError {
            file: file.to_path_buf(),
            field: Some(field.into()),
            message: message.into(),
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
