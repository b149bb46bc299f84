//! Where the CLI's messages go. Data (lists, plans, JSON) goes to stdout;
//! progress, warnings and errors are log records. Run by a person they go to
//! stderr as plain lines (`warning: …`); run by systemd (the NixOS module's
//! apply unit: stderr is the journal, `$JOURNAL_STREAM` says so) they go to
//! the journal natively with their priority. `NIXOS_NSPAWN_LOG=journal|stderr`
//! forces either; `-v` or `SYSTEMD_LOG_LEVEL=debug` shows debug records.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

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
        let line = format!("{level}{}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn level_from_env(value: Option<&str>) -> LevelFilter {
    match value.map(str::trim) {
        Some("emerg" | "alert" | "crit" | "err" | "0" | "1" | "2" | "3") => LevelFilter::Error,
        Some("warning" | "4") => LevelFilter::Warn,
        Some("debug" | "7") => LevelFilter::Debug,
        _ => LevelFilter::Info,
    }
}

/// Whether records go to the journal.
pub fn to_journal() -> bool {
    match std::env::var("NIXOS_NSPAWN_LOG").ok().as_deref() {
        Some("journal") => true,
        Some("stderr") => false,
        _ => systemd_journal_logger::connected_to_journal(),
    }
}

/// Install the logger (once; later calls do nothing).
pub fn init(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        level_from_env(std::env::var("SYSTEMD_LOG_LEVEL").ok().as_deref())
    };
    let journal = to_journal()
        && systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier("nixos-nspawn".to_owned()))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
    if !journal {
        let _ = log::set_boxed_logger(Box::new(Stderr));
    }
    log::set_max_level(level);
}

/// Print an error as a chain: `error: top` then `  caused by: …` per cause.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = format!("error: {e}");
    for cause in e.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain() {
        let e = anyhow::anyhow!("disk full")
            .context("writing web.json")
            .context("creating web");
        assert_eq!(
            error_text(&e),
            "error: creating web\n  caused by: writing web.json\n  caused by: disk full"
        );
        assert_eq!(level_from_env(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from_env(None), LevelFilter::Info);
    }
}
