//! Test support: a fake systemd that records what it is asked and keeps unit
//! states, and a context over a temporary root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Result};

use nixos_nspawn_core::Root;

use crate::systemd::{Attach, GuestUnit, Systemd, Tool, UnitDetails, UnitState, Verb, Watch};
use crate::{nixbuild, Ctx};

/// The exit code of the error a command returned (panics if it succeeded).
pub fn exit_of<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    crate::exit_code(&r.unwrap_err())
}

/// Held by the tests that open a pseudo terminal master (and count ours).
pub static PTY_MASTERS: Mutex<()> = Mutex::new(());

/// A pseudo terminal master of ours and its index (hold [`PTY_MASTERS`]);
/// `None` where there is no `/dev/ptmx`.
pub fn open_ptmx() -> Option<(std::fs::File, u32)> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .ok()?;
    let info = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&master)
    ))
    .unwrap();
    let index = crate::systemd::ptmx_index(&info).expect("tty-index in a ptmx fdinfo");
    Some((master, index))
}

#[derive(Default)]
pub struct FakeSystemd {
    pub unavailable: bool,
    pub calls: Mutex<Vec<String>>,
    pub states: Mutex<BTreeMap<String, UnitState>>,
    /// `"reload web"`, `"start web"`, `"daemon-reload"`: fail these.
    pub fail: Mutex<BTreeSet<String>>,
    pub addresses: BTreeMap<String, Vec<String>>,
    /// No generator installed: units get no drop-in from it.
    pub no_generator: bool,
    /// What `network_description` returns (`None`: an error).
    pub network: Option<serde_json::Value>,
    /// Exit status of `attached` programs (default 0).
    pub attached_status: Mutex<i32>,
    /// What `guest_units` answers, one answer per look while an
    /// `attached_watched` program runs (it ends after the last, or when the
    /// watcher ends it).
    pub guest_looks: Mutex<Vec<Vec<GuestUnit>>>,
    /// The program ends on its own once the container's systemd was told a
    /// cgroup is empty (as machinectl does when the unit then ends).
    pub ends_when_told: bool,
    /// The program ends (as when the user left it) with this many looks
    /// still to answer, for what comes after it.
    pub looks_after: usize,
}

