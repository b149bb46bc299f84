//! Fake NixOS systems built with the real Nix (`tests/fixtures/system.nix`)
//! and registry entries that use them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::cmd;
use crate::host::secs;

/// What the fake system does.
#[derive(Clone, Debug)]
pub struct Sys {
    pub tag: String,
    pub switch_exit: i32,
    pub http_port: u16,
    pub networkd: bool,
    /// `nixos-nspawn/entry.json` of the system (the settings it brings along).
    pub entry: Option<String>,
}

impl Sys {
    pub fn new(tag: &str) -> Sys {
        Sys {
            tag: tag.to_string(),
            switch_exit: 0,
            http_port: 0,
            networkd: true,
            entry: None,
        }
    }
    /// The system brings these registry settings along (`entry.json`).
    pub fn entry(mut self, entry: &Value) -> Sys {
        self.entry = Some(entry.to_string());
        self
    }
    pub fn switch_exit(mut self, code: i32) -> Sys {
        self.switch_exit = code;
        self
    }
    pub fn http(mut self, port: u16) -> Sys {
        self.http_port = port;
        self
    }
    pub fn no_networkd(mut self) -> Sys {
        self.networkd = false;
        self
    }
}

pub struct Fixtures {
    dir: PathBuf,
    cache: RefCell<BTreeMap<String, String>>,
}

impl Fixtures {
    pub fn new() -> Result<Fixtures> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let dir = dir
            .canonicalize()
            .with_context(|| format!("fixtures directory {}", dir.display()))?;
        Ok(Fixtures {
            dir,
            cache: RefCell::new(BTreeMap::new()),
        })
    }

    /// Build (or reuse) the store path of a fake system.
    pub fn system(&self, s: &Sys) -> Result<String> {
        let key = format!("{s:?}");
        if let Some(p) = self.cache.borrow().get(&key) {
            return Ok(p.clone());
        }
        let nix = self.dir.join("system.nix");
        let entry_args: Vec<&str> = match &s.entry {
            Some(e) => vec!["--argstr", "entryJson", e],
            None => vec![],
        };
        let (switch_exit, http_port) = (s.switch_exit.to_string(), s.http_port.to_string());
        let mut argv = vec![
            "nix-build",
            nix.to_str().unwrap(),
            "--no-out-link",
            "--option",
            "substitute",
            "false",
            "--argstr",
            "tag",
            &s.tag,
            "--arg",
            "switchExit",
            &switch_exit,
            "--arg",
            "httpPort",
            &http_port,
            "--arg",
            "networkd",
            if s.networkd { "true" } else { "false" },
        ];
        argv.extend(entry_args);
        let out = cmd::run(&argv, secs(180))?
            .ok()
            .context("building a fake NixOS system with nix-build")?;
        let path = out.lines().last().unwrap_or("").trim().to_string();
        if !path.starts_with("/nix/store/") {
            bail!("nix-build printed {out:?}, not a store path");
        }
        self.cache.borrow_mut().insert(key, path.clone());
        Ok(path)
    }
}

/// A registry entry (schema v1) for `system`: the host's `/usr` bound read-only
/// (the fake systems run the host's systemd), autoStart off, the rest default.
pub fn entry(name: &str, system: &str) -> Value {
    json!({
        "version": 1,
        "name": name,
        "system": system,
        "autoStart": false,
        "bindMounts": ["/usr:/usr:ro"],
    })
}

pub fn zone(name: &str) -> Value {
    json!({ "version": 1, "name": name, "network": null, "netdev": null })
}
