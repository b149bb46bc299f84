//! Where the helpers' messages go.
//!
//! Under systemd (`ExecStartPre=`, `ExecReload=`) stderr is connected to the
//! journal, which `$JOURNAL_STREAM` tells: then records are sent to the
//! journal natively (with their priority and `SYSLOG_IDENTIFIER`). Run by
//! hand, messages go to stderr as `IDENT: warning: text`, so the person who
//! ran it sees them. `NIXOS_NSPAWN_LOG=journal|stderr` forces either; the
//! maximum level follows `SYSTEMD_LOG_LEVEL` (`debug`, `info`, … or 0-7),
//! default `info`.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Environment variable choosing the log target: `journal` or `stderr`.
pub const LOG_ENV: &str = "NIXOS_NSPAWN_LOG";

/// The level named by `SYSTEMD_LOG_LEVEL` (a name or a syslog number).
pub fn level_from_env(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim) {
        Some("emerg" | "alert" | "crit" | "err" | "0" | "1" | "2" | "3") => LevelFilter::Error,
        Some("warning" | "4") => LevelFilter::Warn,
        Some("notice" | "info" | "5" | "6") => LevelFilter::Info,
        Some("debug" | "7") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

struct Stderr {
    ident: &'static str,
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
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => "debug: ",
        };
        // One write per record, so lines never interleave.
        let line = format!("{}: {level}{}\n", self.ident, record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Install the logger for a helper named `ident`. Never fails: without the
/// journal, stderr is used.
pub fn init(ident: &'static str) {
    let level = level_from_env(std::env::var("SYSTEMD_LOG_LEVEL").ok().as_deref());
    let want_journal = match std::env::var(LOG_ENV).ok().as_deref() {
        Some("journal") => true,
        Some("stderr") => false,
        _ => systemd_journal_logger::connected_to_journal(),
    };
    let installed = want_journal
        && systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier(ident.to_owned()))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
    if !installed {
        let _ = log::set_boxed_logger(Box::new(Stderr { ident }));
    }
    log::set_max_level(level);
}

/// Log an error with its whole chain (`a: b: c`), one line.
pub fn error_chain(e: &anyhow::Error) {
    log::error!("{e:#}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_from_env(None), LevelFilter::Info);
        assert_eq!(level_from_env(Some("debug")), LevelFilter::Trace);
        assert_eq!(level_from_env(Some("4")), LevelFilter::Warn);
        assert_eq!(level_from_env(Some("err")), LevelFilter::Error);
        assert_eq!(level_from_env(Some("bogus")), LevelFilter::Info);
    }
}
