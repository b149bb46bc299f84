//! `nixos-nspawn`, the CLI: imperative containers (create, update, rollback,
//! remove), listing, status, and reconciling running containers with the
//! registry (apply, autostart). The binary only calls [`main_with_args`].
//!
//! Every command runs against a [`Ctx`]: the root every path is resolved
//! under, the [`systemd::Systemd`] implementation (subprocesses, or a fake in
//! tests), the Nix tools, and the writer for data (stdout).
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused (conflict).
//! Commands return the code to exit with (apply returns 1 when an action
//! failed after doing the rest); errors carry theirs (see [`exit_code`]).

use std::ffi::OsString;
use std::fmt;
use std::io::Write;

use anyhow::Result;
use argh::FromArgs as _;

use nixos_nspawn_core::Root;

pub mod args;
pub mod classic;
pub mod commands;
pub mod edit;
pub mod logging;
pub mod nixbuild;
pub mod report;
pub mod scan;
pub mod systemd;
pub mod text;
pub mod txn;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_FOUND: i32 = 3;
pub const EXIT_REFUSED: i32 = 4;

/// An error with its own exit code.
#[derive(Debug)]
pub struct Coded {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

fn coded(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// Bad arguments: exit 2.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    coded(EXIT_USAGE, message)
}
/// A usage error (exit 2) with MESSAGE when more than one of the
/// mutually exclusive flags is GIVEN.
pub fn at_most_one(given: &[bool], message: &str) -> Result<()> {
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(usage(message));
    }
    Ok(())
}
/// No such container or generation: exit 3.
pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    coded(EXIT_NOT_FOUND, message)
}
/// Conflict or refusal: exit 4.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    coded(EXIT_REFUSED, message)
}

/// The exit code for an error: the first [`Coded`] in its chain, 4 for a
/// refused state-directory deletion, else 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if cause
            .downcast_ref::<nixos_nspawn_core::statedir::Refused>()
            .is_some()
        {
            return EXIT_REFUSED;
        }
    }
    EXIT_ERROR
}

/// What every command runs against.
pub struct Ctx<'a> {
    pub root: Root,
    pub sys: &'a dyn systemd::Systemd,
    pub nix: nixbuild::Nix,
    /// Where data goes (stdout).
    pub out: &'a mut dyn Write,
}

impl Ctx<'_> {
    /// Ask systemd, where it is there: `None` without it, and `None` with a
    /// warning `cannot ask systemd WHAT: …` when the question fails.
    pub fn ask_systemd<T>(
        &self,
        what: &str,
        ask: impl FnOnce(&dyn systemd::Systemd) -> Result<T>,
    ) -> Option<T> {
        if !self.sys.available() {
            return None;
        }
        ask(self.sys)
            .map_err(|e| log::warn!("cannot ask systemd {what}: {e:#}"))
            .ok()
    }

    /// Write a line of data (buffered: [`Ctx::flush`] before anything slow).
    pub fn println(&mut self, line: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "{}", line.as_ref())?;
        Ok(())
    }

    /// Flush what was written so far (before long-running work).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }

    /// Write a value as pretty JSON.
    pub fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut *self.out, value)?;
        writeln!(self.out)?;
        Ok(())
    }
}

/// Run one parsed command.
pub fn run(ctx: &mut Ctx, command: args::Command) -> Result<i32> {
    use args::Command as C;
    match command {
        C::Create(a) => commands::create::run(ctx, a),
        C::Update(a) => commands::update::run_update(ctx, a),
        C::Rollback(a) => commands::update::run_rollback(ctx, a),
        C::Remove(a) => commands::remove::run(ctx, a),
        C::List(a) => commands::list::run(ctx, a),
        C::ListGenerations(a) => commands::generations::run(ctx, a),
        C::Status(a) => commands::status::run(ctx, a),
        C::Apply(a) => commands::apply::run_apply(ctx, a),
        C::Autostart(a) => commands::apply::run_autostart(ctx, a),
        C::ImportClassic(a) => commands::classic::run(ctx, a),
        C::Doctor(a) => commands::doctor::run(ctx, a),
        C::CheckRegistry(a) => commands::check::run(ctx, a),
        C::Start(a) => commands::machine::run_start(ctx, a),
        C::Stop(a) => commands::machine::run_stop(ctx, a),
        C::Restart(a) => commands::machine::run_restart(ctx, a),
        C::Terminate(a) => commands::machine::run_terminate(ctx, a),
        C::Login(a) => commands::machine::run_login(ctx, a),
        C::RootLogin(a) => commands::machine::run_root_login(ctx, a),
        C::Run(a) => commands::machine::run_run(ctx, a),
        C::ShowIp(a) => commands::show::run_show_ip(ctx, a),
        C::ShowHostKey(a) => commands::show::run_show_host_key(ctx, a),
    }
}

