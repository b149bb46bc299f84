//! `nixos-nspawn-activate NAME`, run as `ExecReload=` of
//! `systemd-nspawn@NAME.service`: activate the registry's `system` inside the
//! running container, natively (no `nsenter`, no shell).
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
//! 5. The command runs inside the container: this process joins the leader's
//!    PID namespace for its children only; the child joins its mount, UTS,
//!    IPC, network, cgroup and (when different from ours) user namespaces,
//!    becomes root there, chroots to the leader's root, drops every capability
//!    the leader's bounding set lacks, and execs the command with a clean
//!    environment (`PATH` from the system, `LOCALE_ARCHIVE` when present).
//!    stdout/stderr are inherited (the journal, under systemd).
//! 6. On success the applied record says `"reload"` with the new generation;
//!    on failure the profile is put back exactly as it was (the generation
//!    made in 4 is removed), the applied record is left alone, and the
//!    command's exit status is ours.

use std::ffi::CStr;
use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{anyhow, bail, Context as _, Result};
use nixos_nspawn::applied::{self, Applied};
use nixos_nspawn::{paths, profile, registry, Entry, Root};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::thread::{Capability, LinkNameSpaceType, ThreadNameSpaceType};

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
    let target = Target::new(&leader)?;
    let argv = command(&entry);
    if let Err(e) = target.check_executable(&argv[0]) {
        let hint = if entry.shared_nix || entry.activation.reload_script.is_some() {
            String::new()
        } else {
            "; with sharedNix = false only the closure of the system the container was started \
             with is mounted: restart it to switch to a new system"
                .into()
        };
        return Err(anyhow!("{e:#}{hint}").into());
    }
    let env = target.environment(&entry.system);

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
        "container {name}: running {} inside (leader PID {pid}), profile generation {}{}",
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
    let status = match target.run(&argv, &env) {
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
            "{} failed inside container {name} ({status})",
            argv.join(" ")
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
    let out = Command::new(&tools.machinectl)
        .args(["show", name, "--property=Leader", "--value"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", tools.machinectl.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No machine") {
            bail!(
                "container {name} is not running (systemd-machined: {})",
                stderr.trim()
            );
        }
        bail!(
            "asking systemd-machined for the leader of container {name} failed ({}): {}",
            out.status,
            stderr.trim()
        );
    }
    parse_leader(&stdout).with_context(|| format!("systemd-machined's leader of container {name}"))
}

/// Parse `machinectl show -p Leader --value` output: one positive PID.
pub fn parse_leader(text: &str) -> Result<u32> {
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => bail!("{:?} is not a container leader's PID", text.trim()),
    }
}

/// What `/proc/PID/status` says about the leader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStatus {
    /// The PID in each nested namespace, outermost first.
    pub ns_pids: Vec<u32>,
    pub cap_bounding: u64,
    pub no_new_privs: bool,
}

pub fn parse_status(text: &str) -> Result<ProcStatus> {
    let mut st = ProcStatus::default();
    let mut bnd = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "NSpid" => {
                st.ns_pids = value
                    .split_whitespace()
                    .map(|p| p.parse().map_err(|_| anyhow!("bad NSpid {value:?}")))
                    .collect::<Result<_>>()?
            }
            "CapBnd" => {
                bnd = Some(
                    u64::from_str_radix(value, 16).map_err(|_| anyhow!("bad CapBnd {value:?}"))?,
                )
            }
            "NoNewPrivs" => st.no_new_privs = value == "1",
            _ => {}
        }
    }
    st.cap_bounding = bnd.ok_or_else(|| anyhow!("no CapBnd line"))?;
    if st.ns_pids.is_empty() {
        bail!("no NSpid line (Linux 4.1 or newer is needed)");
    }
    Ok(st)
}

/// Whether `/proc/PID/cgroup` text puts the process in `unit`.
pub fn in_unit(cgroup: &str, unit: &str) -> bool {
    cgroup.lines().any(|line| {
        line.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|c| c == unit))
    })
}

