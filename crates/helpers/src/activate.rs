//! `nixos-nspawn-activate NAME`, run as `ExecReload=` of
//! `systemd-nspawn@NAME.service`: activate the registry's `system` inside the
//! running container, through the container's own service manager.
//!
//! 1. The registry entry (missing or invalid: exit 1, nothing changed).
//! 2. The container's leader (its PID 1) from systemd-machined; a container
//!    that is not running is an error before anything else happens. The
//!    leader is pinned with a pidfd and a `/proc/PID` directory fd opened
//!    while it is alive; it must be PID 1 of its own PID namespace and in the
//!    cgroup of `systemd-nspawn@NAME.service`.
//! 3. The command (`<system>/bin/switch-to-configuration test`, or
//!    `activation.reloadScript`) must exist and be executable *inside the
//!    container's root* (resolved under `/proc/PID/root`, not on the host).
//! 4. The profile is switched to `system` (a new generation when it differs),
//!    as `nixos-rebuild` does before `switch-to-configuration`.
//! 5. The command runs as a transient service of the container's own systemd
//!    (`systemd-run --machine=NAME --pipe --wait`, as `nixos-rebuild` runs
//!    switch-to-configuration on a host): whatever the container's root put at
//!    that path (it can bind-mount anything there in its own mount namespace)
//!    runs exactly as confined as the container's own processes — nspawn's
//!    seccomp filter, its bounding set, its cgroup and namespaces. Nothing
//!    from the container is ever executed by this process. The output comes
//!    back through pipes to our stdout/stderr (the unit's journal).
//! 6. On success the applied record says `"reload"` with the new generation;
//!    on failure the profile is put back exactly as it was (the generation
//!    made in 4 is removed), the applied record is left alone, and the
//!    command's exit status (as `systemd-run --wait` passes it on) is ours.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nixos_nspawn_core::applied::{self, Applied};
pub use nixos_nspawn_core::hosttools::parse_leader;
use nixos_nspawn_core::hosttools::{self, MachineLeader};
use nixos_nspawn_core::{paths, profile, registry, Entry, Root};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{Failure, Tools};

pub const IDENT: &str = "nixos-nspawn-activate";

/// Where systemd-machined keeps one file per registered machine: its absence
/// means the container is not running, without asking machined (the file's
/// content is machined's private business and is not read).
pub const MACHINES_STATE_DIR: &str = "/run/systemd/machines";

/// What a successful activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    pub leader: u32,
    pub generation: u64,
    pub new_generation: bool,
    pub command: Vec<String>,
}

impl Report {
    pub fn log(&self) {
        log::info!(
            "container {}: {} succeeded; profile generation {}{}",
            self.name,
            self.command.join(" "),
            self.generation,
            if self.new_generation { " (new)" } else { "" }
        );
    }
}

/// The command a reload runs inside the container.
pub fn command(entry: &Entry) -> Vec<String> {
    match &entry.activation.reload_script {
        Some(script) => vec![script.clone()],
        None => vec![
            format!("{}/bin/switch-to-configuration", entry.system),
            "test".into(),
        ],
    }
}

/// The whole activation of container `name` under `root`.
pub fn activate(root: &Root, name: &str, tools: &Tools) -> Result<Report, Failure> {
    activate_checked(root, name, tools, true)
}

