//! Building (or finding) a container's system with Nix.
//!
//! - `--config FILE`: `nix-build NIXDIR/eval-container.nix --argstr name NAME
//!   --argstr configuration /abs/FILE [--arg nixpkgs NIXPKGS] [--argstr system
//!   PLATFORM]`. `eval-container.nix` evaluates the file with nixpkgs' NixOS
//!   and the project's container profile (`NIXDIR/modules/container.nix`).
//!   NIXPKGS is `$NIXOS_NSPAWN_NIXPKGS` (a path, or a `<lookup>`); without it
//!   `<nixpkgs>` from `NIX_PATH`.
//! - `--flake REF#ATTR`: `nix build REF#nixosContainers.PLATFORM.ATTR` (an
//!   ATTR that already starts with `nixosContainers.` is used as is; no `#ATTR`
//!   means the container's name).
//! - `--system PATH`: an existing system; a store path gets a temporary GC
//!   root with `nix-store --realise --add-root`.
//!
//! NIXDIR is `$NIXOS_NSPAWN_NIX_DIR`, else `../share/nixos-nspawn/nix` next to
//! the executable (symlinks resolved; the Nix package installs `nix/` there),
//! else the directory fixed at build time, else this checkout's `nix/`.
//!
//! Nix's progress goes straight to our stderr. Every result is held by a GC
//! root in a temporary directory ([`Built`]) until the caller has made it a
//! profile generation, so nothing is collected in between.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::usage;

/// Where the system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Config(PathBuf),
    Flake(String),
    System(PathBuf),
}

impl Source {
    /// From the mutually exclusive flags.
    pub fn from_flags(
        config: Option<&str>,
        flake: Option<&str>,
        system: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Source> {
        let system = match (system, profile) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "--system and --profile are the same option; give one",
                ))
            }
            (s, p) => s.or(p),
        };
        match (config, flake, system) {
            (Some(c), None, None) => Ok(Source::Config(PathBuf::from(c))),
            (None, Some(f), None) => Ok(Source::Flake(f.to_owned())),
            (None, None, Some(s)) => {
                if !s.contains('/') {
                    return Err(usage(format!(
                        "--system takes the path of a built system (e.g. ./result or /nix/store/…-nixos-system-…), not {s:?}; \
                         the platform to build for is --platform"
                    )));
                }
                Ok(Source::System(PathBuf::from(s)))
            }
            (None, None, None) => Err(usage(
                "one of --config FILE, --flake REF#ATTR or --system PATH is required",
            )),
            _ => Err(usage("give only one of --config, --flake and --system")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Config(p) => format!("configuration {}", p.display()),
            Source::Flake(f) => format!("flake {f}"),
            Source::System(p) => format!("system {}", p.display()),
        }
    }
}

/// A system and the temporary GC root that keeps it alive.
#[derive(Debug)]
pub struct Built {
    pub system: PathBuf,
    _root: Option<tempfile::TempDir>,
}

/// The Nix platform this binary was built for (e.g. `x86_64-linux`).
pub fn host_platform() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

#[derive(Debug, Clone)]
pub struct Nix {
    pub nix_build: PathBuf,
    pub nix: PathBuf,
    pub nix_store: PathBuf,
    /// For the version check of `--config` builds (nixpkgs' own minimum).
    pub nix_instantiate: PathBuf,
    /// `$NIXOS_NSPAWN_SKIP_NIX_CHECK=1`: build without checking Nix's version.
    pub skip_version_check: bool,
    /// The project's Nix files (`eval-container.nix`, `modules/`).
    pub nix_dir: Option<PathBuf>,
    /// `$NIXOS_NSPAWN_NIXPKGS`.
    pub nixpkgs: Option<String>,
    /// Extra arguments for every nix-build / nix build (tests pass
    /// `--option substitute false`).
    pub extra_args: Vec<String>,
}

fn env_path(var: &str, built: Option<&'static str>, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(built.unwrap_or(name)),
    }
}