/// Refuse a command that changes the host when not run as root (`euid`),
/// before it does anything: otherwise it fails half-way with whatever it
/// met first (a Nix daemon socket, a lock file). Commands against another
/// root (`NIXOS_NSPAWN_ROOT`, tests and throwaway trees) are not checked.
pub fn require_root(command: &args::Command, euid: u32, root: &Root) -> Result<()> {
    if euid == 0 || !root.is_host_root() || !command.changes_the_host() {
        return Ok(());
    }
    Err(refused(format!(
        "nixos-nspawn {} must be run as root (it writes /etc/nixos-nspawn and the containers' profiles and starts their units); try sudo nixos-nspawn {}",
        command.name(),
        command.name()
    )))
}

/// Write to stderr in one write, ignoring failure: `eprintln!` panics (and
/// the release build aborts, exit 134) when stderr is a closed pipe
/// (`nixos-nspawn … 2>&1 | head`). The exit code still tells what happened.
pub fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Parse arguments (without the program name). `Err` is the exit code, the
/// usage or help text already printed.
pub fn parse(args: &[OsString]) -> Result<args::Cli, i32> {
    let mut strs = Vec::with_capacity(args.len());
    for a in args {
        match a.to_str() {
            Some(s) => strs.push(s),
            None => {
                to_stderr(&format!("error: argument {a:?} is not valid UTF-8\n"));
                return Err(EXIT_USAGE);
            }
        }
    }
    if strs.first() == Some(&"--version") {
        let line = format!("{}\n", nixos_nspawn_core::version_line("nixos-nspawn"));
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
        return Err(EXIT_OK);
    }
    let joined = nixbuild::join_pair_flags(&strs);
    let strs: Vec<&str> = joined.iter().map(String::as_str).collect();
    match args::Cli::from_args(&["nixos-nspawn"], &strs) {
        Ok(cli) => Ok(cli),
        Err(early) => match early.status {
            Ok(()) => {
                let nl = if early.output.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                let _ = std::io::stdout()
                    .lock()
                    .write_all(format!("{}{nl}", early.output).as_bytes());
                Err(EXIT_OK)
            }
            Err(()) => {
                let nl = if early.output.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                to_stderr(&format!(
                    "{}{nl}Run nixos-nspawn --help (or nixos-nspawn COMMAND --help) for usage.\n",
                    early.output
                ));
                Err(EXIT_USAGE)
            }
        },
    }
}

/// The whole program: parse, run, print errors as a chain, return the exit code.
pub fn main_with_args(args: &[OsString]) -> i32 {
    let cli = match parse(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(cli.verbose || cli.command.verbose());
    let sys = systemd::Subprocess::from_env();
    // Buffered: a list of 1,000 containers is one write, not 13,000.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut ctx = Ctx {
        root: Root::from_env(),
        sys: &sys,
        nix: nixbuild::Nix::from_env(),
        out: &mut out,
    };
    let euid = rustix::process::geteuid().as_raw();
    let result =
        require_root(&cli.command, euid, &ctx.root).and_then(|()| run(&mut ctx, cli.command));
    let code = match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing to tell anyone.
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            let _ = ctx.out.flush();
            if logging::to_journal() {
                log::error!("{e:#}");
            }
            to_stderr(&format!("{}\n", logging::error_text(&e)));
            exit_code(&e)
        }
    };
    match ctx.out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe && code == EXIT_OK => {
            to_stderr(&format!("error: writing to stdout: {e}\n"));
            EXIT_ERROR
        }
        _ => code,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_flag() {
        assert!(at_most_one(&[false, true, false], "x").is_ok());
        assert!(at_most_one(&[], "x").is_ok());
        let err = at_most_one(&[true, false, true], "give at most one of -a and -b").unwrap_err();
        assert_eq!(exit_code(&err), EXIT_USAGE);
        assert_eq!(err.to_string(), "give at most one of -a and -b");
    }

    fn command(args: &[&str]) -> args::Command {
        let mut all = vec!["nixos-nspawn"];
        all.extend(args);
        parse(&all[1..].iter().map(OsString::from).collect::<Vec<_>>())
            .unwrap()
            .command
    }

    #[test]
    fn only_root_changes_the_host() {
        let host = Root::default();
        let create = command(&["create", "web", "--system", "/x"]);
        let e = require_root(&create, 1000, &host).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_REFUSED);
        assert!(
            e.to_string()
                .starts_with("nixos-nspawn create must be run as root"),
            "{e}"
        );
        require_root(&create, 0, &host).unwrap();
        // Another root is a throwaway tree: anyone may.
        require_root(&create, 1000, &Root::new("/tmp/x")).unwrap();
        for reading in [
            &["list"][..],
            &["status", "web"],
            &["list-generations", "web"],
            &["doctor"],
            &["apply", "--dry-run"],
            &["autostart", "-n"],
        ] {
            require_root(&command(reading), 1000, &host).unwrap();
        }
        for changing in [
            &["apply"][..],
            &["autostart"],
            &["remove", "web"],
            &["update", "web", "--system", "/x"],
            &["rollback", "web"],
            &["import-classic", "web"],
        ] {
            assert!(
                require_root(&command(changing), 1000, &host).is_err(),
                "{changing:?}"
            );
        }
    }
}