/// [`activate`], optionally without checking that the leader runs in
/// `systemd-nspawn@NAME.service` (for tests with a fake container).
pub(crate) fn activate_checked(
    root: &Root,
    name: &str,
    tools: &Tools,
    check_unit: bool,
) -> Result<Report, Failure> {
    let entry = registry::load_entry(root, name).map_err(Failure::Entry)?;
    let pid = find_leader(root, name, tools)?;
    let leader = Leader::open(pid)?;
    if check_unit {
        leader.check_unit(name)?;
    }
    let inside = Inside::new(&leader)?;
    let argv = command(&entry);
    if let Err(e) = inside.check_executable(&argv[0]) {
        let hint = if entry.shared_nix || entry.activation.reload_script.is_some() {
            String::new()
        } else {
            "; with sharedNix = false only the closure of the system the container was started \
             with is mounted: restart it to switch to a new system"
                .into()
        };
        return Err(anyhow!("{e:#}{hint}").into());
    }
    let env = inside.environment(&entry.system);

    let previous = profile::current(root, name)
        .with_context(|| format!("reading the profile of container {name}"))?
        .map(|g| g.number);
    let set = profile::set_system(root, name, Path::new(&entry.system)).with_context(|| {
        format!(
            "pointing the profile of container {name} at {}",
            entry.system
        )
    })?;
    log::info!(
        "container {name}: running {} inside through its systemd ({UNIT}; leader PID {pid}), \
         profile generation {}{}",
        argv.join(" "),
        set.generation,
        if set.created { " (new)" } else { "" }
    );

    let undo = |why: &str| -> String {
        if !set.created {
            return format!("{why}; the profile was already at this system and is unchanged");
        }
        match profile::undo_set(root, name, set.generation, previous) {
            Ok(true) => format!(
                "{why}; the profile is back at {}",
                previous.map_or("no generation".into(), |p| format!("generation {p}"))
            ),
            Ok(false) => format!(
                "{why}; the profile was changed by someone else meanwhile and is left as it is"
            ),
            Err(e) => format!("{why}; putting the profile back failed too: {e:#}"),
        }
    };
    if !leader.alive() {
        let msg = undo(&format!(
            "the container's leader (PID {pid}) exited: the container stopped meanwhile"
        ));
        return Err(anyhow!("{msg}; nothing ran inside container {name}").into());
    }
    let status = match run_in_container(tools, name, &argv, &env) {
        Ok(s) => s,
        Err(e) => {
            let msg = undo(&format!("{e:#}"));
            return Err(anyhow!("{msg}; nothing ran inside container {name}").into());
        }
    };
    if !status.success() {
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        let why = format!(
            "{} failed inside container {name} ({})",
            argv.join(" "),
            describe_status(status)
        );
        let msg = undo(&why);
        return Err(Failure::Status(
            if code == 0 { 1 } else { code },
            format!(
                "{msg}; the applied state is unchanged. The container may be partly switched: \
                 `systemctl restart {}` starts the registry's system afresh",
                paths::unit_name(name)
            ),
        ));
    }
    let report = Report {
        name: name.to_owned(),
        leader: pid,
        generation: set.generation,
        new_generation: set.created,
        command: argv,
    };
    applied::write(root, &Applied::now(entry, Some(set.generation), "reload")).with_context(
        || {
            format!(
                "the activation succeeded, but recording it in {} failed",
                paths::applied_file(name).display()
            )
        },
    )?;
    Ok(report)
}

/// The PID of a running container's leader, from systemd-machined
/// (`machinectl show NAME -p Leader --value`). Fails fast, without running
/// anything, when machined has no record of the machine.
pub fn find_leader(root: &Root, name: &str, tools: &Tools) -> Result<u32> {
    // Only where machined keeps its directory (it runs, and uses the layout
    // we know) does a missing file mean "not running"; else machinectl says.
    let state_dir = root.join(MACHINES_STATE_DIR);
    if state_dir.is_dir() && std::fs::symlink_metadata(state_dir.join(name)).is_err() {
        bail!(
            "container {name} is not running (systemd-machined has no machine {name}); \
             start it with `systemctl start {}`",
            paths::unit_name(name)
        );
    }
    match hosttools::leader(&tools.machinectl, name) {
        Ok(MachineLeader::Pid(pid)) => Ok(pid),
        Ok(MachineLeader::NoMachine(words)) => {
            bail!("container {name} is not running (systemd-machined: {words})")
        }
        Err(e) => Err(e.context(format!(
            "asking systemd-machined for the leader of container {name} failed"
        ))),
    }
}

/// What `/proc/PID/status` says about the leader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStatus {
    /// The PID in each nested namespace, outermost first.
    pub ns_pids: Vec<u32>,
}