/// NIXDIR, as described in the module documentation.
pub fn find_nix_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("NIXOS_NSPAWN_NIX_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    let has_eval = |d: &Path| d.join("eval-container.nix").is_file();
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
    {
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            let d = prefix.join("share/nixos-nspawn/nix");
            if has_eval(&d) {
                return Some(d);
            }
        }
    }
    if let Some(d) = option_env!("NIXOS_NSPAWN_NIX_DIR") {
        return Some(PathBuf::from(d));
    }
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix");
    has_eval(&dev).then(|| dev.canonicalize().unwrap_or(dev))
}

/// `--arg nixpkgs VALUE`: a `<lookup>` as is, a path as a path expression.
pub fn nixpkgs_expr(value: &str) -> Result<String> {
    if value.starts_with('<') && value.ends_with('>') {
        return Ok(value.to_owned());
    }
    let path = Path::new(value);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let text = abs
        .to_str()
        .context("NIXOS_NSPAWN_NIXPKGS is not valid UTF-8")?;
    Ok(format!("(/. + {})", nix_string(text)))
}

/// A Nix string literal.
pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Nix {
    pub fn from_env() -> Nix {
        Nix {
            nix_build: env_path(
                "NIXOS_NSPAWN_NIX_BUILD",
                option_env!("NIXOS_NSPAWN_NIX_BUILD"),
                "nix-build",
            ),
            nix: env_path("NIXOS_NSPAWN_NIX", option_env!("NIXOS_NSPAWN_NIX"), "nix"),
            nix_store: env_path(
                "NIXOS_NSPAWN_NIX_STORE",
                option_env!("NIXOS_NSPAWN_NIX_STORE"),
                "nix-store",
            ),
            nix_instantiate: env_path(
                "NIXOS_NSPAWN_NIX_INSTANTIATE",
                option_env!("NIXOS_NSPAWN_NIX_INSTANTIATE"),
                "nix-instantiate",
            ),
            skip_version_check: std::env::var_os("NIXOS_NSPAWN_SKIP_NIX_CHECK")
                .is_some_and(|v| v == "1"),
            nix_dir: find_nix_dir(),
            nixpkgs: std::env::var("NIXOS_NSPAWN_NIXPKGS")
                .ok()
                .filter(|v| !v.is_empty()),
            extra_args: Vec::new(),
        }
    }

    /// Refuse a `--config` or `--flake` build this Nix cannot do, before it
    /// starts: `--config` asks the nixpkgs it will use for its own minimum
    /// (`lib/minfeatures.nix`, or `lib/minver.nix` in older nixpkgs) with
    /// this very Nix; `--flake` needs [`FLAKE_MIN_NIX`]. `--system` works
    /// with any Nix.
    pub fn check_version(&self, source: &Source) -> Result<()> {
        if self.skip_version_check {
            return Ok(());
        }
        let workaround =
            "with this Nix only --system works (build the system where a newer Nix runs \
                          and copy it here, see the README), or install a newer Nix";
        match source {
            Source::System(_) => Ok(()),
            Source::Flake(_) => {
                let version = tool_version(&self.nix)?;
                if version_cmp(&version, FLAKE_MIN_NIX).is_lt() {
                    bail!(
                        "Nix {version} is too old for --flake: flakes on a current nixpkgs need Nix >= {FLAKE_MIN_NIX}; \
                         {workaround} (NIXOS_NSPAWN_SKIP_NIX_CHECK=1 tries anyway, for a flake whose nixpkgs supports Nix {version})"
                    );
                }
                Ok(())
            }
            Source::Config(_) => {
                let nixpkgs = match &self.nixpkgs {
                    Some(p) => nixpkgs_expr(p)?,
                    None => "<nixpkgs>".to_owned(),
                };
                let expr = format!(
                    r#"let
  p = {nixpkgs};
  features = p + "/lib/minfeatures.nix";
  minver = p + "/lib/minver.nix";
in {{
  nix = builtins.nixVersion or "1";
  missing =
    if builtins.pathExists features then map (f: f.description) (import features).missing
    else if builtins.pathExists minver && builtins.compareVersions (import minver) (builtins.nixVersion or "1") == 1
    then [ "Nix >= ${{import minver}}" ]
    else [ ];
}}"#
                );
                let out = Command::new(&self.nix_instantiate)
                    .args(["--eval", "--strict", "--json", "--expr", &expr])
                    .stdin(Stdio::null())
                    .output()
                    .with_context(|| format!("running {}", self.nix_instantiate.display()))?;
                let shown = self.nixpkgs.as_deref().unwrap_or("<nixpkgs>");
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let err = err.trim().lines().next().unwrap_or("").trim();
                    if err.contains("was not found in the Nix search path") {
                        bail!(
                            "--config needs a nixpkgs: set NIXOS_NSPAWN_NIXPKGS=/path/to/nixpkgs (or NIX_PATH=nixpkgs=…) ({err})"
                        );
                    }
                    bail!(
                        "cannot read the Nix version {shown} needs ({} --eval failed: {err})",
                        self.nix_instantiate.display()
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .context("reading nix-instantiate's answer about the Nix version")?;
                let missing: Vec<&str> = v["missing"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m.as_str()).collect())
                    .unwrap_or_default();
                if !missing.is_empty() {
                    bail!(
                        "Nix {} is too old for the nixpkgs {shown}: it needs {}; {workaround}, \
                         or point NIXOS_NSPAWN_NIXPKGS at an older nixpkgs",
                        v["nix"].as_str().unwrap_or("?"),
                        missing.join(", ")
                    );
                }
                Ok(())
            }
        }
    }

    /// Build or find the system of container `name`.
    pub fn build(&self, name: &str, source: &Source, platform: Option<&str>) -> Result<Built> {
        self.check_version(source)?;
        let temp = std::env::temp_dir();
        sweep_stale_roots(&temp);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{ROOT_PREFIX}{}.", std::process::id()))
            .tempdir_in(&temp)
            .context("creating a temporary directory for the build's GC root")?;
        let link = tmp.path().join("result");
        match source {
            Source::Config(file) => {
                let file = file
                    .canonicalize()
                    .map_err(|e| usage(format!("--config {}: {e}", file.display())))?;
                let dir = self.nix_dir.as_deref().context(
                    "cannot find nixos-nspawn's Nix files (eval-container.nix): set NIXOS_NSPAWN_NIX_DIR",
                )?;
                let eval = dir.join("eval-container.nix");
                let mut args: Vec<String> = vec![
                    eval.display().to_string(),
                    "--argstr".into(),
                    "name".into(),
                    name.into(),
                    "--argstr".into(),
                    "configuration".into(),
                    file.to_str()
                        .context("--config: the path is not valid UTF-8")?
                        .into(),
                ];
                if let Some(p) = &self.nixpkgs {
                    args.extend(["--arg".into(), "nixpkgs".into(), nixpkgs_expr(p)?]);
                }
                if let Some(p) = platform {
                    args.extend(["--argstr".into(), "system".into(), p.into()]);
                }
                args.extend(["--out-link".into(), link.display().to_string()]);
                args.extend(self.extra_args.iter().cloned());
                log::info!("building {name} from {}", file.display());
                crate::systemd::run_visible(&self.nix_build, &args)?;
            }
            Source::Flake(flake) => {
                let (reference, attr) = match flake.split_once('#') {
                    Some((r, a)) if !a.is_empty() => (r, a.to_owned()),
                    Some((r, _)) => (r, name.to_owned()),
                    None => (flake.as_str(), name.to_owned()),
                };
                let platform = platform.map(str::to_owned).unwrap_or_else(host_platform);
                let attr = if attr.starts_with("nixosContainers.") {
                    attr
                } else {
                    format!("nixosContainers.{platform}.{attr}")
                };
                let installable = format!("{reference}#{attr}");
                let mut args: Vec<String> = vec![
                    "--extra-experimental-features".into(),
                    "nix-command flakes".into(),
                    "build".into(),
                    installable.clone(),
                    "--out-link".into(),
                    link.display().to_string(),
                ];
                args.extend(self.extra_args.iter().cloned());
                log::info!("building {name} from {installable}");
                crate::systemd::run_visible(&self.nix, &args)?;
            }
            Source::System(path) => {
                // A bad argument (exit 2), like a missing --config file.
                let real = path
                    .canonicalize()
                    .map_err(|e| crate::usage(format!("--system {}: {e}", path.display())))?;
                if !real.is_dir() {
                    let hint = match (real.file_name(), real.parent()) {
                        (Some(f), Some(parent)) if f == "init" || f == "activate" => {
                            format!(" (did you mean --system {}?)", parent.display())
                        }
                        _ => String::new(),
                    };
                    return Err(crate::usage(format!(
                        "--system {}: {} is a file, not a NixOS system (a directory with init and bin/switch-to-configuration){hint}",
                        path.display(),
                        real.display()
                    )));
                }
                if real.starts_with("/nix/store") {
                    // Make it a GC root until it is a profile generation.
                    let out = Command::new(&self.nix_store)
                        .arg("--realise")
                        .arg(&real)
                        .arg("--add-root")
                        .arg(&link)
                        .arg("--indirect")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .output()
                        .with_context(|| format!("running {}", self.nix_store.display()))?;
                    if !out.status.success() {
                        bail!(
                            "{} is not a valid store path ({} --realise: {})",
                            real.display(),
                            self.nix_store.display(),
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                    }
                    return Ok(Built {
                        system: real,
                        _root: Some(tmp),
                    });
                }
                log::warn!(
                    "{} is not in the Nix store: nothing keeps it from being changed or removed",
                    real.display()
                );
                return Ok(Built {
                    system: real,
                    _root: None,
                });
            }
        }
        let system = std::fs::read_link(&link)
            .with_context(|| format!("the build made no result link {}", link.display()))?;
        Ok(Built {
            system,
            _root: Some(tmp),
        })
    }
}

/// The Nix `--flake` builds need: the flakes this project documents
/// (`lib.mkContainer`, the example) follow current nixpkgs, whose lib
/// requires 2.18 (`lib/minfeatures.nix`); flakes themselves need 2.4.
pub const FLAKE_MIN_NIX: &str = "2.18";

/// The version a Nix tool reports: the last word of `PROGRAM --version`
/// (`nix (Nix) 2.8.0`, `nix-build (Nix) 2.18.1`, `nix (Lix, like Nix) 2.91.1`).
pub fn tool_version(program: &Path) -> Result<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} --version (is Nix installed?)",
                program.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
    {
        Some(v) if out.status.success() && v.starts_with(|c: char| c.is_ascii_digit()) => {
            Ok(v.to_owned())
        }
        _ => bail!(
            "{} --version printed no version ({}): {}",
            program.display(),
            out.status,
            text.trim()
        ),
    }
}

