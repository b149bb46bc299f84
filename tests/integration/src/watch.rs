//! Looking at a test host's containers from outside, without starting a
//! process: `/proc` of the suite's own PID namespace sees every process of
//! every test host. Cheap enough to poll every few milliseconds while
//! containers start (the scale scenario, `bench-boot`, `bench-start`), so the
//! measurement does not load the machine it measures.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nixos_nspawn_core::procfs;

use crate::host::TestHost;

/// `root` and every process below it.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procfs::processes() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// The init process of every running container of a test host whose systemd
/// is `host_leader`, by machine name: the child of each `systemd-nspawn
/// … --machine=NAME` below it that is in a network namespace of its own (while
/// nspawn sets up, its child may still be in the test host's).
pub fn container_leaders(host_leader: i32) -> BTreeMap<String, i32> {
    let host_net = procfs::netns(host_leader);
    let procs = procfs::processes();
    let mut children: HashMap<i32, Vec<(i32, &str)>> = HashMap::new();
    for p in &procs {
        children
            .entry(p.ppid)
            .or_default()
            .push((p.pid, p.comm.as_str()));
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![host_leader];
    while let Some(p) = stack.pop() {
        for (c, comm) in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if *comm == "systemd-nspawn" {
                if let Some(name) = procfs::machine_arg(*c) {
                    // Its one child is the container's PID 1 once it runs.
                    let init = children
                        .get(c)
                        .into_iter()
                        .flatten()
                        .map(|(p, _)| *p)
                        .find(|p| procfs::netns(*p).is_some_and(|n| Some(&n) != host_net.as_ref()));
                    if let Some(init) = init {
                        out.insert(name, init);
                    }
                    continue;
                }
            }
            stack.push(*c);
        }
    }
    out
}

/// The global IPv4 addresses of the network namespace `pid` is in (the
/// library's reader, which the CLI's `list` uses too).
pub use nixos_nspawn_core::procfs::ipv4_addresses;

/// What one `systemctl start` of a container took.
#[derive(Debug, Clone)]
pub struct StartTiming {
    /// Until `systemctl start` returned (the guest sent READY=1: NotifyReady).
    pub start: Duration,
    /// Until host0 had a global IPv4 address, and the address.
    pub address: Option<(Duration, String)>,
}

/// `systemctl start systemd-nspawn@NAME.service` in the test host, timed;
/// with `want_address`, host0's first global IPv4 address is polled from
/// outside every 5 ms (no process started for it) until `timeout`.
pub fn time_start(
    h: &TestHost,
    name: &str,
    want_address: bool,
    timeout: Duration,
) -> Result<StartTiming> {
    let leader = h.leader.to_string();
    let unit = format!("systemd-nspawn@{name}.service");
    let argv: Vec<String> = [
        "nsenter",
        "-t",
        &leader,
        "-a",
        "--",
        "systemctl",
        "start",
        &unit,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t0 = Instant::now();
    let start = std::thread::spawn(move || {
        let out = crate::cmd::run(&argv, Duration::from_secs(180));
        (out, t0.elapsed())
    });
    let mut address = None;
    let mut init = None;
    while want_address && address.is_none() && t0.elapsed() < timeout {
        if init.is_none() {
            init = container_leaders(h.leader).get(name).copied();
        }
        if let Some(pid) = init {
            match ipv4_addresses(pid).into_iter().next() {
                Some(a) => address = Some((t0.elapsed(), a)),
                // It may have been the short-lived setup child: look again.
                None if !std::path::Path::new(&format!("/proc/{pid}")).exists() => init = None,
                None => {}
            }
        }
        if address.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (out, took) = start.join().expect("the systemctl thread does not panic");
    let out = out?;
    if !out.success() {
        bail!("{}", out.describe_failure());
    }
    if want_address && address.is_none() {
        bail!(
            "{name}'s host0 had no IPv4 address {:.1} s after systemctl start",
            timeout.as_secs_f64()
        );
    }
    Ok(StartTiming {
        start: took,
        address,
    })
}

/// CLOCK_MONOTONIC in microseconds: the clock of systemd's `…TimestampMonotonic`
/// properties (shared by the test host and its containers).
pub fn monotonic_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// inotify instances held by `pids` (their `anon_inode:inotify` descriptors).
pub fn inotify_instances(pids: &[i32]) -> usize {
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify")
        })
        .count()
}