fn errno(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
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
            Err(e) => return Err(errno(e)).context("pidfd_open (Linux 5.3 or newer is needed)"),
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
        .map_err(errno)
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

/// Every capability, in kernel numbering (CAP_CHOWN = 0 …).
const ALL_CAPS: [Capability; 41] = [
    Capability::ChangeOwnership,
    Capability::DACOverride,
    Capability::DACReadSearch,
    Capability::FileOwner,
    Capability::FileSetID,
    Capability::Kill,
    Capability::SetGroupID,
    Capability::SetUserID,
    Capability::SetPermittedCapabilities,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IPCLock,
    Capability::IPCOwner,
    Capability::SystemModule,
    Capability::SystemRawIO,
    Capability::SystemChangeRoot,
    Capability::SystemProcessTrace,
    Capability::SystemProcessAccounting,
    Capability::SystemAdmin,
    Capability::SystemBoot,
    Capability::SystemNice,
    Capability::SystemResource,
    Capability::SystemTime,
    Capability::SystemTTYConfig,
    Capability::MakeNode,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::SetFileCapabilities,
    Capability::MACOverride,
    Capability::MACAdmin,
    Capability::SystemLog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::PerformanceMonitoring,
    Capability::BerkeleyPacketFilters,
    Capability::CheckpointRestore,
];

/// Capabilities to drop from the bounding set so it is no larger than `keep`.
pub fn caps_to_drop(keep: u64) -> Vec<Capability> {
    ALL_CAPS
        .iter()
        .copied()
        .filter(|c| keep & (1u64 << (*c as u32)) == 0)
        .collect()
}

/// Namespaces, in the order they are entered one by one on kernels without
/// pidfd `setns` (user first: the others belong to it).
const NAMESPACES: [(&str, LinkNameSpaceType, ThreadNameSpaceType); 7] = [
    ("user", LinkNameSpaceType::User, ThreadNameSpaceType::USER),
    (
        "cgroup",
        LinkNameSpaceType::ControlGroup,
        ThreadNameSpaceType::CONTROL_GROUP,
    ),
    (
        "ipc",
        LinkNameSpaceType::InterProcessCommunication,
        ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION,
    ),
    (
        "uts",
        LinkNameSpaceType::HostNameAndNISDomainName,
        ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME,
    ),
    (
        "net",
        LinkNameSpaceType::Network,
        ThreadNameSpaceType::NETWORK,
    ),
    (
        "pid",
        LinkNameSpaceType::ProcessID,
        ThreadNameSpaceType::PROCESS_ID,
    ),
    ("mnt", LinkNameSpaceType::Mount, ThreadNameSpaceType::MOUNT),
];

/// Everything needed to run a command inside the leader's container, opened
/// and checked up front so that the child, after `fork`, only makes
/// syscalls.
#[derive(Debug)]
pub struct Target<'a> {
    leader: &'a Leader,
    /// The leader's root directory (`/proc/PID/root`).
    root: OwnedFd,
    /// Namespaces that differ from ours, except PID: (fd, type).
    ns_fds: Vec<(OwnedFd, LinkNameSpaceType)>,
    ns_flags: ThreadNameSpaceType,
    /// The leader's PID namespace, when it differs from ours.
    pid_ns: Option<OwnedFd>,
    enter_user: bool,
    drop_caps: Vec<Capability>,
    no_new_privs: bool,
    /// Enter namespaces one file at a time even where pidfd `setns` works
    /// (the path for kernels before 5.8; tests exercise it).
    pub(crate) one_by_one: bool,
}

fn ns_ino(dir: BorrowedFd<'_>, rel: &str) -> Result<u64> {
    let st = rustix::fs::statat(dir, rel, AtFlags::empty())
        .map_err(errno)
        .with_context(|| format!("checking namespace {rel}"))?;
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(st.st_ino))
}

