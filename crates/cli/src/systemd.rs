//! Talking to systemd: `systemctl`, `machinectl` and `busctl` subprocesses
//! behind the [`Systemd`] trait, so the commands' tests use a fake.
//!
//! Programs: `$NIXOS_NSPAWN_SYSTEMCTL`, `$NIXOS_NSPAWN_MACHINECTL`,
//! `$NIXOS_NSPAWN_BUSCTL`, `$NIXOS_NSPAWN_NETWORKCTL` (an empty value: not available), else the path
//! fixed at build time (the same variable names, for the Nix package), else
//! the name looked up in `PATH`, used only when systemd runs
//! (`/run/systemd/system` exists, as `sd_booted(3)` checks). Without systemd,
//! `list` shows every state as "unknown" without spawning anything.
//!
//! Everything here is parsed from output that is stable on systemd 252 and
//! later: `systemctl list-units --plain --no-legend --full`, `systemctl show`
//! (`Key=value` lines), `machinectl show -p Leader --value`, `machinectl list
//! --max-addresses=all` and `busctl --json=short call … GetMachineAddresses`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use nixos_nspawn::paths;

/// What `systemctl` does to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Reload,
    Restart,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Reload => "reload",
            Verb::Restart => "restart",
        }
    }
}

/// A unit's state (`ActiveState`, `SubState`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
}

impl UnitState {
    pub fn new(active: &str, sub: &str) -> UnitState {
        UnitState {
            active_state: active.to_owned(),
            sub_state: sub.to_owned(),
        }
    }

    /// Running for the activation plan: active, or on its way there, or
    /// reloading. (`deactivating` is on its way out.)
    pub fn is_running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading"
        )
    }

    /// One word for people: running, starting, reloading, stopping, failed, stopped.
    pub fn word(&self) -> &str {
        match self.active_state.as_str() {
            "active" => "running",
            "activating" => "starting",
            "reloading" => "reloading",
            "deactivating" => "stopping",
            "failed" => "failed",
            "inactive" | "" => "stopped",
            other => other,
        }
    }
}

/// More about one unit, from `systemctl show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitDetails {
    #[serde(flatten)]
    pub state: UnitState,
    pub main_pid: Option<u32>,
    /// `Result=`: success, exit-code, timeout, …
    pub result: Option<String>,
    /// `ActiveEnterTimestamp=`, as systemctl prints it.
    pub since: Option<String>,
}

pub trait Systemd: Sync {
    /// Whether systemd can be asked at all.
    fn available(&self) -> bool;
    fn daemon_reload(&self) -> Result<()>;
    /// `networkctl reload` (called through [`nixos_nspawn::networkd::sync`]
    /// only when our networkd files changed).
    fn networkd_reload(&self) -> Result<()>;
    /// `systemctl VERB systemd-nspawn@NAME.service`, waiting for the job.
    fn unit(&self, verb: Verb, name: &str) -> Result<()>;
    /// The states of all loaded `systemd-nspawn@*` units, by machine name
    /// (one call). Units that are not loaded are not listed: they are stopped.
    fn unit_states(&self) -> Result<BTreeMap<String, UnitState>>;
    /// One container's unit.
    fn unit_details(&self, name: &str) -> Result<UnitDetails>;
    /// The state of any unit by its full name (e.g. `container@web.service`).
    fn other_unit(&self, unit: &str) -> Result<UnitState>;
    /// The machine's leader PID, when machined knows the machine.
    fn leader(&self, name: &str) -> Option<u32>;
    /// The machine's addresses (one machine).
    fn addresses(&self, name: &str) -> Vec<String>;
    /// The addresses of every running machine (one call).
    fn all_addresses(&self) -> BTreeMap<String, Vec<String>>;
}

/// The real thing: subprocesses.
#[derive(Debug, Clone, Default)]
pub struct Subprocess {
    pub systemctl: Option<PathBuf>,
    pub networkctl: Option<PathBuf>,
    pub machinectl: Option<PathBuf>,
    pub busctl: Option<PathBuf>,
}

/// Whether systemd is the running service manager (`sd_booted(3)`).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn tool(env: &str, built: Option<&'static str>, name: &str, booted: bool) -> Option<PathBuf> {
    match std::env::var_os(env) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None if booted => Some(PathBuf::from(built.unwrap_or(name))),
        None => None,
    }
}

impl Subprocess {
    pub fn from_env() -> Subprocess {
        let booted = booted();
        Subprocess {
            systemctl: tool(
                "NIXOS_NSPAWN_SYSTEMCTL",
                option_env!("NIXOS_NSPAWN_SYSTEMCTL"),
                "systemctl",
                booted,
            ),
            networkctl: tool(
                "NIXOS_NSPAWN_NETWORKCTL",
                option_env!("NIXOS_NSPAWN_NETWORKCTL"),
                "networkctl",
                booted,
            ),
            machinectl: tool(
                "NIXOS_NSPAWN_MACHINECTL",
                option_env!("NIXOS_NSPAWN_MACHINECTL"),
                "machinectl",
                booted,
            ),
            busctl: tool(
                "NIXOS_NSPAWN_BUSCTL",
                option_env!("NIXOS_NSPAWN_BUSCTL"),
                "busctl",
                booted,
            ),
        }
    }

