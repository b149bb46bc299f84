//! Writing (and, for tests, reading back) the INI-style files systemd reads:
//! unit drop-ins, `.nspawn`, `.network` and `.netdev` files.
//!
//! A registry value can never change a file's structure: values with line
//! breaks, NUL or other control characters, surrounding whitespace (systemd
//! trims it) or a trailing backslash (a line continuation) are rejected, and in
//! unit files `%` is doubled so no value becomes a specifier (systemd.syntax(7),
//! systemd.unit(5)). `.nspawn` and networkd files expand no specifiers, so there
//! `%` stays as it is.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Unit files and drop-ins: specifiers are expanded, so `%` is escaped.
    Unit,
    /// `.nspawn`, `.network`, `.netdev`: no specifier expansion.
    Plain,
}

/// Check that `value` can stand after `Key=` on one line and be read back
/// unchanged. The message says what is wrong, for an error naming the field.
pub fn check_value(value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        let what = match c {
            '\n' | '\r' => "a line break",
            '\0' => "a NUL byte",
            _ => "a control character",
        };
        return Err(format!(
            "{} contains {what} ({c:?}), which cannot be written to a unit file",
            crate::error::show_value(&serde_json::Value::String(value.into()))
        ));
    }
    if value.trim() != value {
        return Err(format!(
            "{value:?} has leading or trailing whitespace, which systemd would strip"
        ));
    }
    if value.ends_with('\\') {
        return Err(format!(
            "{value:?} ends with a backslash, which systemd reads as a line continuation"
        ));
    }
    Ok(())
}

/// Section and key names: a letter, then letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return Err(format!("{name:?} is not a valid section or key name")),
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid section or key name"))
    }
}

/// Unit file settings that expand no specifiers but take a literal `%` (a
/// percentage, systemd.resource-control(5)): `50%%` there is an invalid value,
/// so `%` is written as it is.
pub const LITERAL_PERCENT_KEYS: &[&str] = &[
    "CPUQuota",
    "MemoryMin",
    "MemoryLow",
    "MemoryHigh",
    "MemoryMax",
    "MemorySwapMax",
    "MemoryZSwapMax",
    "MemoryLimit",
    "StartupMemoryLow",
    "StartupMemoryHigh",
    "StartupMemoryMax",
    "StartupMemorySwapMax",
    "StartupMemoryZSwapMax",
    "DefaultMemoryMin",
    "DefaultMemoryLow",
    "DefaultStartupMemoryLow",
    "TasksMax",
    "ManagedOOMMemoryPressureLimit",
];

/// Whether `key` expands specifiers in `dialect` (so `%` must be doubled).
pub fn expands_specifiers(key: &str, dialect: Dialect) -> bool {
    dialect == Dialect::Unit && !LITERAL_PERCENT_KEYS.contains(&key)
}

/// Escape one checked value for `dialect`.
pub fn escape_value(value: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Unit => value.replace('%', "%%"),
        Dialect::Plain => value.to_owned(),
    }
}

/// Quote one argument of a unit file command line (`ExecStart=` and friends) so
/// that systemd passes exactly `arg` to the program: specifiers (`%`), variable
/// expansion (`$`), backslashes and quotes are escaped, and the word is quoted
/// when it is empty or contains whitespace or a quote.
pub fn quote_exec_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    let needs_quotes = arg.is_empty()
        || arg == ";"
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'');
    if needs_quotes {
        out.push('"');
    }
    for c in arg.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
    out
}

/// Quote one `Environment=` assignment of a unit file. systemd removes the
/// quotes and resolves C escapes there but expands no variables
/// (systemd.exec(5)), so unlike [`quote_exec_arg`] `$` stays as it is; `%` is
/// left to [`IniFile::set`], which escapes it.
pub fn quote_env_assignment(assignment: &str) -> String {
    let mut out = String::with_capacity(assignment.len() + 2);
    out.push('"');
    for c in assignment.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// systemd's `LONG_LINE_MAX`: a file with a line this long (without its line
/// feed) or longer is refused as a whole ("Line too long").
pub const LONG_LINE_MAX: usize = 1024 * 1024;

/// An INI file being built, written straight into one string (no per-line
/// allocations). Values pushed through [`IniFile::set`] must already have
/// passed [`check_value`] (the registry parser guarantees it); `set` re-checks
/// and reports instead of writing a broken file. Comments come first, then
/// sections; assignments go into the last section started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniFile {
    dialect: Dialect,
    out: String,
    has_header: bool,
    sections: usize,
}

impl IniFile {
    pub fn new(dialect: Dialect) -> Self {
        IniFile {
            dialect,
            out: String::with_capacity(512),
            has_header: false,
            sections: 0,
        }
    }

