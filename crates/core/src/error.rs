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
            message: escape_unsafe(&shorten_quoted(&message.into())),
        }
    }

    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        // A field path can contain a JSON key verbatim (an unknown key): bound
        // and escape it like a value.
        let field = escape_unsafe(&shorten(&shorten_quoted(&field.into()), MAX_FIELD));
        EntryError {
            file: file.to_path_buf(),
            field: Some(field),
            message: escape_unsafe(&shorten_quoted(&message.into())),
        }
    }
}

/// Longest field path kept in a message, in characters.
const MAX_FIELD: usize = 200;

/// Characters that must not reach a log line or a terminal as they are:
/// control characters (C0, DEL, C1, which kmsg, terminals and journals
/// interpret) and bidirectional overrides, which reorder what is displayed.
pub fn is_unsafe_in_log(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`is_unsafe_in_log`] character written as `\u{..}`, so
/// a message stays one line that shows what is there. JSON's own escaping
/// (used for non-string values) leaves DEL, C1 controls and bidi overrides
/// as they are.
pub fn escape_unsafe(text: &str) -> String {
    if !text.chars().any(is_unsafe_in_log) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_in_log(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `text`, with `...` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

impl EntryError {
    /// The file for a message: a directory listing can hold any name, so
    /// unsafe characters are escaped.
    fn file_display(&self) -> String {
        escape_unsafe(&self.file.to_string_lossy())
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.file_display(), field, self.message),
            None => write!(f, "{}: {}", self.file_display(), self.message),
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
    fn unsafe_characters_are_escaped() {
        let e = super::EntryError::field(
            std::path::Path::new("/etc/x\u{1b}.json"),
            format!("a.{}\n", "k".repeat(300)),
            "{\"x\u{7f}\u{202e}\": 1}",
        );
        let line = e.to_string();
        assert!(!line.chars().any(super::is_unsafe_in_log), "{line}");
        assert!(line.contains("\\u{1b}") && line.contains("\\u{7f}") && line.contains("\\u{202e}"));
        assert!(line.len() < 300, "{line}");
    }

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
