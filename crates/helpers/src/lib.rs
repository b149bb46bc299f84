//! The two helpers of `systemd-nspawn@NAME.service`, as a library the tests
//! reach; the binaries only parse their argument and call [`main_bootstrap`] /
//! [`main_activate`].
//!
//! - [`bootstrap`] (`ExecStartPre=nixos-nspawn-bootstrap NAME`): the rootfs
//!   skeleton, safe against whatever the container's root planted there; the
//!   per-container profile; the container's `/run` files; the applied record.
//! - [`activate`] (`ExecReload=nixos-nspawn-activate NAME`): switch the profile
//!   and run `switch-to-configuration test` inside the running container,
//!   through its own service manager (`systemd-run --machine=NAME`).
//!
//! See `docs/helpers.md`.

use std::ffi::OsString;
use std::path::PathBuf;

use nixos_nspawn_core::EntryError;

pub mod activate;
pub mod bootstrap;
pub mod idmap;
pub mod logging;

/// External programs the helpers run, found as [`nixos_nspawn_core::hosttools`]
/// says (`$NIXOS_NSPAWN_MACHINECTL`, …, else fixed at build time, else in
/// `PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `nix-store`, for the closure of `system` when `sharedNix` is off.
    pub nix_store: PathBuf,
    /// `networkctl`, to reload networkd after the bootstrap wrote network files.
    pub networkctl: PathBuf,
    /// `machinectl`, to ask systemd-machined for a container's leader.
    pub machinectl: PathBuf,
    /// `systemd-run`, to run the activation command through the container's
    /// own service manager (`--machine=NAME`).
    pub systemd_run: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        use nixos_nspawn_core::hosttools::{MACHINECTL, NETWORKCTL, NIX_STORE, SYSTEMD_RUN};
        Tools {
            nix_store: NIX_STORE.path(),
            networkctl: NETWORKCTL.path(),
            machinectl: MACHINECTL.path(),
            systemd_run: SYSTEMD_RUN.path(),
        }
    }
}

/// Why a helper failed; each is reported in full and maps to an exit status.
#[derive(Debug)]
pub enum Failure {
    /// The registry entry is missing or invalid: every problem found.
    Entry(Vec<EntryError>),
    /// Anything else, with its context chain.
    Error(anyhow::Error),
    /// The activation command ran and failed: its exit status (128 + signal
    /// when killed) is the helper's, and the message says what was undone.
    Status(i32, String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Error(e)
    }
}

impl Failure {
    /// Log every problem (errors as a chain).
    pub fn report(&self) {
        match self {
            Failure::Entry(errors) => {
                for e in errors {
                    log::error!("{e}");
                }
            }
            Failure::Error(e) => logging::error_chain(e),
            Failure::Status(_, msg) => log::error!("{msg}"),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Entry(_) | Failure::Error(_) => 1,
            Failure::Status(code, _) => *code,
        }
    }
}

/// What a helper's command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Args {
    Name(String),
    /// `--help`: the usage text, on stdout, exit 0.
    Help(String),
    /// `--version`, exit 0.
    Version,
}

/// Parse the single `NAME` argument (or `--help`, `--version`). `Err`
/// carries the usage message (exit 2).
pub fn parse_name(exe: &str, what: &str, args: &[OsString]) -> Result<Args, String> {
    let usage = format!(
        "usage: {exe} NAME\n       {exe} --help | --version\n{what}\nPaths are resolved under $NIXOS_NSPAWN_ROOT (default /). See {exe}(8)."
    );
    match args {
        [a] if a == "--help" || a == "-h" => Ok(Args::Help(usage)),
        [a] if a == "--version" => Ok(Args::Version),
        [a] => a
            .to_str()
            .filter(|s| !s.starts_with('-'))
            .map(|s| Args::Name(s.to_owned()))
            .ok_or(usage),
        _ => Err(usage),
    }
}

/// A helper's main: its argument, its logger, then `body` for the root
/// `NIXOS_NSPAWN_ROOT` names and the build's tools; the exit status.
fn run_main(
    ident: &'static str,
    what: &str,
    args: &[OsString],
    body: impl FnOnce(&nixos_nspawn_core::Root, &str, &Tools) -> Result<(), Failure>,
) -> i32 {
    let name = match parse_name(ident, what, args) {
        Ok(Args::Name(n)) => n,
        Ok(Args::Help(usage)) => {
            println!("{usage}");
            return 0;
        }
        Ok(Args::Version) => {
            println!("{}", nixos_nspawn_core::version_line(ident));
            return 0;
        }
        Err(usage) => {
            eprintln!("{usage}");
            return 2;
        }
    };
    logging::init(ident, &name);
    match body(
        &nixos_nspawn_core::Root::from_env(),
        &name,
        &Tools::default(),
    ) {
        Ok(()) => 0,
        Err(f) => {
            f.report();
            f.exit_code()
        }
    }
}

/// `nixos-nspawn-bootstrap NAME`: exit status 0, 1 (error, reported), 2 (usage).
pub fn main_bootstrap(args: &[OsString]) -> i32 {
    run_main(
        bootstrap::IDENT,
        "Prepares container NAME before systemd-nspawn starts it (ExecStartPre=).",
        args,
        |root, name, tools| bootstrap::bootstrap(root, name, tools).map(|r| r.log()),
    )
}

/// `nixos-nspawn-activate NAME`: exit status 0, 1 (error, reported), 2
/// (usage), or the activation command's own.
pub fn main_activate(args: &[OsString]) -> i32 {
    run_main(
        activate::IDENT,
        "Activates the registry's system inside running container NAME (ExecReload=).",
        args,
        |root, name, tools| activate::activate(root, name, tools).map(|r| r.log()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        assert_eq!(
            parse_name("x", "", &a(&["web"])).unwrap(),
            Args::Name("web".into())
        );
        assert!(parse_name("x", "", &a(&[])).is_err());
        assert!(parse_name("x", "", &a(&["a", "b"])).is_err());
        assert!(
            matches!(parse_name("x", "", &a(&["--help"])), Ok(Args::Help(u)) if u.contains("usage: x NAME"))
        );
        assert_eq!(parse_name("x", "", &a(&["--version"])), Ok(Args::Version));
        assert!(parse_name("x", "", &a(&["-v"])).is_err());
    }
}