    /// A comment line at the top of the file. Comments are ours, never registry
    /// values, but line breaks are still refused.
    pub fn comment(&mut self, text: &str) -> Result<(), String> {
        if text.contains(['\n', '\r', '\0']) {
            return Err(format!("comment {text:?} contains a line break"));
        }
        if self.sections > 0 {
            return Err(format!("comment {text:?} after a section"));
        }
        self.out.push_str("# ");
        self.out.push_str(text);
        self.out.push('\n');
        self.has_header = true;
        Ok(())
    }

    /// Start a new section (sections may repeat, e.g. `[Address]`).
    pub fn section(&mut self, name: &str) -> Result<(), String> {
        check_name(name)?;
        if self.sections > 0 || self.has_header {
            self.out.push('\n');
        }
        self.out.push('[');
        self.out.push_str(name);
        self.out.push_str("]\n");
        self.sections += 1;
        Ok(())
    }

    /// `key=value` in the current section, escaped for the dialect.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        check_name(key)?;
        check_value(value).map_err(|e| format!("{key}=: {e}"))?;
        let escape = expands_specifiers(key, self.dialect) && value.contains('%');
        self.push_with(key, |out| {
            if escape {
                out.push_str(&escape_value(value, Dialect::Unit));
            } else {
                out.push_str(value);
            }
        })
    }

    /// `key=` followed by a command line whose arguments are quoted one by one.
    pub fn set_exec(&mut self, key: &str, argv: &[&str]) -> Result<(), String> {
        check_name(key)?;
        if self.dialect != Dialect::Unit {
            return Err(format!("{key}=: command lines only exist in unit files"));
        }
        for arg in argv {
            if arg.contains(['\n', '\r', '\0']) {
                return Err(format!("{key}=: argument {arg:?} contains a line break"));
            }
        }
        self.push_with(key, |out| {
            for (i, a) in argv.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&quote_exec_arg(a));
            }
        })
    }

    /// An empty assignment, which resets a list setting in systemd.
    pub fn reset(&mut self, key: &str) -> Result<(), String> {
        check_name(key)?;
        self.push_with(key, |_| {})
    }

    /// `key=` and what `value` writes, as one line of the current section.
    fn push_with(&mut self, key: &str, value: impl FnOnce(&mut String)) -> Result<(), String> {
        if self.sections == 0 {
            return Err(format!("{key}= outside of any section"));
        }
        let start = self.out.len();
        self.out.push_str(key);
        self.out.push('=');
        value(&mut self.out);
        let len = self.out.len() - start;
        if len >= LONG_LINE_MAX {
            self.out.truncate(start);
            // systemd would not read the file at all (so a drop-in would
            // silently not apply); say so instead.
            return Err(format!(
                "{key}= would be a line of {len} bytes; systemd reads lines of at most {}",
                LONG_LINE_MAX - 1
            ));
        }
        self.out.push('\n');
        Ok(())
    }

    pub fn render(&self) -> String {
        self.out.clone()
    }

    /// The text, without a copy.
    pub fn into_string(self) -> String {
        self.out
    }
}

/// A parsed INI file: sections in order, each with its assignments in order,
/// values unescaped for the dialect. Used by tests and the fuzzer to check that
/// a rendered file reads back with exactly the sections and keys intended.
pub type Parsed = Vec<(String, Vec<(String, String)>)>;