impl FakeSystemd {
    pub fn new() -> FakeSystemd {
        FakeSystemd::default()
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    pub fn set_running(&self, name: &str) {
        self.states
            .lock()
            .unwrap()
            .insert(name.into(), UnitState::new("active", "running"));
    }

    pub fn fail_on(&self, what: &str) {
        self.fail.lock().unwrap().insert(what.into());
    }

    fn record(&self, call: String) -> Result<()> {
        self.calls.lock().unwrap().push(call.clone());
        if self.fail.lock().unwrap().contains(&call) {
            bail!("systemctl {call} failed (fake)");
        }
        Ok(())
    }

    fn state(&self, name: &str) -> UnitState {
        self.states
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_else(|| UnitState::new("inactive", "dead"))
    }
}

impl Systemd for FakeSystemd {
    fn available(&self) -> bool {
        !self.unavailable
    }
    fn daemon_reload(&self) -> Result<()> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        self.record("daemon-reload".into())
    }
    fn networkd_reload(&self, delete: &[String]) -> Result<()> {
        self.record("networkctl reload".into())?;
        for link in delete {
            self.record(format!("networkctl delete {link}"))?;
        }
        Ok(())
    }
    fn unit(&self, verb: Verb, name: &str) -> Result<()> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        self.record(format!("{} {name}", verb.as_str()))?;
        let mut states = self.states.lock().unwrap();
        match verb {
            Verb::Start | Verb::Restart => {
                states.insert(name.into(), UnitState::new("active", "running"));
            }
            Verb::Stop => {
                states.insert(name.into(), UnitState::new("inactive", "dead"));
            }
            Verb::Reload => {}
        }
        Ok(())
    }
    fn unit_states(&self) -> Result<BTreeMap<String, UnitState>> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        self.calls.lock().unwrap().push("unit-states".into());
        Ok(self.states.lock().unwrap().clone())
    }
    fn unit_details(&self, name: &str) -> Result<UnitDetails> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        Ok(UnitDetails {
            state: self.state(name),
            main_pid: self.state(name).is_running().then_some(4242),
            result: Some("success".into()),
            since: None,
            drop_ins: if self.no_generator {
                Vec::new()
            } else {
                vec![format!(
                    "/run/systemd/generator/{}.d/{}",
                    nixos_nspawn_core::paths::unit_name(name),
                    nixos_nspawn_core::render::DROPIN_NAME
                )]
            },
        })
    }
    fn other_unit(&self, unit: &str) -> Result<UnitState> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        Ok(self.state(unit))
    }
    fn leader(&self, name: &str) -> Option<u32> {
        self.state(name).is_running().then_some(4243)
    }
    fn addresses(&self, name: &str) -> Vec<String> {
        self.addresses.get(name).cloned().unwrap_or_default()
    }
    fn all_addresses(&self) -> BTreeMap<String, Vec<String>> {
        self.addresses.clone()
    }
    fn drop_ins(&self, names: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
        if self.unavailable {
            bail!("systemd is not running here");
        }
        self.calls.lock().unwrap().push("show drop-ins".into());
        names
            .iter()
            .map(|n| Ok((n.clone(), self.unit_details(n)?.drop_ins)))
            .collect()
    }
    fn network_description(&self) -> Result<serde_json::Value> {
        match &self.network {
            Some(v) => Ok(v.clone()),
            None => bail!("networkctl failed (fake)"),
        }
    }
    fn terminate(&self, name: &str) -> Result<()> {
        self.record(format!("terminate {name}"))?;
        self.states
            .lock()
            .unwrap()
            .insert(name.into(), UnitState::new("inactive", "dead"));
        Ok(())
    }
    fn attached(&self, tool: Tool, args: &[String], attach: Attach) -> Result<i32> {
        let how = match attach {
            Attach::Inherit => "inherit",
            Attach::NoTerminal => "no-terminal",
        };
        self.record(format!("{} [{how}] {}", tool.name(), args.join(" ")))?;
        Ok(*self.attached_status.lock().unwrap())
    }
    fn attached_watched(
        &self,
        tool: Tool,
        args: &[String],
        attach: Attach,
        _every: std::time::Duration,
        watch: &mut dyn FnMut(u32) -> Watch,
    ) -> Result<i32> {
        let status = self.attached(tool, args, attach)?;
        // Our PID as the program's: a test holds the pty master it has.
        for _ in 0..100 {
            if self.guest_looks.lock().unwrap().len() <= self.looks_after {
                return Ok(status);
            }
            let told = |calls: &[String]| calls.iter().any(|c| c.starts_with("cgroup-empty "));
            if self.ends_when_told && told(&self.calls()) {
                return Ok(status);
            }
            if watch(std::process::id()) == Watch::End {
                self.record("sigterm".into())?;
                return Ok(143);
            }
        }
        bail!("the watcher looked 100 times without using the looks (fake)")
    }
    fn guest_units(&self, name: &str, pattern: &str) -> Result<Vec<GuestUnit>> {
        self.record(format!("guest-units {name} {pattern}"))?;
        let mut looks = self.guest_looks.lock().unwrap();
        if looks.is_empty() {
            bail!("no more looks (fake)");
        }
        Ok(looks.remove(0))
    }
    fn guest_cgroup_empty(&self, name: &str, cgroup: &str) -> Result<()> {
        self.record(format!("cgroup-empty {name} {cgroup}"))
    }
}

/// A temporary root plus a fake systemd.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sys: FakeSystemd,
    pub out: Vec<u8>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            sys: FakeSystemd::new(),
            out: Vec::new(),
        }
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path().join("root"))
    }

    pub fn ctx(&mut self) -> Ctx<'_> {
        let nix = nixbuild::Nix {
            nix_build: "nix-build".into(),
            nix: "nix".into(),
            nix_store: "nix-store".into(),
            nix_instantiate: "nix-instantiate".into(),
            skip_version_check: false,
            nix_dir: None,
            nixpkgs: None,
            extra_args: vec!["--option".into(), "substitute".into(), "false".into()],
        };
        Ctx {
            root: Root::new(self.dir.path().join("root")),
            sys: &self.sys,
            nix,
            out: &mut self.out,
        }
    }

    /// Take what was printed.
    pub fn output(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// A fake system directory (not in the store): `init`,
    /// `bin/switch-to-configuration`, optionally `nixos-nspawn/entry.json`.
    pub fn system(&self, tag: &str, entry: Option<serde_json::Value>) -> PathBuf {
        make_system(&self.dir.path().join("systems"), tag, entry)
    }
}

pub fn make_system(dir: &Path, tag: &str, entry: Option<serde_json::Value>) -> PathBuf {
    let s = dir.join(format!("system-{tag}"));
    std::fs::create_dir_all(s.join("bin")).unwrap();
    for f in ["init", "bin/switch-to-configuration"] {
        nixos_nspawn_core::testing::write_script(s.join(f), "#!/bin/sh\n");
    }
    if let Some(e) = entry {
        std::fs::create_dir_all(s.join("nixos-nspawn")).unwrap();
        std::fs::write(s.join("nixos-nspawn/entry.json"), e.to_string()).unwrap();
    }
    s
}
