//! What the runs share: options, a seeded random generator, test systems in
//! the Nix store, a throwaway root, running the CLI against it, and reading
//! back the registry and the profiles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nixos_nspawn_core::registry::{self, Entry};
use nixos_nspawn_core::{paths, profile, Root};

/// One check's verdict, with the figures it measured.
pub struct Verdict {
    pub name: String,
    pub failures: Vec<String>,
    /// Failures of a known kind: (kind, count, first example).
    pub kinds: Vec<(String, usize, String)>,
}

impl Verdict {
    pub fn new(name: &str) -> Verdict {
        Verdict {
            name: name.into(),
            failures: Vec::new(),
            kinds: Vec::new(),
        }
    }

    /// A failure of a recognised kind: counted, the first one shown.
    pub fn fail_kind(&mut self, kind: &str, what: impl Into<String>) {
        let what = what.into();
        match self.kinds.iter_mut().find(|(k, _, _)| k == kind) {
            Some(slot) => slot.1 += 1,
            None => {
                println!("  FAIL ({kind}): {what}");
                self.kinds.push((kind.into(), 1, what.clone()));
            }
        }
        self.failures.push(what);
    }

    /// The kinds with their counts, for the summary.
    pub fn print_kinds(&self) {
        for (k, n, _) in &self.kinds {
            println!("  {n:>5} x {k}");
        }
    }

    /// The throwaway root a check runs in, or `None` with why it could not
    /// be made recorded as this check's failure.
    pub fn env(&mut self, opts: &Opts, systems: &[String]) -> Option<Env> {
        Env::new(opts, systems).map_err(|e| self.fail(e)).ok()
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        let what = what.into();
        if self.failures.len() < 20 {
            println!("  FAIL: {what}");
        } else if self.failures.len() == 20 {
            println!("  (further failures not shown)");
        }
        self.failures.push(what);
    }

    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }
}

pub struct Opts {
    pub quick: bool,
    pub bin_dir: PathBuf,
    pub seed: u64,
    pub kills: usize,
    pub procs: usize,
    pub edits: usize,
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `n` distinct NixOS-shaped systems in the Nix store (an executable
/// `init` and `bin/switch-to-configuration`), made with `nix-store --add`.
pub fn store_systems(n: usize) -> Result<Vec<String>, String> {
    let d = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..n {
        let sys = d.path().join(format!("nixos-nspawn-hardening-system-{i}"));
        std::fs::create_dir_all(sys.join("bin")).map_err(|e| e.to_string())?;
        let script = format!("#!/bin/sh\n# hardening test system {i}\nexit 0\n");
        for f in ["init", "bin/switch-to-configuration"] {
            std::fs::write(sys.join(f), &script).map_err(|e| e.to_string())?;
            let mut perm = std::fs::metadata(sys.join(f))
                .map_err(|e| e.to_string())?
                .permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(sys.join(f), perm).map_err(|e| e.to_string())?;
        }
        let o = Command::new("nix-store")
            .arg("--add")
            .arg(&sys)
            .output()
            .map_err(|e| format!("running nix-store --add: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "nix-store --add failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        out.push(String::from_utf8_lossy(&o.stdout).trim().to_owned());
    }
    Ok(out)
}

/// A throwaway root with the test systems copied into its `nix/store` (the
/// bootstrap helper looks for `<system>/init` under the root).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub bin_dir: PathBuf,
    pub systems: Vec<String>,
}

impl Env {
    pub fn new(opts: &Opts, systems: &[String]) -> Result<Env, String> {
        let dir = tempfile::Builder::new()
            .prefix("nixos-nspawn-hardening.")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let store = dir.path().join("nix/store");
        std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
        for s in systems {
            let st = Command::new("cp")
                .arg("-a")
                .arg(s)
                .arg(&store)
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("copying {s} into the test root failed"));
            }
        }
        Ok(Env {
            dir,
            bin_dir: opts.bin_dir.clone(),
            systems: systems.to_vec(),
        })
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    /// A binary from the bin dir, running against this root, systemd
    /// unavailable (the CLI's documented overrides: empty program names),
    /// logging to stderr.
    pub fn command(&self, exe: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(exe));
        c.env("NIXOS_NSPAWN_ROOT", self.dir.path())
            .env("NIXOS_NSPAWN_SYSTEMCTL", "")
            .env("NIXOS_NSPAWN_MACHINECTL", "")
            .env("NIXOS_NSPAWN_BUSCTL", "")
            .env("NIXOS_NSPAWN_NETWORKCTL", "/bin/true")
            .env("NIXOS_NSPAWN_LOG", "stderr")
            .stdin(Stdio::null());
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command("nixos-nspawn")
            .args(args)
            .output()
            .expect("running nixos-nspawn")
    }

    pub fn entry_bytes(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root().join(paths::registry_file(name))).ok()
    }

    pub fn entry(&self, name: &str) -> Option<Entry> {
        let bytes = self.entry_bytes(name)?;
        registry::parse_entry(&paths::registry_file(name), &bytes).ok()
    }

    pub fn profile_dir(&self, name: &str) -> PathBuf {
        self.root().join(paths::profile_dir(name))
    }

    /// The profile's current system, `None` without a profile (or without a
    /// current generation).
    pub fn profile_system(&self, name: &str) -> Option<String> {
        profile::current(&self.root(), name)
            .ok()
            .flatten()
            .map(|g| g.system.display().to_string())
    }

    /// Every link of the profile resolves (no dangling `system` or
    /// generation link, nothing half-made visible under our names).
    pub fn profile_links_ok(&self, name: &str) -> Result<(), String> {
        let dir = self.profile_dir(name);
        let Ok(read) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in read.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') || file == "system.lock" {
                continue;
            }
            if std::fs::metadata(e.path()).is_err() {
                return Err(format!("{} does not resolve", e.path().display()));
            }
        }
        Ok(())
    }

    /// Files whose names start with '.' (temporary files of atomic writes
    /// left by killed processes) in the registry and profile directories.
    pub fn stale_temporaries(&self) -> usize {
        let mut dirs = vec![self.root().registry_dir()];
        if let Ok(read) = std::fs::read_dir(self.root().profiles_dir()) {
            dirs.extend(read.flatten().map(|e| e.path()));
        }
        dirs.iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|r| r.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count()
    }
}

/// The first line of a process's stderr that says `error:`.
pub fn error_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| err.lines().next().unwrap_or(""))
        .to_owned()
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
