//! The host's programs, for every binary: how each is found, how it is run
//! and its output captured, and the one query every binary makes of
//! systemd-machined (a container's leader).
//!
//! A program is `$NIXOS_NSPAWN_<PROGRAM>` when set (an empty value: not
//! available), else the path fixed at build time by the same variable (the
//! Nix package sets absolute store paths), else its name, looked up in
//! `PATH`. Only machine-readable output is parsed (`--value`, `--json`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context as _, Result};

/// A host program the binaries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The environment variable that overrides it (and fixes it at build time).
    pub env: &'static str,
    /// The path fixed at build time, if any.
    pub built: Option<&'static str>,
    /// Its name, looked up in `PATH` otherwise.
    pub name: &'static str,
}

macro_rules! program {
    ($id:ident, $env:literal, $name:literal) => {
        pub const $id: Program = Program {
            env: $env,
            built: option_env!($env),
            name: $name,
        };
    };
}

program!(SYSTEMCTL, "NIXOS_NSPAWN_SYSTEMCTL", "systemctl");
program!(NETWORKCTL, "NIXOS_NSPAWN_NETWORKCTL", "networkctl");
program!(MACHINECTL, "NIXOS_NSPAWN_MACHINECTL", "machinectl");
program!(BUSCTL, "NIXOS_NSPAWN_BUSCTL", "busctl");
program!(SYSTEMD_RUN, "NIXOS_NSPAWN_SYSTEMD_RUN", "systemd-run");
program!(NIX, "NIXOS_NSPAWN_NIX", "nix");
program!(NIX_BUILD, "NIXOS_NSPAWN_NIX_BUILD", "nix-build");
program!(NIX_STORE, "NIXOS_NSPAWN_NIX_STORE", "nix-store");
program!(
    NIX_INSTANTIATE,
    "NIXOS_NSPAWN_NIX_INSTANTIATE",
    "nix-instantiate"
);
program!(CP, "NIXOS_NSPAWN_CP", "cp");

impl Program {
    /// The build's choice: the path fixed at build time, else the name.
    pub fn default_path(&self) -> PathBuf {
        PathBuf::from(self.built.unwrap_or(self.name))
    }

    /// `$ENV` when set, `None` when it is set but empty (not available),
    /// else [`Program::default_path`].
    pub fn lookup(&self) -> Option<PathBuf> {
        lookup_in(std::env::var_os(self.env), self)
    }

    /// Like [`Program::lookup`], an empty value counting as unset.
    pub fn path(&self) -> PathBuf {
        self.lookup().unwrap_or_else(|| self.default_path())
    }
}

fn lookup_in(value: Option<std::ffi::OsString>, p: &Program) -> Option<PathBuf> {
    match value {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(p.default_path()),
    }
}

/// Whether systemd is the running service manager (`sd_booted(3)`).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Run `program` with `args`, no stdin, both outputs captured. Fails only
/// when it cannot be started ("running PROGRAM").
pub fn output<S: AsRef<str>>(program: &Path, args: &[S]) -> Result<Output> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    log::debug!("running {} {}", program.display(), args.join(" "));
    Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))
}

/// The error for a program that ran and failed: `PROGRAM ARGS failed
/// (STATUS): STDERR`.
pub fn failed<S: AsRef<str>>(program: &Path, args: &[S], out: &Output) -> anyhow::Error {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::anyhow!(
        "{} {} failed ({}){}{}",
        program.display(),
        args.join(" "),
        out.status,
        if err.trim().is_empty() { "" } else { ": " },
        err.trim()
    )
}