pub fn parse_status(text: &str) -> Result<ProcStatus> {
    let mut st = ProcStatus::default();
    for line in text.lines() {
        let Some(("NSpid", value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        st.ns_pids = value
            .split_whitespace()
            .map(|p| p.parse().map_err(|_| anyhow!("bad NSpid {value:?}")))
            .collect::<Result<_>>()?;
    }
    if st.ns_pids.is_empty() {
        bail!("no NSpid line (Linux 4.1 or newer is needed)");
    }
    Ok(st)
}

/// `systemd-run --wait`'s exit status, in words.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(255), _) => "exit status 255: it was killed by a signal".into(),
        (Some(203), _) => "exit status 203: it could not be executed".into(),
        (Some(1), _) => {
            "exit status 1 (also what systemd-run gives when it cannot reach the container's \
             service manager: its message is above)"
                .into()
        }
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("systemd-run was killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// Whether `/proc/PID/cgroup` text puts the process in `unit`.
pub fn in_unit(cgroup: &str, unit: &str) -> bool {
    cgroup.lines().any(|line| {
        line.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|c| c == unit))
    })
}

/// A container's leader, pinned: a pidfd and its `/proc/PID` directory,
/// opened while the pidfd shows it alive, so both refer to the same process
/// even if the PID is reused later.
#[derive(Debug)]
pub struct Leader {
    pub pid: u32,
    pidfd: OwnedFd,
    proc_dir: OwnedFd,
}

impl Leader {
    pub fn open(pid: u32) -> Result<Leader> {
        let vanished = || {
            anyhow!(
                "the container's leader (PID {pid}) exited: the container stopped or restarted \
                 meanwhile"
            )
        };
        let raw = rustix::process::Pid::from_raw(pid as i32).ok_or_else(vanished)?;
        let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(Errno::SRCH) => return Err(vanished()),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .context("pidfd_open (Linux 5.3 or newer is needed)")
            }
        };
        let proc_dir = rustix::fs::open(
            format!("/proc/{pid}"),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| vanished())?;
        let leader = Leader {
            pid,
            pidfd,
            proc_dir,
        };
        if !leader.alive() {
            return Err(vanished());
        }
        let status = leader.status()?;
        if status.ns_pids.len() < 2 || status.ns_pids.last() != Some(&1) {
            bail!(
                "PID {pid} is not the init of a container (its PID in each namespace: {:?})",
                status.ns_pids
            );
        }
        Ok(leader)
    }

    /// A pidfd polls readable once its process exited.
    pub fn alive(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.pidfd,
            rustix::event::PollFlags::IN,
        )];
        matches!(rustix::event::poll(&mut fds, 0), Ok(0))
    }

    fn read(&self, file: &str) -> Result<String> {
        let fd = rustix::fs::openat(
            &self.proc_dir,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening /proc/{}/{file}", self.pid))?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .with_context(|| format!("reading /proc/{}/{file}", self.pid))?;
        Ok(text)
    }

    pub fn status(&self) -> Result<ProcStatus> {
        parse_status(&self.read("status")?).with_context(|| format!("/proc/{}/status", self.pid))
    }

    /// Refuse a leader outside `systemd-nspawn@NAME.service` (a PID reused by
    /// something else between machined's answer and our pidfd).
    pub fn check_unit(&self, name: &str) -> Result<()> {
        let unit = paths::unit_name(name);
        let cgroup = self.read("cgroup")?;
        if !in_unit(&cgroup, &unit) {
            bail!(
                "PID {} is not in {unit} (cgroup {}): the container restarted meanwhile, or is \
                 not run by that unit",
                self.pid,
                cgroup.trim()
            );
        }
        Ok(())
    }
}

/// The leader's root directory (`/proc/PID/root`), to look at the command
/// *inside* the container before anything changes. Nothing is ever executed
/// from it: the command runs through the container's own service manager
/// ([`run_in_container`]).
#[derive(Debug)]
pub struct Inside<'a> {
    leader: &'a Leader,
    root: OwnedFd,
}