    fn systemctl(&self) -> Result<&Path> {
        match &self.systemctl {
            Some(p) => Ok(p),
            None => bail!(
                "systemd is not running here (no /run/systemd/system; set NIXOS_NSPAWN_SYSTEMCTL to use another systemctl)"
            ),
        }
    }
}

/// Run a program, stdout captured, stderr captured too (returned in the error).
fn capture(program: &Path, args: &[&str]) -> Result<String> {
    log::debug!("running {} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{} {} failed ({}){}{}",
            program.display(),
            args.join(" "),
            out.status,
            if err.trim().is_empty() { "" } else { ": " },
            err.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a program whose messages are for the user (systemctl, a Nix build's
/// progress): stderr passed through, stdout discarded.
pub(crate) fn run_visible<S: AsRef<str>>(program: &Path, args: &[S]) -> Result<()> {
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

impl Systemd for Subprocess {
    fn available(&self) -> bool {
        self.systemctl.is_some()
    }

    fn daemon_reload(&self) -> Result<()> {
        run_visible(self.systemctl()?, &["daemon-reload"])
    }

    fn networkd_reload(&self) -> Result<()> {
        match &self.networkctl {
            Some(p) => nixos_nspawn::networkd::networkctl_reload(p),
            None => {
                bail!("no networkctl (NIXOS_NSPAWN_NETWORKCTL is empty, or systemd is not running)")
            }
        }
    }

    fn unit(&self, verb: Verb, name: &str) -> Result<()> {
        let unit = paths::unit_name(name);
        run_visible(
            self.systemctl()?,
            &["--no-ask-password", verb.as_str(), &unit],
        )
    }

    fn unit_states(&self) -> Result<BTreeMap<String, UnitState>> {
        let out = capture(
            self.systemctl()?,
            &[
                "list-units",
                "--all",
                "--plain",
                "--no-legend",
                "--full",
                "--no-pager",
                "--type=service",
                "systemd-nspawn@*",
            ],
        )?;
        Ok(parse_list_units(&out))
    }

    fn unit_details(&self, name: &str) -> Result<UnitDetails> {
        let unit = paths::unit_name(name);
        let out = capture(
            self.systemctl()?,
            &[
                "show",
                "--property=ActiveState,SubState,MainPID,Result,ActiveEnterTimestamp",
                &unit,
            ],
        )?;
        Ok(parse_show(&out))
    }

    fn other_unit(&self, unit: &str) -> Result<UnitState> {
        let out = capture(
            self.systemctl()?,
            &["show", "--property=ActiveState,SubState", unit],
        )?;
        Ok(parse_show(&out).state)
    }

    fn leader(&self, name: &str) -> Option<u32> {
        let m = self.machinectl.as_deref()?;
        let out = capture(m, &["show", name, "--property=Leader", "--value"]).ok()?;
        out.trim().parse().ok().filter(|p| *p > 0)
    }

    fn addresses(&self, name: &str) -> Vec<String> {
        let Some(b) = self.busctl.as_deref() else {
            return Vec::new();
        };
        capture(
            b,
            &[
                "--json=short",
                "call",
                "org.freedesktop.machine1",
                "/org/freedesktop/machine1",
                "org.freedesktop.machine1.Manager",
                "GetMachineAddresses",
                "s",
                name,
            ],
        )
        .map(|out| parse_busctl_addresses(&out))
        .unwrap_or_default()
    }

    fn all_addresses(&self) -> BTreeMap<String, Vec<String>> {
        let Some(m) = self.machinectl.as_deref() else {
            return BTreeMap::new();
        };
        capture(
            m,
            &[
                "list",
                "--no-legend",
                "--no-pager",
                "--full",
                "--max-addresses=all",
            ],
        )
        .map(|out| parse_machinectl_list(&out))
        .unwrap_or_default()
    }
}

/// Undo systemd's `\xNN` unit name escaping (instances written by hand).
fn unescape_unit(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1] == b'x' {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The machine name of a `systemd-nspawn@NAME.service` unit.
pub fn machine_of_unit(unit: &str) -> Option<String> {
    let inst = unit
        .strip_prefix("systemd-nspawn@")?
        .strip_suffix(".service")?;
    (!inst.is_empty()).then(|| unescape_unit(inst))
}

/// `systemctl list-units --plain --no-legend --full`: `UNIT LOAD ACTIVE SUB DESCRIPTION…`
/// (a leading `●` marks failed units on some versions).
pub fn parse_list_units(out: &str) -> BTreeMap<String, UnitState> {
    let mut states = BTreeMap::new();
    for line in out.lines() {
        let mut words = line
            .split_whitespace()
            .skip_while(|w| !w.starts_with("systemd-nspawn@"));
        let (Some(unit), Some(_load), Some(active), Some(sub)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if let Some(name) = machine_of_unit(unit) {
            states.insert(name, UnitState::new(active, sub));
        }
    }
    states
}

/// `systemctl show`: `Key=value` lines.
pub fn parse_show(out: &str) -> UnitDetails {
    let mut d = UnitDetails::default();
    for line in out.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k {
            "ActiveState" => d.state.active_state = v.to_owned(),
            "SubState" => d.state.sub_state = v.to_owned(),
            "MainPID" => d.main_pid = v.parse().ok().filter(|p| *p > 0),
            "Result" if !v.is_empty() => d.result = Some(v.to_owned()),
            "ActiveEnterTimestamp" if !v.is_empty() && v != "n/a" => d.since = Some(v.to_owned()),
            _ => {}
        }
    }
    d
}

fn looks_like_address(s: &str) -> bool {
    let core = s.split('%').next().unwrap_or(s);
    core.parse::<std::net::IpAddr>().is_ok()
}

/// `machinectl list --no-legend --full --max-addresses=all`: rows of
/// `MACHINE CLASS SERVICE OS VERSION ADDRESS`, further addresses of a machine
/// on continuation lines (first column blank). Empty cells print as `-`.
pub fn parse_machinectl_list(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with(char::is_whitespace) {
            if let Some(name) = &current {
                map.entry(name.clone()).or_default().extend(
                    words
                        .into_iter()
                        .filter(|w| looks_like_address(w))
                        .map(str::to_owned),
                );
            }
            continue;
        }
        let name = words[0].to_owned();
        let addrs: Vec<String> = words
            .iter()
            .skip(5)
            .filter(|w| looks_like_address(w))
            .map(|w| (*w).to_owned())
            .collect();
        map.entry(name.clone()).or_default().extend(addrs);
        current = Some(name);
    }
    map
}

/// `busctl --json=short call … GetMachineAddresses s NAME`:
/// `{"type":"a(iay)","data":[[[2,[10,0,0,2]],[10,[254,128,…]]]]}`.
pub fn parse_busctl_addresses(out: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(out) else {
        return Vec::new();
    };
    let Some(list) = v
        .get("data")
        .and_then(|d| d.get(0))
        .and_then(|d| d.as_array())
    else {
        return Vec::new();
    };
    let mut addrs = Vec::new();
    for item in list {
        let (Some(family), Some(bytes)) = (
            item.get(0).and_then(|f| f.as_i64()),
            item.get(1).and_then(|b| b.as_array()),
        ) else {
            continue;
        };
        let bytes: Vec<u8> = bytes
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        match (family, bytes.len()) {
            (2, 4) => addrs
                .push(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
            (10, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&bytes);
                addrs.push(std::net::Ipv6Addr::from(a).to_string());
            }
            _ => {}
        }
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_units() {
        let out = "systemd-nspawn@web.service loaded active running Container web\n\
                   ● systemd-nspawn@db.service loaded failed failed NixOS container db\n\
                   systemd-nspawn@a\\x2db.service loaded inactive dead Container a-b\n\
                   garbage\n";
        let s = parse_list_units(out);
        assert_eq!(s["web"], UnitState::new("active", "running"));
        assert!(s["web"].is_running());
        assert_eq!(s["db"].word(), "failed");
        assert!(!s["a-b"].is_running());
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn show() {
        let d = parse_show(
            "ActiveState=active\nSubState=running\nMainPID=42\nResult=success\nActiveEnterTimestamp=Mon 2024-01-01 10:00:00 UTC\n",
        );
        assert_eq!(d.state.word(), "running");
        assert_eq!(d.main_pid, Some(42));
        assert_eq!(d.result.as_deref(), Some("success"));
        let d = parse_show("ActiveState=inactive\nMainPID=0\nActiveEnterTimestamp=\n");
        assert_eq!(d.main_pid, None);
        assert_eq!(d.since, None);
    }

    #[test]
    fn machinectl_list() {
        let out = "web container systemd-nspawn nixos 24.05 10.0.0.2\n\
                   \x20                                                  fe80::1%3\n\
                   db  container systemd-nspawn -     -     -\n";
        let m = parse_machinectl_list(out);
        assert_eq!(m["web"], vec!["10.0.0.2", "fe80::1%3"]);
        assert!(m["db"].is_empty());
    }

    #[test]
    fn busctl_addresses() {
        let out = r#"{"type":"a(iay)","data":[[[2,[10,0,0,2]],[10,[254,128,0,0,0,0,0,0,0,0,0,0,0,0,0,1]]]]}"#;
        assert_eq!(parse_busctl_addresses(out), vec!["10.0.0.2", "fe80::1"]);
        assert!(parse_busctl_addresses("nonsense").is_empty());
    }

    #[test]
    fn unit_names() {
        assert_eq!(
            machine_of_unit("systemd-nspawn@web.service").as_deref(),
            Some("web")
        );
        assert_eq!(
            machine_of_unit("systemd-nspawn@a\\x2db.service").as_deref(),
            Some("a-b")
        );
        assert_eq!(machine_of_unit("container@web.service"), None);
    }
}
