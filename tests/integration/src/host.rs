//! A throwaway systemd host: `systemd-nspawn -D ROOT --volatile=yes
//! --private-network -b` (ROOT is `/`, this machine's `/usr`, or a Debian root
//! from [`crate::debian`] for another systemd release) with the built
//! binaries, the generator, a temp registry and temp profiles bound in. Nested containers run inside it as
//! real `systemd-nspawn@NAME.service` units under its own machined/networkd.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;

use crate::cmd::{self, wait_for, Out};
use crate::guard;

/// Where the built binaries appear inside the test host. The generator is
/// linked from `/etc/systemd/system-generators/` to this directory, so it
/// finds the helpers next to itself.
pub const BIN_IN_HOST: &str = "/opt/nixos-nspawn/bin";
pub const GENERATOR: &str = "nixos-nspawn-generator";
pub const BOOTSTRAP: &str = "nixos-nspawn-bootstrap";
pub const ACTIVATE: &str = "nixos-nspawn-activate";
pub const CLI: &str = "nixos-nspawn";
pub const BINARIES: &[&str] = &[GENERATOR, BOOTSTRAP, ACTIVATE, CLI];

/// systemd's normal generator output directory.
pub const GEN_DIR: &str = "/run/systemd/generator";

/// Presets applied at the test host's first boot, before Debian's: keep the
/// host quiet, and leave `machines.target` disabled so that autostart has to
/// work through the generator's own `multi-user.target.wants/` link.
const PRESET: &str = "\
disable machines.target
disable postgresql.service
disable postgresql@.service
disable nix-daemon.service
disable nix-daemon.socket
disable e2scrub_reap.service
disable e2scrub_all.timer
disable apt-daily.timer
disable apt-daily-upgrade.timer
disable man-db.timer
disable fstrim.timer
disable logrotate.timer
disable dpkg-db-backup.timer
";

#[derive(Default, Clone)]
pub struct HostOpts {
    /// Registry entries present before boot (`containers/NAME.json`).
    pub containers: Vec<Value>,
    /// Zone files present before boot (`zones/NAME.json`).
    pub zones: Vec<Value>,
    /// Raw files for `containers/` (bad input).
    pub raw_container_files: Vec<(String, Vec<u8>)>,
    /// Give the host a `/dev/kmsg` (a FIFO the suite reads), as a real host has.
    pub kmsg: bool,
    /// How long the host may take to boot (default 90 s): with many autostart
    /// containers, booting includes starting them (machines.target).
    pub boot_timeout: Option<Duration>,
    /// Extra read-only bind mounts `SOURCE[:TARGET]` (e.g. a tool to compare with).
    pub bind_ro: Vec<String>,
    /// Boot the OS tree as a fresh machine: the whole tree writable
    /// (`--volatile=overlay`: changes go to a tmpfs and are discarded) and
    /// nothing of ours in it (no binaries, registry, generator link, store,
    /// presets); the install test installs nixos-nspawn there itself.
    pub clean_os: bool,
}

pub struct TestHost {
    pub machine: String,
    /// The temp directory (outside) holding the registry, profiles, console log.
    pub dir: PathBuf,
    pub nspawn_pid: i32,
    /// PID (in the suite's namespace) of the host's systemd.
    pub leader: i32,
    child: RefCell<Option<Child>>,
    kmsg: Option<Arc<Mutex<String>>>,
    keep: bool,
    pub boot_time: Duration,
    /// First line of the test host's `systemctl --version`.
    pub systemd_version: String,
}

impl TestHost {
    /// Boot a test host from `os_root` (its `/usr` is used, read-only).
    pub fn boot(
        machine: &str,
        os_root: &Path,
        bin_dir: &Path,
        opts: &HostOpts,
        keep: bool,
    ) -> Result<TestHost> {
        let dir = tempfile::Builder::new()
            .prefix(guard::TMP_PREFIX)
            .tempdir()
            .context("creating the test host's temp directory")?
            .keep();
        guard::register_dir(&dir);
        match Self::boot_in(machine, os_root, &dir, bin_dir, opts, keep) {
            Ok(h) => Ok(h),
            Err(e) => {
                guard::remove_tmp_dir(&dir);
                guard::release_dir(&dir);
                Err(e)
            }
        }
    }

