//! A tiny [`log::Log`] that writes to the kernel log (`/dev/kmsg`), where a
//! generator's messages belong: the journal is not running yet at boot.
//!
//! Each message is one `write(2)` of `<N>nixos-nspawn-generator: text\n`, `N`
//! being the syslog priority, so records never interleave. Where `/dev/kmsg`
//! cannot be opened, when running against a test root (`NIXOS_NSPAWN_ROOT`) or
//! with `NIXOS_NSPAWN_LOG=stderr`, messages go to stderr instead as
//! `nixos-nspawn-generator: warning: text` — or to `/dev/console` when stderr
//! is `/dev/null`, as systemd leaves it for generators. The maximum level follows
//! `SYSTEMD_LOG_LEVEL` (a name like `debug` or a number 0-7), default `info`.

use std::fs::File;
use std::io::Write as _;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nixos_nspawn_core::logging::level_from_env;

pub const IDENT: &str = "nixos-nspawn-generator";

/// Environment variable choosing the log target: `kmsg` or `stderr`.
pub const LOG_ENV: &str = "NIXOS_NSPAWN_LOG";

enum Target {
    Kmsg(Mutex<File>),
    /// Where stderr is /dev/null (systemd runs generators that way) and there is
    /// no /dev/kmsg (a host that is itself a container): like systemd's own
    /// generators, fall back to the console.
    Console(Mutex<File>),
    Stderr,
}

/// Whether stderr goes nowhere (the character device /dev/null).
fn stderr_is_null() -> bool {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let (Ok(err), Ok(null)) = (
        std::fs::metadata("/proc/self/fd/2"),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    err.file_type().is_char_device() && err.rdev() == null.rdev()
}

fn open_console() -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        // Never make the console our controlling terminal.
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open("/dev/console")
        .ok()
}

pub struct Logger {
    target: Target,
    max: LevelFilter,
}

/// The syslog priority of a level (sd-daemon(3)).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The word used for a level on stderr and in golden logs (the CLI's and the
/// helpers').
pub use nixos_nspawn_core::logging::level_word;

impl Logger {
    /// Pick the target as the module docs say. `test_root`: running against a
    /// root other than `/`.
    pub fn new(test_root: bool) -> Logger {
        let wanted = std::env::var(LOG_ENV).unwrap_or_default();
        let max = level_from_env(std::env::var("SYSTEMD_LOG_LEVEL").ok().as_deref());
        let use_kmsg = match wanted.as_str() {
            "stderr" => false,
            "kmsg" => true,
            _ => !test_root,
        };
        let target = if use_kmsg {
            match std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
                Ok(f) => Target::Kmsg(Mutex::new(f)),
                Err(_) if stderr_is_null() => match open_console() {
                    Some(f) => Target::Console(Mutex::new(f)),
                    None => Target::Stderr,
                },
                Err(_) => Target::Stderr,
            }
        } else {
            Target::Stderr
        };
        Logger { target, max }
    }

    /// Install as the global logger. Harmless when one is installed already.
    pub fn install(self) {
        let max = self.max;
        // Installed once per process, for its whole life.
        if log::set_logger(Box::leak(Box::new(self))).is_ok() {
            log::set_max_level(max);
        }
    }
}

/// The kernel refuses /dev/kmsg records over about 1 KiB (EINVAL), and at
/// boot the stderr fallback goes nowhere: cut long messages instead.
const KMSG_MAX: usize = 976;

fn kmsg_record(priority: u8, text: &str) -> String {
    let mut line = format!("<{priority}>{IDENT}: ");
    let room = KMSG_MAX.saturating_sub(line.len() + 1);
    if text.len() <= room {
        line.push_str(text);
    } else {
        let mut cut = room.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        line.push_str(&text[..cut]);
        line.push_str("...");
    }
    line.push('\n');
    line
}

/// One line per record: line breaks inside a message would start a new kmsg
/// record without our prefix, so they become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect()
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.max
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = one_line(&record.args().to_string());
        match &self.target {
            Target::Kmsg(file) => {
                let line = kmsg_record(priority(record.level()), &text);
                if let Ok(mut f) = file.lock() {
                    // kmsg takes one record per write; a failed write falls
                    // back to stderr rather than losing the message.
                    if f.write_all(line.as_bytes()).is_ok() {
                        return;
                    }
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "{IDENT}: {}: {text}",
                    level_word(record.level())
                );
            }
            Target::Console(file) => {
                let line = format!("{IDENT}: {}: {text}\n", level_word(record.level()));
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Target::Stderr => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "{IDENT}: {}: {text}",
                    level_word(record.level())
                );
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(one_line("a\nb"), "a b");
        assert_eq!(kmsg_record(4, "short"), format!("<4>{IDENT}: short\n"));
        let long = kmsg_record(4, &"é".repeat(2000));
        assert!(
            long.len() <= KMSG_MAX && long.ends_with("...\n"),
            "{}",
            long.len()
        );
    }
}
