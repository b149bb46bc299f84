//! Where the CLI's and the helpers' log records go (the generator has its own
//! kmsg logger: the journal is not running when it runs at boot).
//!
//! Under systemd (the helpers' `ExecStartPre=`/`ExecReload=`, the apply unit)
//! stderr is the journal, which `$JOURNAL_STREAM` tells: then records go to the
//! journal natively, with their priority and `SYSLOG_IDENTIFIER`. Run by a
//! person they go to stderr as plain lines (`warning: …`), one write each.
//! `NIXOS_NSPAWN_LOG=journal|stderr` forces either; the maximum level follows
//! `SYSTEMD_LOG_LEVEL` (a name or a syslog number), default `info`.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Environment variable choosing the log target: `journal` or `stderr`.
pub const LOG_ENV: &str = "NIXOS_NSPAWN_LOG";

/// The level named by `SYSTEMD_LOG_LEVEL` (`debug`, `info`, … or 0-7).
pub fn level_from_env(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim) {
        Some("emerg" | "alert" | "crit" | "err" | "0" | "1" | "2" | "3") => LevelFilter::Error,
        Some("warning" | "4") => LevelFilter::Warn,
        Some("notice" | "info" | "5" | "6") => LevelFilter::Info,
        Some("debug" | "7") => LevelFilter::Debug,
        _ => LevelFilter::Info,
    }
}

/// The word for a level on stderr.
pub fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    }
}

struct Stderr {
    /// `Some(ident)`: lines start with `ident: ` (helpers run among other
    /// programs' output); the CLI's own lines need no prefix.
    prefix: Option<&'static str>,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Info => String::new(),
            other => format!("{}: ", level_word(other)),
        };
        let prefix = self.prefix.map(|p| format!("{p}: ")).unwrap_or_default();
        // One write per record, so lines never interleave.
        let line = format!("{prefix}{level}{}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether records go to the journal.
pub fn to_journal() -> bool {
    match std::env::var(LOG_ENV).ok().as_deref() {
        Some("journal") => true,
        Some("stderr") => false,
        _ => systemd_journal_logger::connected_to_journal(),
    }
}

/// Install the logger for the program `ident` (once; later calls do
/// nothing). `prefix_stderr`: start stderr lines with `ident: `. `verbose`:
/// show debug records whatever `SYSTEMD_LOG_LEVEL` says.
pub fn init(ident: &'static str, prefix_stderr: bool, verbose: bool) {
    init_for_unit(ident, prefix_stderr, verbose, None)
}

/// [`init`] for a program that works for one unit (the helpers, run by
/// `systemd-nspawn@NAME.service`): its journal records carry
/// `OBJECT_SYSTEMD_UNIT=UNIT`, which `journalctl -u UNIT` matches for root's
/// records. journald finds a record's own unit (`_SYSTEMD_UNIT`) from the
/// sender's cgroup when it reads the record, and a helper that exits at once
/// (`ExecStartPre=`) is often gone by then: measured, the bootstrap's
/// warning of a restart was missing from `journalctl -u` in one run of two.
pub fn init_for_unit(
    ident: &'static str,
    prefix_stderr: bool,
    verbose: bool,
    unit: Option<String>,
) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        level_from_env(std::env::var("SYSTEMD_LOG_LEVEL").ok().as_deref())
    };
    let journal = to_journal()
        && systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier(ident.to_owned()))
            .map(|j| match unit {
                Some(u) => j.with_extra_fields(vec![("OBJECT_SYSTEMD_UNIT", u)]),
                None => j,
            })
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
    if !journal {
        let prefix = prefix_stderr.then_some(ident);
        let _ = log::set_boxed_logger(Box::new(Stderr { prefix }));
    }
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_from_env(None), LevelFilter::Info);
        assert_eq!(level_from_env(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from_env(Some("4")), LevelFilter::Warn);
        assert_eq!(level_from_env(Some("err")), LevelFilter::Error);
        assert_eq!(level_from_env(Some("bogus")), LevelFilter::Info);
    }
}