pub const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The outer machine's `fs.inotify.max_user_instances`, raised for a run that
/// starts many containers. A test host cannot set it (its `/proc/sys` is
/// read-only) and shares the outer limit with every other root process on the
/// machine, so many containers need it raised here, as the project's
/// `sysctl.d/60-nixos-nspawn.conf` raises it on a real host. On drop the old
/// value comes back, unless someone else changed it meanwhile.
pub struct OuterLimit {
    pub previous: u64,
    pub set: Option<u64>,
}

impl OuterLimit {
    /// At least `min` (nothing changes when it is already).
    pub fn ensure(min: u64) -> Result<OuterLimit> {
        let read = || -> Result<u64> {
            Ok(std::fs::read_to_string(MAX_USER_INSTANCES)?
                .trim()
                .parse()?)
        };
        let previous = read()?;
        if previous >= min {
            return Ok(OuterLimit {
                previous,
                set: None,
            });
        }
        std::fs::write(MAX_USER_INSTANCES, format!("{min}\n"))
            .map_err(|e| anyhow::anyhow!("raising {MAX_USER_INSTANCES} to {min}: {e}"))?;
        Ok(OuterLimit {
            previous,
            set: Some(min),
        })
    }

    /// What to report about it.
    pub fn describe(&self) -> String {
        match self.set {
            Some(v) => format!(
                "the outer machine's fs.inotify.max_user_instances raised from {} to {v} for this run (restored after)",
                self.previous
            ),
            None => format!(
                "the outer machine's fs.inotify.max_user_instances is {} (left alone)",
                self.previous
            ),
        }
    }
}

impl Drop for OuterLimit {
    fn drop(&mut self) {
        let Some(set) = self.set else { return };
        let now = std::fs::read_to_string(MAX_USER_INSTANCES)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if now == Some(set) {
            let _ = std::fs::write(MAX_USER_INSTANCES, format!("{}\n", self.previous));
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub const CLK_TCK: f64 = 100.0;

/// CPU time of `pids` and of everything they reaped (utime + stime + cutime +
/// cstime), in seconds: over the processes of a tree, what ran in it so far.
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    let mut ticks = 0u64;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        // After the comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
        for i in 11..=14 {
            ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / CLK_TCK
}

/// Proportional set size of `pids` in KiB (`/proc/PID/smaps_rollup`).
pub fn pss_kib(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// The machine's load averages (1, 5, 15 minutes).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Median and 95th percentile (nearest rank) of `v`, in seconds.
pub fn median_p95(v: &[std::time::Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64()).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let rank = ((0.95 * s.len() as f64).ceil() as usize).clamp(1, s.len());
    (s[s.len() / 2], s[rank - 1])
}

/// Wait until the processes under `leader` (a test host and its guests)
/// use less than a tenth of a CPU over 2 s, at most `limit`: the steady
/// state a measurement should start from (a host just booted still mounts,
/// and systemd's mount monitor rate-limits itself, which delays the first
/// container's start job). Returns the time waited and the CPU seconds of
/// the last 2 s.
pub fn settle(leader: i32, limit: Duration) -> (Duration, f64) {
    let start = std::time::Instant::now();
    loop {
        let tree = descendants(leader);
        let before = cpu_seconds(&tree);
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_seconds(&tree) - before;
        if used < 0.2 || start.elapsed() > limit {
            return (start.elapsed(), used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median_p95(&ms(&[100, 300, 200])), (0.2, 0.3));
        let ten = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(median_p95(&ten), (0.006, 0.010));
    }

    #[test]
    fn our_own_namespace_has_addresses_or_none_and_no_loopback() {
        let a = ipv4_addresses(std::process::id() as i32);
        assert!(a.iter().all(|x| !x.starts_with("127.")), "{a:?}");
        assert!(descendants(1).contains(&(std::process::id() as i32)));
        assert!(cpu_seconds(&[std::process::id() as i32]) >= 0.0);
    }
}
