//! What the benchmarks that boot test hosts share (`bench-boot`, `bench-start`,
//! `bench-cli --running`): the integration suite's test hosts and fixtures
//! ([`nixos_nspawn_integration`]), the cleanup guardian, the systemd release to
//! boot, and the built product binaries.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use nixos_nspawn_integration::{debian, guard, host};

/// Call first in `main`: the guardian the suite's cleanup starts is this same
/// executable with `--guardian`.
pub fn guardian_if_asked() {
    if std::env::args().nth(1).as_deref() == Some("--guardian") {
        std::process::exit(guard::guardian_main());
    }
}

/// The guardian for the test hosts of this run (stops them if we are killed).
pub struct Guard;

impl Guard {
    pub fn start() -> Result<Guard> {
        if !rustix::process::geteuid().is_root() {
            bail!("this benchmark boots systemd-nspawn test hosts: run it as root");
        }
        guard::start()?;
        Ok(Guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        guard::finish();
    }
}

/// The OS tree test hosts boot for a release label (`host`: this machine's
/// `/usr`; `debian13`: trixie, systemd 257; `debian12`: bookworm) and its
/// systemd version.
pub fn os_root(label: &str) -> Result<(PathBuf, String)> {
    debian::os_root(label)
}

/// The directory of the product binaries: next to this benchmark's executable
/// (`cargo build --release -p nixos-nspawn-generator -p nixos-nspawn-helpers
/// -p nixos-nspawn -p nixos-nspawn-bench`), or `--bin-dir`.
pub fn bin_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark's directory")?
            .to_path_buf(),
    };
    for b in host::BINARIES {
        if !dir.join(b).exists() {
            bail!(
                "{} is missing: cargo build --release -p nixos-nspawn-generator -p nixos-nspawn-helpers -p nixos-nspawn (or --bin-dir)",
                dir.join(b).display()
            );
        }
    }
    Ok(dir)
}

/// CLOCK_MONOTONIC in microseconds: the clock of systemd's `…TimestampMonotonic`.
pub use nixos_nspawn_integration::watch::monotonic_us;

/// The benchmarks' command line, one argument at a time: `flag(arg, value)`
/// sets what `arg` asks for (`value()` takes the argument after it, or fails
/// with "ARG needs a value") and returns `false` for an argument it does not
/// know, which fails with "unknown argument". `-h`/`--help` prints `usage`
/// and exits 0.
pub fn parse_args(
    usage: &str,
    mut flag: impl FnMut(&str, &mut dyn FnMut() -> Result<String>) -> Result<bool>,
) -> Result<()> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        if !flag(&a, &mut value)? {
            bail!("unknown argument {a:?} (try --help)");
        }
    }
    Ok(())
}

/// A whole number given to `flag` (`_` may group digits: `10_000`).
pub fn number<T: FromStr>(flag: &str, value: String) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .replace('_', "")
        .parse()
        .with_context(|| format!("{flag}: a number"))
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn number_reads_grouped_digits_and_names_the_flag() {
        assert_eq!(number::<usize>("--n", "10_000".into()).unwrap(), 10_000);
        let e = number::<usize>("--runs", "many".into()).unwrap_err();
        assert_eq!(e.to_string(), "--runs: a number");
    }
}