/// Compare two versions the way `builtins.compareVersions` does: components
/// split at `.` and `-` and between digits and other characters, compared
/// one by one (a missing one counts as empty): numbers as numbers; `pre`
/// before anything else (`2.18pre1` < `2.18`); a number after a word; an
/// empty component before a number; words alphabetically.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn parts(v: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut cur = String::new();
        for c in v.chars() {
            if c == '.' || c == '-' {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            if cur
                .chars()
                .last()
                .is_some_and(|l| l.is_ascii_digit() != c.is_ascii_digit())
            {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
    fn less(a: &str, b: &str) -> bool {
        let num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let (na, nb) = (num(a), num(b));
        if na && nb {
            return a.parse::<u128>().unwrap_or(0) < b.parse::<u128>().unwrap_or(0);
        }
        if a.is_empty() && nb {
            return true;
        }
        if a == "pre" && b != "pre" {
            return true;
        }
        if b == "pre" {
            return false;
        }
        if nb {
            return true;
        }
        if na {
            return false;
        }
        a < b
    }
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map_or("", String::as_str);
        let y = pb.get(i).map_or("", String::as_str);
        if less(x, y) {
            return Ordering::Less;
        }
        if less(y, x) {
            return Ordering::Greater;
        }
    }
    Ordering::Equal
}

/// Temporary GC root directories are `nixos-nspawn-build.PID.XXXXXX`.
const ROOT_PREFIX: &str = "nixos-nspawn-build.";

/// Remove the temporary GC root directories of CLIs that were killed before
/// they could (their PID is gone), so a killed build does not keep its
/// result alive until the next reboot. Only our own (same owner) are touched.
pub fn sweep_stale_roots(dir: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|n| n.strip_prefix(ROOT_PREFIX))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok().filter(|p| *p > 0))
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        if rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH) {
            continue;
        }
        let path = e.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.uid() == me => {}
            _ => continue,
        }
        log::debug!("removing the stale GC root directory {}", path.display());
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Check that `system` looks like a NixOS system a container can boot:
/// `init`, and `bin/switch-to-configuration` unless it is never activated.
pub fn check_system(system: &Path, needs_switch: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let exec = |rel: &str| -> Result<()> {
        let p = system.join(rel);
        let meta = std::fs::metadata(&p).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a NixOS system for a container: {rel}: {e}",
                system.display()
            )
        })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            bail!(
                "{} is not a NixOS system for a container: {rel} is not an executable file",
                system.display()
            );
        }
        Ok(())
    };
    exec("init")?;
    if needs_switch {
        // The hint belongs after the problem, on the same top line.
        exec("bin/switch-to-configuration").map_err(|e| {
            anyhow::anyhow!("{e}; with activation strategy none it is not needed (--strategy none)")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            Source::from_flags(Some("c.nix"), None, None, None).unwrap(),
            Source::Config("c.nix".into())
        );
        assert!(Source::from_flags(None, None, None, None).is_err());
        assert!(Source::from_flags(Some("a"), Some("b"), None, None).is_err());
        let e = Source::from_flags(None, None, Some("x86_64-linux"), None).unwrap_err();
        assert!(e.to_string().contains("--platform"), "{e}");
        assert_eq!(
            Source::from_flags(None, None, None, Some("./result")).unwrap(),
            Source::System("./result".into())
        );
    }

    #[test]
    fn versions() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("2.8.0", "2.18"), Less);
        assert_eq!(version_cmp("2.18", "2.18.0"), Less);
        assert_eq!(version_cmp("2.18.1", "2.18"), Greater);
        assert_eq!(version_cmp("2.91.1", "2.18"), Greater);
        assert_eq!(version_cmp("2.18pre20240101", "2.18"), Less);
        assert_eq!(version_cmp("2.18.3-lix", "2.18"), Greater);
        assert_eq!(version_cmp("2.3.17", "2.3.17"), Equal);
        assert_eq!(version_cmp("3", "2.99"), Greater);
    }

    #[test]
    fn nix_strings() {
        assert_eq!(nix_string("a\"b$c\\"), "\"a\\\"b\\$c\\\\\"");
        assert_eq!(nixpkgs_expr("<nixpkgs>").unwrap(), "<nixpkgs>");
        assert_eq!(nixpkgs_expr("/p q").unwrap(), "(/. + \"/p q\")");
    }

    #[test]
    fn stale_roots_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // PID 0x7ffffffe is never in use (above pid_max); our own PID is alive.
        let dead = d.path().join(format!("{ROOT_PREFIX}2147483646.abc"));
        let alive = d
            .path()
            .join(format!("{ROOT_PREFIX}{}.abc", std::process::id()));
        let other = d.path().join("nixos-nspawn-build.nopid");
        for p in [&dead, &alive, &other] {
            std::fs::create_dir(p).unwrap();
            std::os::unix::fs::symlink("/nix/store/x", p.join("result")).unwrap();
        }
        sweep_stale_roots(d.path());
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }

    #[test]
    fn system_check() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        assert!(check_system(s, false)
            .unwrap_err()
            .to_string()
            .contains("init"));
        std::fs::write(s.join("init"), "#!/bin/sh\n").unwrap();
        assert!(check_system(s, false)
            .unwrap_err()
            .to_string()
            .contains("not an executable"));
        std::fs::set_permissions(s.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_system(s, false).unwrap();
        let e = check_system(s, true).unwrap_err();
        assert!(
            format!("{e:#}").contains("switch-to-configuration"),
            "{e:#}"
        );
    }
}