impl<'a> Inside<'a> {
    pub fn new(leader: &'a Leader) -> Result<Inside<'a>> {
        let root = rustix::fs::openat(
            &leader.proc_dir,
            "root",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening /proc/{}/root", leader.pid))?;
        if !leader.alive() {
            bail!(
                "the container's leader (PID {}) exited: the container stopped meanwhile",
                leader.pid
            );
        }
        Ok(Inside { leader, root })
    }

    /// Open `path` inside the container's root: symlinks are followed but
    /// never leave that root (`RESOLVE_IN_ROOT`).
    fn open(&self, path: &str) -> std::result::Result<OwnedFd, Errno> {
        rustix::fs::openat2(
            &self.root,
            path.trim_start_matches('/'),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// `path` must be an executable regular file inside the container.
    pub fn check_executable(&self, path: &str) -> Result<()> {
        let where_ = format!(
            "inside the container (under /proc/{}/root)",
            self.leader.pid
        );
        let fd = match self.open(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => bail!("{path} does not exist {where_}"),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("opening {path} {where_}"))
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?;
        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if ft != rustix::fs::FileType::RegularFile || st.st_mode & 0o111 == 0 {
            bail!("{path} is not an executable file {where_}");
        }
        Ok(())
    }

    /// The command's environment: `PATH` from the system, `LOCALE_ARCHIVE`
    /// when the system has one.
    pub fn environment(&self, system: &str) -> Vec<(String, String)> {
        let mut env = vec![(
            "PATH".to_owned(),
            format!("{system}/sw/bin:{system}/sw/sbin"),
        )];
        let archive = format!("{system}/sw/lib/locale/locale-archive");
        if self.open(&archive).is_ok() {
            env.push(("LOCALE_ARCHIVE".into(), archive));
        }
        env
    }
}

/// The transient unit the command runs as inside the container (one at a
/// time: a second reload while one still runs is refused by the container's
/// systemd, "Unit … already exists").
pub const UNIT: &str = "nixos-nspawn-activation.service";

/// How long the output of the command may still arrive after `systemd-run`
/// exited (a process of the container that kept the pipe open is not waited
/// for beyond this).
const DRAIN: Duration = Duration::from_secs(2);

/// `$` as `$$`: systemd expands `$VAR` in `ExecStart=` argv, which the
/// container's service manager applies to what `systemd-run` passes it.
fn escape_dollars(s: &str) -> String {
    s.replace('$', "$$")
}

/// The `systemd-run` arguments that run `argv` with `env` as a transient
/// service of container `name`'s own systemd: so it gets exactly what the
/// container's processes get (nspawn's seccomp filter, the bounding set, its
/// cgroup, its namespaces), the exit status comes back (`--wait`), and
/// stdin/stdout/stderr are ours (`--pipe`).
/// The flags of every such `systemd-run`.
const RUN_FLAGS: &str = "--service-type=exec --pipe --wait --collect --quiet --no-ask-password";

pub fn systemd_run_args(name: &str, argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--machine={name}"),
        format!("--unit={UNIT}"),
        format!(
            "--description=nixos-nspawn activation: {}",
            escape_dollars(&argv.join(" "))
        ),
    ];
    args.extend(RUN_FLAGS.split(' ').map(String::from));
    for (k, v) in env {
        args.push(format!("--setenv={k}={}", escape_dollars(v)));
    }
    args.push("--".into());
    args.extend(argv.iter().map(|a| escape_dollars(a)));
    args
}

/// Copy `from` to `to()` on a thread of its own, and say so on `done` at
/// its end.
fn relay<W: std::io::Write + 'static>(
    mut from: impl std::io::Read + Send + 'static,
    to: fn() -> W,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to());
        let _ = done.send(());
    });
}

/// Run `argv` inside container `name` through its own service manager
/// (`systemd-run --machine=NAME --pipe --wait …`, the host's trusted
/// `systemd-run`, talking to the container's D-Bus system bus). stdin is
/// `/dev/null`; stdout and stderr come through pipes that this process copies
/// to its own (the unit's journal under systemd), so the container never
/// holds one of our descriptors (a terminal, the journal's stream). Returns
/// `systemd-run`'s status: the command's exit status, 255 when it was killed
/// by a signal, 203 when it could not be executed, 1 when `systemd-run` itself
/// failed (its message is in the output).
pub fn run_in_container(
    tools: &Tools,
    name: &str,
    argv: &[String],
    env: &[(String, String)],
) -> Result<ExitStatus> {
    let mut child = Command::new(&tools.systemd_run)
        .args(systemd_run_args(name, argv, env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", tools.systemd_run.display()))?;
    let (done_tx, done_rx) = mpsc::channel();
    let mut relays = 0;
    if let Some(out) = child.stdout.take() {
        relay(out, std::io::stdout, done_tx.clone());
        relays += 1;
    }
    if let Some(err) = child.stderr.take() {
        relay(err, std::io::stderr, done_tx.clone());
        relays += 1;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", tools.systemd_run.display()))?;
    let deadline = Instant::now() + DRAIN;
    for _ in 0..relays {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            log::warn!(
                "container {name}: something in the container still holds the activation's \
                 output open; not waiting for it"
            );
            break;
        }
    }
    Ok(status)
}

/// Where a test or the bench can find the state file machined would have.
pub fn machine_state_file(root: &Root, name: &str) -> PathBuf {
    root.join(MACHINES_STATE_DIR).join(name)
}

#[cfg(test)]
#[path = "activate_tests.rs"]
mod tests;