impl<'a> Target<'a> {
    pub fn new(leader: &'a Leader) -> Result<Target<'a>> {
        let status = leader.status()?;
        let own = rustix::fs::open(
            "/proc/self/ns",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
        .context("opening /proc/self/ns")?;
        let mut ns_fds = Vec::new();
        let mut ns_flags = ThreadNameSpaceType::empty();
        let mut pid_ns = None;
        let mut enter_user = false;
        for (file, link_type, flag) in NAMESPACES {
            let rel = format!("ns/{file}");
            if ns_ino(leader.proc_dir.as_fd(), &rel)? == ns_ino(own.as_fd(), file)? {
                continue;
            }
            let fd = rustix::fs::openat(
                &leader.proc_dir,
                &rel,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)
            .with_context(|| format!("opening /proc/{}/{rel}", leader.pid))?;
            if link_type == LinkNameSpaceType::ProcessID {
                pid_ns = Some(fd);
                continue;
            }
            enter_user |= link_type == LinkNameSpaceType::User;
            ns_flags |= flag;
            ns_fds.push((fd, link_type));
        }
        let root = rustix::fs::openat(
            &leader.proc_dir,
            "root",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
        .with_context(|| format!("opening /proc/{}/root", leader.pid))?;
        if !leader.alive() {
            bail!(
                "the container's leader (PID {}) exited: the container stopped meanwhile",
                leader.pid
            );
        }
        Ok(Target {
            leader,
            root,
            ns_fds,
            ns_flags,
            pid_ns,
            enter_user,
            drop_caps: caps_to_drop(status.cap_bounding),
            no_new_privs: status.no_new_privs,
            one_by_one: false,
        })
    }

    /// Open `path` inside the container's root: symlinks are followed but
    /// never leave that root (`RESOLVE_IN_ROOT`).
    fn open_inside(&self, path: &str) -> std::result::Result<OwnedFd, Errno> {
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
        let fd = match self.open_inside(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => bail!("{path} does not exist {where_}"),
            Err(e) => return Err(errno(e)).with_context(|| format!("opening {path} {where_}")),
        };
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
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
        if self.open_inside(&archive).is_ok() {
            env.push(("LOCALE_ARCHIVE".into(), archive));
        }
        env
    }

    /// Run `argv` inside the container with `env`, stdin from /dev/null,
    /// stdout/stderr inherited; wait for it.
    pub fn run(&self, argv: &[String], env: &[(String, String)]) -> Result<ExitStatus> {
        let (mut report_rx, report_tx) = UnixStream::pair().context("creating a socket pair")?;
        let plan = ChildPlan {
            pidfd: self.leader.pidfd.as_raw_fd(),
            ns_fds: self
                .ns_fds
                .iter()
                .map(|(fd, t)| (fd.as_raw_fd(), *t))
                .collect(),
            ns_flags: self.ns_flags,
            root: self.root.as_raw_fd(),
            enter_user: self.enter_user,
            drop_caps: self.drop_caps.clone(),
            no_new_privs: self.no_new_privs,
            one_by_one: self.one_by_one,
            report: report_tx.as_raw_fd(),
            dot: c".",
            slash: c"/",
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        // SAFETY: the closure only makes syscalls on fds that stay open in
        // the parent until spawn returns (self and report_tx outlive it).
        unsafe {
            cmd.pre_exec(move || plan.enter());
        }
        let spawned = {
            let _pid_ns = match &self.pid_ns {
                Some(fd) => Some(PidNsGuard::enter(fd.as_fd())?),
                None => None,
            };
            cmd.spawn()
        };
        drop(report_tx);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let mut step = Vec::new();
                let _ = report_rx.read_to_end(&mut step);
                let what = match step.first() {
                    Some(1) => "entering the container's namespaces",
                    Some(2) => "becoming root in the container's user namespace",
                    Some(3) => "changing to the container's root directory",
                    Some(4) => "dropping capabilities the container does not have",
                    Some(5) => "setting no_new_privs like the container's",
                    _ => "starting",
                };
                return Err(e).with_context(|| format!("{what} for {}", argv[0]));
            }
        };
        child
            .wait()
            .with_context(|| format!("waiting for {}", argv[0]))
    }
}

/// Makes this thread's future children members of a PID namespace, and
/// returns to our own when dropped.
struct PidNsGuard {
    own: OwnedFd,
}

impl PidNsGuard {
    fn enter(target: BorrowedFd<'_>) -> Result<PidNsGuard> {
        let own = rustix::fs::open(
            "/proc/thread-self/ns/pid",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
        .context("opening /proc/thread-self/ns/pid")?;
        rustix::thread::move_into_link_name_space(target, Some(LinkNameSpaceType::ProcessID))
            .map_err(errno)
            .context("entering the container's PID namespace")?;
        Ok(PidNsGuard { own })
    }
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        let _ = rustix::thread::move_into_link_name_space(
            self.own.as_fd(),
            Some(LinkNameSpaceType::ProcessID),
        );
    }
}

/// What the child does between `fork` and `exec`: syscalls only, no
/// allocation; on failure it writes the step number to `report`.
struct ChildPlan {
    pidfd: RawFd,
    ns_fds: Vec<(RawFd, LinkNameSpaceType)>,
    ns_flags: ThreadNameSpaceType,
    root: RawFd,
    enter_user: bool,
    drop_caps: Vec<Capability>,
    no_new_privs: bool,
    one_by_one: bool,
    report: RawFd,
    dot: &'static CStr,
    slash: &'static CStr,
}

impl ChildPlan {
    fn fail(&self, step: u8, e: Errno) -> std::io::Error {
        // SAFETY: `report` is open until spawn returns in the parent.
        let fd = unsafe { BorrowedFd::borrow_raw(self.report) };
        let _ = rustix::io::write(fd, &[step]);
        errno(e)
    }

    fn enter(&self) -> std::io::Result<()> {
        // SAFETY (all borrow_raw below): the parent keeps these fds open
        // until spawn returns.
        let fd = |raw: RawFd| unsafe { BorrowedFd::borrow_raw(raw) };
        if !self.ns_flags.is_empty() {
            // One atomic setns with the pidfd (Linux 5.8); else one by one.
            let atomic = if self.one_by_one {
                Err(Errno::INVAL)
            } else {
                rustix::thread::move_into_thread_name_spaces(fd(self.pidfd), self.ns_flags)
            };
            match atomic {
                Ok(()) => {}
                Err(Errno::INVAL) => {
                    for (raw, t) in &self.ns_fds {
                        rustix::thread::move_into_link_name_space(fd(*raw), Some(*t))
                            .map_err(|e| self.fail(1, e))?;
                    }
                }
                Err(e) => return Err(self.fail(1, e)),
            }
        }
        if self.enter_user {
            // Become the container's root (uid/gid 0 of its user namespace).
            match rustix::thread::set_thread_groups(&[]) {
                Ok(()) | Err(Errno::PERM) => {}
                Err(e) => return Err(self.fail(2, e)),
            }
            let gid = rustix::fs::Gid::ROOT;
            let uid = rustix::fs::Uid::ROOT;
            rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| self.fail(2, e))?;
            rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| self.fail(2, e))?;
        } else {
            rustix::thread::set_thread_groups(&[]).map_err(|e| self.fail(2, e))?;
        }
        rustix::process::fchdir(fd(self.root)).map_err(|e| self.fail(3, e))?;
        rustix::process::chroot(self.dot).map_err(|e| self.fail(3, e))?;
        rustix::process::chdir(self.slash).map_err(|e| self.fail(3, e))?;
        for cap in &self.drop_caps {
            match rustix::thread::remove_capability_from_bounding_set(*cap) {
                // EINVAL: a capability this kernel does not know.
                Ok(()) | Err(Errno::INVAL) => {}
                Err(e) => return Err(self.fail(4, e)),
            }
        }
        match rustix::thread::clear_ambient_capability_set() {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(self.fail(4, e)),
        }
        // Root regains its permitted set from the bounding and inheritable
        // sets at exec: leave nothing inheritable.
        let mut caps = rustix::thread::capabilities(None).map_err(|e| self.fail(4, e))?;
        caps.inheritable = rustix::thread::CapabilityFlags::empty();
        rustix::thread::set_capabilities(None, caps).map_err(|e| self.fail(4, e))?;
        if self.no_new_privs {
            rustix::thread::set_no_new_privs(true).map_err(|e| self.fail(5, e))?;
        }
        Ok(())
    }
}

/// Where a test or the bench can find the state file machined would have.
pub fn machine_state_file(root: &Root, name: &str) -> PathBuf {
    root.join(MACHINES_STATE_DIR).join(name)
}

#[cfg(test)]
#[path = "activate_tests.rs"]
mod tests;