    fn boot_in(
        machine: &str,
        os_root: &Path,
        dir: &Path,
        bin_dir: &Path,
        opts: &HostOpts,
        keep: bool,
    ) -> Result<TestHost> {
        for d in [
            "profiles",
            "etc-nixos-nspawn/containers",
            "etc-nixos-nspawn/zones",
            "generators",
            "preset",
        ] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        for e in &opts.containers {
            let name = e["name"].as_str().context("entry without a name")?;
            write_json(
                &dir.join(format!("etc-nixos-nspawn/containers/{name}.json")),
                e,
            )?;
        }
        for z in &opts.zones {
            let name = z["name"].as_str().context("zone without a name")?;
            write_json(&dir.join(format!("etc-nixos-nspawn/zones/{name}.json")), z)?;
        }
        for (file, bytes) in &opts.raw_container_files {
            std::fs::write(dir.join("etc-nixos-nspawn/containers").join(file), bytes)?;
        }
        std::os::unix::fs::symlink(
            format!("{BIN_IN_HOST}/{GENERATOR}"),
            dir.join("generators").join(GENERATOR),
        )?;
        std::fs::write(dir.join("preset/00-nixos-nspawn-itest.preset"), PRESET)?;

        let mut kmsg = None;
        let clean: Vec<String> = vec![
            "-D".into(),
            os_root.display().to_string(),
            "--volatile=overlay".into(),
            "--private-network".into(),
            "--register=no".into(),
            "--keep-unit".into(),
            "-M".into(),
            machine.into(),
        ];
        let mut args: Vec<String> = vec![
            "-D".into(),
            os_root.display().to_string(),
            "--volatile=yes".into(),
            "--private-network".into(),
            "--register=no".into(),
            "--keep-unit".into(),
            "-M".into(),
            machine.into(),
            "--bind-ro=/nix/store".into(),
            // The real store database (nix-store/nix-env inside work), with
            // throwaway profiles over the real ones.
            "--bind=/nix/var/nix".into(),
        ];
        for (bind, source, target) in [
            ("--bind", dir.join("profiles"), "/nix/var/nix/profiles"),
            ("--bind", dir.join("etc-nixos-nspawn"), "/etc/nixos-nspawn"),
            ("--bind-ro", bin_dir.to_path_buf(), BIN_IN_HOST),
            (
                "--bind-ro",
                dir.join("generators"),
                "/etc/systemd/system-generators",
            ),
            (
                "--bind-ro",
                dir.join("preset"),
                "/etc/systemd/system-preset",
            ),
        ] {
            args.push(format!("{bind}={}:{target}", source.display()));
        }
        args.extend(opts.bind_ro.iter().map(|b| format!("--bind-ro={b}")));
        if opts.clean_os {
            args = clean;
        }
        if opts.kmsg {
            let fifo = dir.join("kmsg");
            cmd::run(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()], secs(5))?.ok()?;
            // Opened read-write, so writers never block and we never see EOF.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo)
                .context("opening the kmsg FIFO")?;
            let buf = Arc::new(Mutex::new(String::new()));
            let b2 = buf.clone();
            collect_into(f, b2);
            kmsg = Some(buf);
            args.push(format!("--bind={}:/dev/kmsg", fifo.display()));
            // The test host's journald would read /dev/kmsg too (ReadKMsg=
            // defaults to yes) and take lines out of the FIFO before the
            // suite sees them: the collision scenario missed its generator
            // line once in a loaded run. Only the suite reads it.
            let conf = dir.join("journald.conf.d");
            std::fs::create_dir_all(&conf)?;
            std::fs::write(conf.join("10-itest-kmsg.conf"), "[Journal]\nReadKMsg=no\n")?;
            args.push(format!(
                "--bind-ro={}:/etc/systemd/journald.conf.d",
                conf.display()
            ));
        }
        args.extend(["-b".into(), "systemd.firstboot=off".into()]);

