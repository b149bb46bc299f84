//! Guaranteed cleanup.
//!
//! Every test host (a `systemd-nspawn` process and a temp directory) is torn
//! down by its owner's `Drop`. Because the release profile aborts on panic and
//! a signal or `kill -9` skips destructors, a *guardian* process backs that up:
//! the suite starts a copy of itself (`--guardian`) in its own process group
//! (so a terminal's Ctrl-C does not reach it) and tells it over a pipe about
//! every resource it creates and releases. When the pipe closes — normal exit,
//! abort, SIGINT, SIGKILL alike — the guardian stops whatever is still
//! registered, by PID, after checking the PID still is the `systemd-nspawn` of
//! that machine, and removes the suite's temp directories. No signal handlers,
//! nothing is ever killed by name.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nixos_nspawn_core::procfs;
use rustix::process::{kill_process, test_kill_process, Pid, Signal};

/// Prefix of every temp directory the suite creates (under the system temp dir).
pub const TMP_PREFIX: &str = "nixos-nspawn-itest-";

static PIPE: Mutex<Option<(Child, ChildStdin)>> = Mutex::new(None);

/// Start the guardian. Call once, early.
pub fn start() -> Result<()> {
    let exe = std::env::current_exe().context("finding the suite's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--guardian").stdin(Stdio::piped());
    // Its own session: no terminal signal (Ctrl-C, hangup) reaches it.
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    let mut child = cmd.spawn().context("starting the cleanup guardian")?;
    let stdin = child.stdin.take().expect("piped");
    *PIPE.lock().unwrap() = Some((child, stdin));
    Ok(())
}

fn send(line: &str) {
    if let Some((_, pipe)) = PIPE.lock().unwrap().as_mut() {
        let _ = writeln!(pipe, "{line}");
        let _ = pipe.flush();
    }
}

pub fn register_nspawn(pid: i32, machine: &str) {
    send(&format!("nspawn {pid} {machine}"));
}
pub fn release_nspawn(pid: i32) {
    send(&format!("release-nspawn {pid}"));
}
pub fn register_dir(path: &Path) {
    send(&format!("dir {}", path.display()));
}
pub fn release_dir(path: &Path) {
    send(&format!("release-dir {}", path.display()));
}

/// Close the pipe and wait (bounded) for the guardian to finish whatever was
/// left registered.
pub fn finish() {
    let taken = PIPE.lock().unwrap().take();
    if let Some((mut child, pipe)) = taken {
        drop(pipe);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Print to stderr without ever failing or panicking (the reader may be gone:
/// `… | head` must not keep the guardian from cleaning up).
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The guardian's main loop: read registrations until EOF, then clean up.
pub fn guardian_main() -> i32 {
    let mut nspawns: Vec<(i32, String)> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("nspawn"), Some(pid), Some(machine)) => {
                if let Ok(pid) = pid.parse() {
                    nspawns.push((pid, machine.to_string()));
                }
            }
            (Some("release-nspawn"), Some(pid), None) => {
                nspawns.retain(|(p, _)| pid.parse() != Ok(*p));
            }
            (Some("dir"), Some(_), _) => {
                dirs.push(PathBuf::from(line.strip_prefix("dir ").unwrap()));
            }
            (Some("release-dir"), Some(_), _) => {
                let p = PathBuf::from(line.strip_prefix("release-dir ").unwrap());
                dirs.retain(|d| *d != p);
            }
            _ => {}
        }
    }
    for (pid, machine) in &nspawns {
        note(&format!(
            "guardian: stopping leftover test host {machine} (systemd-nspawn PID {pid})"
        ));
        stop_nspawn(*pid, machine, None);
    }
    for d in &dirs {
        note(&format!("guardian: removing leftover {}", d.display()));
        remove_tmp_dir(d);
    }
    0
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    procfs::process(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// PIDs whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = procfs::processes()
        .into_iter()
        .filter(|p| p.ppid == ppid)
        .map(|p| p.pid)
        .collect();
    out.sort();
    out
}

/// Is `pid` still the `systemd-nspawn … -M machine` we started?
pub fn is_our_nspawn(pid: i32, machine: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_nspawn = argv
        .first()
        .map(|a| a.ends_with(b"systemd-nspawn"))
        .unwrap_or(false);
    is_nspawn
        && argv
            .windows(2)
            .any(|w| w[0] == b"-M" && w[1] == machine.as_bytes())
}

fn signal(pid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = kill_process(p, sig);
    }
}

/// Stop a test host: SIGTERM to nspawn (a clean poweroff of the host and its
/// containers), then SIGKILL to the host's PID 1 (which takes its whole PID
/// namespace with it) and to nspawn. `child`: reap it when it is ours.
pub fn stop_nspawn(pid: i32, machine: &str, mut child: Option<&mut Child>) {
    let gone = |child: &mut Option<&mut Child>| -> bool {
        if let Some(c) = child.as_mut() {
            matches!(c.try_wait(), Ok(Some(_)))
        } else {
            !alive(pid)
        }
    };
    let gone_within_10s = |child: &mut Option<&mut Child>| -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if gone(child) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    if gone(&mut child) || !is_our_nspawn(pid, machine) {
        if let Some(c) = child.as_mut() {
            let _ = c.wait();
        }
        return;
    }
    let leaders = children_of(pid);
    signal(pid, Signal::Term);
    if gone_within_10s(&mut child) {
        return;
    }
    note(&format!(
        "cleanup: test host {machine} did not power off in 10 s; killing it"
    ));
    for l in leaders {
        signal(l, Signal::Kill);
    }
    if is_our_nspawn(pid, machine) {
        signal(pid, Signal::Kill);
    }
    if gone_within_10s(&mut child) {
        return;
    }
    note(&format!(
        "cleanup: systemd-nspawn PID {pid} ({machine}) is still there"
    ));
}

/// Remove one of our temp directories, never anything else, and never while
/// something is mounted below it.
pub fn remove_tmp_dir(dir: &Path) {
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.starts_with(TMP_PREFIX))
        .unwrap_or(false)
        && dir.parent() == Some(std::env::temp_dir().as_path());
    if !ours {
        note(&format!("cleanup: refusing to remove {}", dir.display()));
        return;
    }
    if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
        let prefix = format!("{}/", dir.display());
        if let Some(l) = mi.lines().find(|l| {
            l.split_whitespace()
                .nth(4)
                .map(|mp| mp == dir.to_str().unwrap_or("") || mp.starts_with(&prefix))
                .unwrap_or(false)
        }) {
            note(&format!(
                "cleanup: not removing {}: something is mounted below it ({l})",
                dir.display()
            ));
            return;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            note(&format!("cleanup: removing {}: {e}", dir.display()));
        }
    }
}

/// Does `pid` exist at all (zombies included)?
#[allow(dead_code)]
pub fn exists(pid: i32) -> bool {
    Pid::from_raw(pid)
        .map(|p| test_kill_process(p).is_ok())
        .unwrap_or(false)
}