/// Run a program and return its stdout; a failure says what ran, its status
/// and its stderr.
pub fn capture<S: AsRef<str>>(program: &Path, args: &[S]) -> Result<String> {
    let out = output(program, args)?;
    if !out.status.success() {
        return Err(failed(program, args, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a program whose messages are for the user (systemctl, a Nix build's
/// progress): stderr passed through, stdout discarded.
pub fn run_visible<S: AsRef<str>>(program: &Path, args: &[S]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    log::debug!("running {} {}", program.display(), args.join(" "));
    let status = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", program.display(), args.join(" "));
    }
    Ok(())
}

/// What systemd-machined says about a container's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineLeader {
    /// The leader's PID (in the host's PID namespace).
    Pid(u32),
    /// machined has no such machine: its words.
    NoMachine(String),
}

/// The leader of machine `name`: `machinectl show NAME --property=Leader
/// --value`. An error when machinectl cannot run, fails otherwise, or
/// prints no leader's PID.
pub fn leader(machinectl: &Path, name: &str) -> Result<MachineLeader> {
    let args = ["show", name, "--property=Leader", "--value"];
    let out = output(machinectl, &args)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No machine") {
            return Ok(MachineLeader::NoMachine(stderr.trim().to_owned()));
        }
        return Err(failed(machinectl, &args, &out));
    }
    parse_leader(&String::from_utf8_lossy(&out.stdout)).map(MachineLeader::Pid)
}

/// `machinectl show -p Leader --value` output: one PID greater than 1 (0
/// means none, and 1 is the init of the namespace asking, never a
/// container's leader).
pub fn parse_leader(text: &str) -> Result<u32> {
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => bail!("{:?} is not a container leader's PID", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_the_variable_then_the_build_then_the_name() {
        let p = Program {
            env: "UNUSED",
            built: None,
            name: "machinectl",
        };
        assert_eq!(lookup_in(None, &p), Some(PathBuf::from("machinectl")));
        assert_eq!(lookup_in(Some("".into()), &p), None, "empty: not available");
        assert_eq!(
            lookup_in(Some("/opt/mc".into()), &p),
            Some(PathBuf::from("/opt/mc"))
        );
        let built = Program {
            built: Some("/nix/store/x/bin/machinectl"),
            ..p
        };
        assert_eq!(
            lookup_in(None, &built),
            Some(PathBuf::from("/nix/store/x/bin/machinectl"))
        );
        assert_eq!(
            built.default_path(),
            PathBuf::from("/nix/store/x/bin/machinectl")
        );
    }

    #[test]
    fn leader_pids() {
        assert_eq!(parse_leader("1234\n").unwrap(), 1234);
        for bad in ["", "0", "1", "-3", "12 13", "x"] {
            assert!(parse_leader(bad).is_err(), "{bad:?}");
        }
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("machinectl");
        crate::testing::write_script(&p, format!("#!/bin/sh\n{body}\n"));
        p
    }

    #[test]
    fn leader_asks_machined_for_the_value_only() {
        let d = tempfile::tempdir().unwrap();
        let m = script(
            d.path(),
            r#"[ "$*" = "show web --property=Leader --value" ] && echo 4242 && exit 0; echo "No machine '$2' known" >&2; exit 1"#,
        );
        assert_eq!(leader(&m, "web").unwrap(), MachineLeader::Pid(4242));
        assert_eq!(
            leader(&m, "db").unwrap(),
            MachineLeader::NoMachine("No machine 'db' known".into())
        );
        let m = script(d.path(), "echo 'Failed to connect to bus' >&2; exit 1");
        let e = leader(&m, "web").unwrap_err().to_string();
        assert!(
            e.ends_with("show web --property=Leader --value failed (exit status: 1): Failed to connect to bus"),
            "{e}"
        );
        let e = leader(&d.path().join("none"), "web")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("running "), "{e}");
    }

    #[test]
    fn capture_reports_status_and_stderr() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "echo out; echo oops >&2; [ \"$1\" = ok ]");
        assert_eq!(capture(&p, &["ok"]).unwrap(), "out\n");
        let e = capture(&p, &["no"]).unwrap_err().to_string();
        assert!(
            e.ends_with("machinectl no failed (exit status: 1): oops"),
            "{e}"
        );
        assert!(run_visible(&p, &["ok"]).is_ok());
        assert!(run_visible(&p, &["no"]).is_err());
    }
}