        let console = File::create(dir.join("console.log"))?;
        let start = Instant::now();
        let child = Command::new("systemd-nspawn")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0)
            .spawn()
            .context("starting systemd-nspawn for the test host")?;
        let nspawn_pid = child.id() as i32;
        guard::register_nspawn(nspawn_pid, machine);
        let mut host = TestHost {
            machine: machine.to_string(),
            dir: dir.to_path_buf(),
            nspawn_pid,
            leader: 0,
            child: RefCell::new(Some(child)),
            kmsg,
            keep,
            boot_time: Duration::ZERO,
            systemd_version: String::new(),
        };
        host.leader = wait_for("the test host's systemd", secs(30), ms(20), || {
            if let Some(c) = host.child.borrow_mut().as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "systemd-nspawn exited ({st}) before booting:\n{}",
                        host.console_tail(30)
                    );
                }
            }
            Ok(guard::children_of(nspawn_pid).into_iter().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() == "systemd")
                    .unwrap_or(false)
            }))
        })?;
        let boot_timeout = opts.boot_timeout.unwrap_or(secs(90));
        let state = wait_for(
            "the test host to finish booting",
            boot_timeout,
            ms(100),
            || {
                let out =
                    host.exec_t(&["systemctl", "is-system-running", "--wait"], boot_timeout)?;
                let s = out.stdout.trim().to_string();
                Ok(match s.as_str() {
                    "running" | "degraded" => Some(s),
                    _ => None,
                })
            },
        )
        .with_context(|| format!("console:\n{}", host.console_tail(30)))?;
        host.boot_time = start.elapsed();
        host.systemd_version = host
            .ok(&["systemctl", "--version"])?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if state == "degraded" {
            let failed = host.exec(&["systemctl", "--failed", "--no-legend", "--plain"])?;
            eprintln!(
                "  note: test host {machine} is degraded: {}",
                failed.stdout.trim().replace('\n', "; ")
            );
        }
        Ok(host)
    }

    pub fn console_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        cmd::tail(&s, n)
    }

    /// Everything written to the host's `/dev/kmsg` so far (with `kmsg: true`).
    pub fn kmsg(&self) -> Option<String> {
        self.kmsg.as_ref().map(|b| b.lock().unwrap().clone())
    }

    /// Run a command inside the test host (all its namespaces), 60 s deadline.
    pub fn exec<S: AsRef<str>>(&self, argv: &[S]) -> Result<Out> {
        self.exec_t(argv, secs(60))
    }

    pub fn exec_t<S: AsRef<str>>(&self, argv: &[S], timeout: Duration) -> Result<Out> {
        let pid = self.leader.to_string();
        let mut full: Vec<&str> = vec!["nsenter", "-t", &pid, "-a", "--"];
        full.extend(argv.iter().map(|a| a.as_ref()));
        cmd::run(&full, timeout)
    }

    /// Run and require exit status 0; returns stdout.
    pub fn ok<S: AsRef<str>>(&self, argv: &[S]) -> Result<String> {
        self.exec(argv)?.ok()
    }

    /// `sh -c script` inside the test host; returns stdout, fails on non-zero.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.ok(&["/bin/sh", "-c", script])
    }

    /// The host's view of an absolute path, reachable from the suite.
    pub fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.leader, p))
    }

    pub fn read(&self, p: &str) -> Result<String> {
        std::fs::read_to_string(self.path(p))
            .with_context(|| format!("reading {p} in the test host"))
    }

    pub fn exists(&self, p: &str) -> bool {
        std::fs::symlink_metadata(self.path(p)).is_ok()
    }

    pub fn read_link(&self, p: &str) -> Result<String> {
        Ok(std::fs::read_link(self.path(p))
            .with_context(|| format!("reading link {p} in the test host"))?
            .display()
            .to_string())
    }

    /// Follow symlinks of a path inside the host to a non-link (absolute
    /// targets are resolved inside the host, not through `/proc/PID/root`,
    /// which canonicalize would escape).
    pub fn resolve(&self, p: &str) -> Result<String> {
        let mut cur = PathBuf::from(p);
        for _ in 0..40 {
            match std::fs::read_link(self.path(&cur.display().to_string())) {
                Ok(t) => {
                    cur = if t.is_absolute() {
                        t
                    } else {
                        cur.parent().unwrap_or(Path::new("/")).join(t)
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    return Ok(cur.display().to_string());
                }
                Err(e) => bail!("resolving {p} in the test host: {}: {e}", cur.display()),
            }
        }
        bail!("resolving {p} in the test host: too many links")
    }

    pub fn registry_file(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("etc-nixos-nspawn/containers/{name}.json"))
    }

    pub fn write_entry(&self, e: &Value) -> Result<()> {
        let name = e["name"].as_str().context("entry without a name")?;
        write_json(&self.registry_file(name), e)
    }

    pub fn remove_entry(&self, name: &str) -> Result<()> {
        std::fs::remove_file(self.registry_file(name))
            .with_context(|| format!("removing the registry entry of {name}"))
    }

    #[allow(dead_code)] // the demo no longer writes zone files; scenarios do
    pub fn write_zone(&self, z: &Value) -> Result<()> {
        let name = z["name"].as_str().context("zone without a name")?;
        write_json(
            &self.dir.join(format!("etc-nixos-nspawn/zones/{name}.json")),
            z,
        )
    }

    pub fn daemon_reload(&self) -> Result<()> {
        self.ok(&["systemctl", "daemon-reload"]).map(drop)
    }

    /// `systemctl show -p A,B unit` as a map.
    /// When the test host's systemd started user space (CLOCK_MONOTONIC, µs).
    pub fn userspace_monotonic_us(&self) -> Result<u64> {
        self.ok(&[
            "systemctl",
            "show",
            "-p",
            "UserspaceTimestampMonotonic",
            "--value",
        ])?
        .trim()
        .parse()
        .context("the test host's UserspaceTimestampMonotonic")
    }

    pub fn show(&self, unit: &str, props: &[&str]) -> Result<BTreeMap<String, String>> {
        let out = self.ok(&["systemctl", "show", "-p", &props.join(","), unit])?;
        Ok(parse_kv(&out))
    }

    /// `props` of many units in one `systemctl show` call: a map a unit.
    pub fn show_units(
        &self,
        units: &[String],
        props: &[&str],
    ) -> Result<Vec<BTreeMap<String, String>>> {
        let joined = props.join(",");
        let mut argv = vec!["systemctl", "show", "-p", &joined];
        argv.extend(units.iter().map(String::as_str));
        let out = self.ok(&argv)?;
        Ok(out.split("\n\n").map(parse_kv).collect())
    }

    pub fn prop(&self, unit: &str, prop: &str) -> Result<String> {
        self.show(unit, &[prop])?
            .remove(prop)
            .ok_or_else(|| anyhow!("systemctl show {unit} has no {prop}"))
    }

    /// The container's PID 1 (in the test host's PID namespace), from machined.
    pub fn machine_leader(&self, name: &str) -> Result<i32> {
        let out = self.ok(&["machinectl", "show", "-p", "Leader", "--value", name])?;
        out.trim()
            .parse()
            .with_context(|| format!("machinectl Leader of {name}: {out:?}"))
    }

    pub fn machine_show(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(parse_kv(&self.ok(&["machinectl", "show", name])?))
    }

    /// Run a command inside a running container (all its namespaces).
    pub fn in_container<S: AsRef<str>>(&self, name: &str, argv: &[S]) -> Result<Out> {
        let cl = self.machine_leader(name)?.to_string();
        let mut full: Vec<&str> = vec!["nsenter", "-t", &cl, "-a", "--"];
        full.extend(argv.iter().map(|a| a.as_ref()));
        self.exec(&full)
    }

    /// Global IPv4 addresses of `dev` inside a container.
    pub fn container_ipv4(&self, name: &str, dev: &str) -> Result<Vec<String>> {
        let out = self
            .in_container(name, &["ip", "-4", "-o", "addr", "show", "dev", dev])?
            .ok()?;
        Ok(parse_ipv4(&out))
    }

    /// Global IPv4 addresses of a link of the test host.
    pub fn host_ipv4(&self, dev: &str) -> Result<Vec<String>> {
        Ok(parse_ipv4(
            &self.ok(&["ip", "-4", "-o", "addr", "show", "dev", dev])?,
        ))
    }

    /// The kernel name of the test host's link that has `name` as its name or
    /// alternative name (nspawn shortens long `ve-` names).
    pub fn link_by_name(&self, name: &str) -> Result<Option<String>> {
        let out = self.ok(&["ip", "-o", "link", "show"])?;
        for line in out.lines() {
            let mut it = line.split_whitespace();
            let _idx = it.next();
            let Some(ifname) = it.next() else { continue };
            let ifname = ifname.trim_end_matches(':');
            let ifname = ifname.split('@').next().unwrap_or(ifname);
            let alts: Vec<&str> = line
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "altname")
                .map(|w| w[1])
                .collect();
            if ifname == name || alts.contains(&name) {
                return Ok(Some(ifname.to_string()));
            }
        }
        Ok(None)
    }

    /// `networkctl status LINK` as a map of the "Key: value" lines (continuation
    /// lines appended with a space).
    pub fn networkctl_status(&self, link: &str) -> Result<BTreeMap<String, String>> {
        let out = self.ok(&["networkctl", "status", "--no-pager", "-n", "0", link])?;
        let mut map = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in out.lines().skip(1) {
            if let Some((k, v)) = line.split_once(": ") {
                let k = k.trim();
                if !k.is_empty() && !k.contains("  ") {
                    map.insert(k.to_string(), v.trim().to_string());
                    last = Some(k.to_string());
                    continue;
                }
            }
            if let Some(k) = &last {
                let e: &mut String = map.entry(k.clone()).or_default();
                e.push(' ');
                e.push_str(line.trim());
            }
        }
        Ok(map)
    }

    /// The unit's journal of this boot (last `n` lines).
    pub fn journal(&self, unit: &str, n: usize) -> String {
        match self.exec(&[
            "journalctl",
            "-u",
            unit,
            "-b",
            "--no-pager",
            "-o",
            "short-monotonic",
        ]) {
            Ok(o) => cmd::tail(&o.stdout, n),
            Err(e) => format!("(journalctl failed: {e:#})"),
        }
    }

    /// The unit's journal without the guest's boot chatter on its console
    /// (`[  OK  ] Started …`, `Starting …`), for failure reports.
    pub fn journal_brief(&self, unit: &str, n: usize) -> String {
        let full = self.journal(unit, 5000);
        let kept: Vec<&str> = full
            .lines()
            .filter(|l| {
                let msg = l.split_once("]: ").map(|x| x.1).unwrap_or(l);
                !(msg.starts_with("[  OK  ]")
                    || msg.trim().is_empty()
                    || [
                        "Starting ",
                        "Stopping ",
                        "Mounting ",
                        "Unmounting ",
                        "Stopped ",
                        "Finished ",
                        "Reached target",
                        "Listening on",
                        "Created slice",
                        "Started ",
                    ]
                    .iter()
                    .any(|p| msg.trim_start().starts_with(p) && l.contains("systemd-nspawn[")))
            })
            .collect();
        cmd::tail(&kept.join("\n"), n)
    }

    /// What to print when a test on this host failed: the journal of every
    /// container unit systemd knows, networkd's, the generator's output and
    /// the console.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, t: &str| {
            s.push_str(&format!("----- [{}] {t}\n", self.machine));
        };
        let units = self
            .exec(&[
                "systemctl",
                "list-units",
                "--all",
                "--plain",
                "--no-legend",
                "systemd-nspawn@*",
            ])
            .map(|o| o.stdout)
            .unwrap_or_default();
        line(&mut s, "systemctl list-units systemd-nspawn@*");
        s.push_str(&units);
        for unit in units.lines().filter_map(|l| l.split_whitespace().next()) {
            line(&mut s, &format!("journalctl -u {unit} -b --no-pager"));
            s.push_str(&self.journal_brief(unit, 50));
            s.push('\n');
        }
        line(&mut s, "journalctl -u systemd-networkd -b --no-pager");
        s.push_str(&self.journal("systemd-networkd.service", 40));
        s.push('\n');
        if let Ok(o) = self.exec(&["networkctl", "list", "--no-pager"]) {
            line(&mut s, "networkctl list");
            s.push_str(&o.stdout);
        }
        if let Ok(o) = self.exec(&[
            "sh",
            "-c",
            "ls -la /run/systemd/generator/machines.target.wants /run/systemd/generator/multi-user.target.wants /run/systemd/nspawn /run/systemd/network /run/nixos-nspawn/applied 2>&1; ls -d /run/systemd/generator/systemd-nspawn@* 2>&1",
        ]) {
            line(&mut s, "generated files");
            s.push_str(&o.stdout);
        }
        if let Some(k) = self.kmsg() {
            line(&mut s, "kmsg (nixos-nspawn lines)");
            for l in k.lines().filter(|l| l.contains("nixos-nspawn")) {
                s.push_str(l);
                s.push('\n');
            }
        }
        line(&mut s, "console (tail)");
        s.push_str(&self.console_tail(15));
        s.push('\n');
        s
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "  kept test host {}: enter with `nsenter -t {} -a bash`; stop with `kill {}` and `rm -rf {}`",
                self.machine,
                self.leader,
                self.nspawn_pid,
                self.dir.display()
            );
            guard::release_nspawn(self.nspawn_pid);
            guard::release_dir(&self.dir);
            if let Some(c) = self.child.borrow_mut().take() {
                std::mem::forget(c);
            }
            return;
        }
        let mut child = self.child.borrow_mut().take();
        guard::stop_nspawn(self.nspawn_pid, &self.machine, child.as_mut());
        if !guard::alive(self.nspawn_pid) {
            guard::release_nspawn(self.nspawn_pid);
        }
        guard::remove_tmp_dir(&self.dir);
        guard::release_dir(&self.dir);
    }
}

pub fn write_json(path: &Path, v: &Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn parse_kv(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `ip -4 -o addr` output → global (non link-local) addresses with prefix.
pub fn parse_ipv4(out: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in out.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = toks.iter().position(|t| *t == "inet") {
            if let Some(a) = toks.get(i + 1) {
                if !a.starts_with("169.254.") && !a.starts_with("127.") {
                    v.push(a.to_string());
                }
            }
        }
    }
    v
}

/// The address part of `a.b.c.d/n`.
pub fn addr(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// Is `ip` inside `cidr`?
pub fn in_subnet(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| -> Option<u32> {
        let o: Vec<u32> = s
            .split('.')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (o.len() == 4).then(|| (o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3])
    };
    let (net, len) = match cidr.split_once('/') {
        Some((n, l)) => (n, l.parse::<u32>().unwrap_or(32)),
        None => (cidr, 32),
    };
    match (parse(addr(ip)), parse(net)) {
        (Some(a), Some(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            a & mask == n & mask
        }
        _ => false,
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Append what `from` gives (as text, lossily) to `into`, on a thread of its
/// own, until its end.
pub(crate) fn collect_into(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
}