/// Parse the subset of systemd's INI syntax that [`IniFile`] writes, strictly:
/// anything else (continuation lines, assignments outside a section, garbage)
/// is an error.
pub fn parse(text: &str, dialect: Dialect) -> Result<Parsed, String> {
    let mut out: Parsed = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(format!("line {}: continuation line", n + 1));
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: bad section header", n + 1))?;
            out.push((name.to_owned(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not an assignment: {line:?}", n + 1))?;
        let value = if expands_specifiers(k.trim(), dialect) {
            unescape_specifiers(v.trim()).map_err(|e| format!("line {}: {e}", n + 1))?
        } else {
            v.trim().to_owned()
        };
        match out.last_mut() {
            Some((_, entries)) => entries.push((k.trim().to_owned(), value)),
            None => return Err(format!("line {}: assignment outside a section", n + 1)),
        }
    }
    Ok(out)
}

/// Undo `%%`; any other specifier means a value could have been expanded.
fn unescape_specifiers(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => return Err(format!("unescaped specifier %{}", other.unwrap_or(' '))),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Split a command line the way systemd does for `ExecStart=` (after specifier
/// unescaping): quotes, backslash escapes and `$$`. Only what `quote_exec_arg`
/// produces needs to be understood; used by tests.
pub fn split_exec(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut arg = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
        }
        loop {
            match chars.next() {
                None if quoted => return Err("unterminated quote".into()),
                None => break,
                Some('"') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => match chars.next() {
                    Some(c) => arg.push(c),
                    None => return Err("trailing backslash".into()),
                },
                Some('$') => match chars.next() {
                    Some('$') => arg.push('$'),
                    _ => return Err("unescaped $".into()),
                },
                Some(c) => arg.push(c),
            }
        }
        args.push(arg);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_structure_changes() {
        // (value, accepted)
        for (value, ok) in [
            ("a\nb", false),
            ("a\rb", false),
            ("a\0b", false),
            (" a", false),
            ("a ", false),
            ("a\\", false),
            ("\u{7f}", false),
            ("a\tb\n", false),
            ("", true),
            ("a b", true),
            ("100%", true),
            ("$HOME", true),
            ("\"q\"", true),
            ("ä€", true),
            ("a\\b", true),
            ("[Section]", true),
            ("#x", true),
        ] {
            assert_eq!(check_value(value).is_ok(), ok, "{value:?}");
        }
    }

    #[test]
    fn unit_values_round_trip_with_specifiers_escaped() {
        let mut f = IniFile::new(Dialect::Unit);
        f.comment("hello").unwrap();
        f.section("Service").unwrap();
        f.set("Description", "100% %n $HOME \\ \"q\"").unwrap();
        let text = f.render();
        assert!(
            text.contains("Description=100%% %%n $HOME \\ \"q\"\n"),
            "{text}"
        );
        let parsed = parse(&text, Dialect::Unit).unwrap();
        assert_eq!(
            parsed,
            vec![(
                "Service".to_string(),
                vec![(
                    "Description".to_string(),
                    "100% %n $HOME \\ \"q\"".to_string()
                )]
            )]
        );
    }

    #[test]
    fn percentages_stay_literal_in_units() {
        let mut f = IniFile::new(Dialect::Unit);
        f.section("Service").unwrap();
        f.set("CPUQuota", "50%").unwrap();
        f.set("TasksMax", "10%").unwrap();
        f.set("Description", "50%").unwrap();
        let text = f.render();
        assert_eq!(
            text,
            "[Service]\nCPUQuota=50%\nTasksMax=10%\nDescription=50%%\n"
        );
        let parsed = parse(&text, Dialect::Unit).unwrap();
        let values: Vec<&str> = parsed[0].1.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["50%", "10%", "50%"]);
    }

    #[test]
    fn plain_values_keep_percent() {
        let mut f = IniFile::new(Dialect::Plain);
        f.section("Network").unwrap();
        f.set("Description", "50%").unwrap();
        assert_eq!(f.render(), "[Network]\nDescription=50%\n");
    }

    #[test]
    fn exec_args_round_trip() {
        let cases: &[&[&str]] = &[
            &["/bin/x", "web"],
            &[
                "/bin/x",
                "a b",
                "",
                "%n",
                "$HOME",
                "back\\slash",
                "q\"uote",
                "it's",
                ";",
            ],
        ];
        for argv in cases {
            let mut f = IniFile::new(Dialect::Unit);
            f.section("Service").unwrap();
            f.set_exec("ExecStart", argv).unwrap();
            let parsed = parse(&f.render(), Dialect::Unit).unwrap();
            let line = &parsed[0].1[0].1;
            assert_eq!(&split_exec(line).unwrap(), argv);
        }
    }

    #[test]
    fn env_assignments_keep_dollars() {
        let mut f = IniFile::new(Dialect::Unit);
        f.section("Service").unwrap();
        let v = quote_env_assignment(r#"R=/a b/$x%y"q\z"#);
        f.set("Environment", &v).unwrap();
        assert_eq!(
            f.render(),
            "[Service]\nEnvironment=\"R=/a b/$x%%y\\\"q\\\\z\"\n"
        );
    }

    #[test]
    fn lines_systemd_cannot_read_are_refused() {
        let mut f = IniFile::new(Dialect::Unit);
        f.section("Unit").unwrap();
        // 600 KiB of '%' is 1.2 MiB escaped: systemd would drop the whole file.
        let err = f.set("Description", &"%".repeat(600 << 10)).unwrap_err();
        assert!(err.contains("would be a line of 1228812 bytes"), "{err}");
        let max = "x".repeat(LONG_LINE_MAX - 1 - "Description=".len());
        f.set("Description", &max).unwrap();
        assert!(f.set("Description", &format!("{max}x")).is_err());
    }

    #[test]
    fn names_are_checked() {
        let mut f = IniFile::new(Dialect::Plain);
        assert!(f.set("A", "b").is_err(), "no section yet");
        assert!(f.section("Bad]").is_err());
        f.section("Network").unwrap();
        assert!(f.set("A=B", "c").is_err());
        assert!(f.set("", "c").is_err());
        assert!(f.set("X-Custom_1", "c").is_ok());
    }
}
