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

use anyhow::{bail, Context as _, Result};

use nixos_nspawn_core::hosttools;
use nixos_nspawn_core::registry::{BuildSource, SourceKind};

use crate::usage;

/// Where the system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config FILE` / `--config-file FILE`.
    Config(PathBuf),
    /// `--config 'TEXT'`: attribute definitions of a NixOS module, as
    /// classic `nixos-container create --config` takes them.
    Expression(String),
    Flake(String),
    System(PathBuf),
}

/// Whether a `--config` value is an inline configuration rather than a file
/// name: classic `nixos-container --config` takes attribute definitions
/// (`services.nginx.enable = true;`), which always contain `=` (or are empty);
/// python-nixos-nspawn's and this tool's `--config` take a file.
fn looks_inline(value: &str) -> bool {
    value.trim().is_empty() || value.contains(['=', ';', '{', '\n'])
}

/// The source a `--config VALUE` names: an existing file, else an inline
/// configuration when it looks like one, else a usage error.
pub fn config_value(value: &str) -> Result<Source> {
    match std::fs::metadata(value) {
        Ok(m) if m.is_file() => return Ok(Source::Config(PathBuf::from(value))),
        Ok(_) if !looks_inline(value) => {
            return Err(usage(format!(
                "--config {value:?} is a directory, not a NixOS configuration file"
            )))
        }
        _ => {}
    }
    if looks_inline(value) {
        return Ok(Source::Expression(value.to_owned()));
    }
    Err(usage(format!(
        "--config {value:?}: no such file (an inline configuration is attribute definitions such as 'services.openssh.enable = true;'; use --config-file for a file whose name looks like one)"
    )))
}

impl Source {
    /// From the mutually exclusive flags; `None` when none is given.
    /// `systems` are the names for an already built system (`--system` and
    /// its aliases), with their flag names.
    pub fn given(
        config: Option<&str>,
        config_file: Option<&str>,
        flake: Option<&str>,
        systems: &[(&str, Option<&str>)],
    ) -> Result<Option<Source>> {
        let sys: Vec<(&str, &str)> = systems
            .iter()
            .filter_map(|(flag, v)| v.map(|v| (*flag, v)))
            .collect();
        if sys.len() > 1 {
            let flags: Vec<&str> = sys.iter().map(|(f, _)| *f).collect();
            return Err(usage(format!(
                "{} are the same option; give one",
                flags.join(" and ")
            )));
        }
        crate::at_most_one(
            &[
                config.is_some(),
                config_file.is_some(),
                flake.is_some(),
                !sys.is_empty(),
            ],
            "give only one of --config, --config-file, --flake and --system",
        )?;
        if let Some(c) = config {
            return config_value(c).map(Some);
        }
        if let Some(c) = config_file {
            return Ok(Some(Source::Config(PathBuf::from(c))));
        }
        if let Some(f) = flake {
            if f.is_empty() || f.contains(char::is_whitespace) {
                return Err(usage(format!("--flake {f:?} is not a flake reference")));
            }
            return Ok(Some(Source::Flake(f.to_owned())));
        }
        if let Some((flag, s)) = sys.first() {
            if !s.contains('/') {
                return Err(usage(format!(
                    "{flag} takes the path of a built system (e.g. ./result or /nix/store/…-nixos-system-…), not {s:?}; \
                     the platform to build for is --platform"
                )));
            }
            return Ok(Some(Source::System(PathBuf::from(s))));
        }
        Ok(None)
    }

    /// From the mutually exclusive flags, one of which is required.
    pub fn from_flags(
        config: Option<&str>,
        flake: Option<&str>,
        system: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Source> {
        Source::given(
            config,
            None,
            flake,
            &[("--system", system), ("--profile", profile)],
        )?
        .ok_or_else(|| usage("one of --config FILE, --flake REF#ATTR or --system PATH is required"))
    }

    /// The source a registry entry recorded.
    pub fn from_record(r: &BuildSource) -> Source {
        match r.kind {
            SourceKind::Config => Source::Config(PathBuf::from(&r.value)),
            SourceKind::Expression => Source::Expression(r.value.clone()),
            SourceKind::Flake => Source::Flake(r.value.clone()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Config(p) => format!("configuration {}", p.display()),
            Source::Expression(t) => describe_expression(t),
            Source::Flake(f) => format!("flake {f}"),
            Source::System(p) => format!("system {}", p.display()),
        }
    }
}

fn describe_expression(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = one_line.chars().take(60).collect();
    if short.len() < one_line.len() {
        short.push('…');
    }
    format!("inline configuration {short:?}")
}

/// A recorded source in words (for `status`).
pub fn describe_record(r: &BuildSource) -> String {
    let mut s = Source::from_record(r).describe();
    if let Some(p) = &r.platform {
        s.push_str(&format!(", platform {p}"));
    }
    if !r.nix_args.is_empty() {
        s.push_str(&format!(", Nix options {}", r.nix_args.join(" ")));
    }
    s
}

/// Nix options passed through to the build: `--option NAME VALUE`,
/// `--impure`, `--override-input INPUT REF` (classic `nixos-container` and
/// `nixos-rebuild` pass the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixFlags {
    pub options: Vec<(String, String)>,
    pub impure: bool,
    pub override_inputs: Vec<(String, String)>,
}

/// The flags that take two values. argh takes one value per option, so
/// [`join_pair_flags`] turns `--option NAME VALUE` into `--option NAME=VALUE`
/// before parsing (a NAME never contains `=`).
const PAIR_FLAGS: &[&str] = &["--option", "--override-input"];

/// Rewrite `--option NAME VALUE` / `--override-input INPUT REF` of a
/// `create` or `update` command line into one argument each
/// (`NAME=VALUE`), so argh can parse them. Other commands, arguments after
/// `--`, and the one-argument form (`--option NAME=VALUE`) are left alone.
pub fn join_pair_flags(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut i = 0;
    // Global flags come first; the first other word is the command.
    while i < args.len() && args[i].starts_with('-') {
        out.push(args[i].to_owned());
        i += 1;
    }
    let applies = matches!(args.get(i), Some(&"create") | Some(&"update"));
    while i < args.len() {
        let a = args[i];
        out.push(a.to_owned());
        i += 1;
        if a == "--" {
            out.extend(args[i..].iter().map(|s| (*s).to_owned()));
            break;
        }
        if applies && PAIR_FLAGS.contains(&a) && i + 1 < args.len() {
            let (name, value) = (args[i], args[i + 1]);
            if !name.contains('=') && !name.starts_with('-') {
                out.push(format!("{name}={value}"));
                i += 2;
            }
        }
    }
    out
}

fn split_pair(flag: &str, what: &str, v: &str) -> Result<(String, String)> {
    match v.split_once('=') {
        Some((k, val))
            if !k.is_empty()
                && !k.contains(char::is_whitespace)
                && !k.contains('\0')
                && !val.contains('\0') =>
        {
            Ok((k.to_owned(), val.to_owned()))
        }
        _ => Err(usage(format!(
            "{flag} needs {what} and a value ({flag} {} VALUE), not {v:?}",
            what.to_uppercase()
        ))),
    }
}

impl NixFlags {
    /// From the command line (`--option NAME=VALUE` after [`join_pair_flags`]).
    pub fn from_cli(
        option: &[String],
        impure: bool,
        override_input: &[String],
    ) -> Result<NixFlags> {
        let mut f = NixFlags {
            impure,
            ..NixFlags::default()
        };
        for o in option {
            let (k, v) = split_pair("--option", "a name", o)?;
            f.set_option(k, v);
        }
        for o in override_input {
            let (k, v) = split_pair("--override-input", "an input", o)?;
            if v.is_empty() {
                return Err(usage(format!(
                    "--override-input {k}: the flake reference is empty"
                )));
            }
            f.set_override(k, v);
        }
        Ok(f)
    }

    fn set_option(&mut self, k: String, v: String) {
        self.options.retain(|(o, _)| *o != k);
        self.options.push((k, v));
    }

    fn set_override(&mut self, k: String, v: String) {
        self.override_inputs.retain(|(o, _)| *o != k);
        self.override_inputs.push((k, v));
    }

    /// From recorded arguments (a registry entry's `source.nixArgs`).
    pub fn from_args(args: &[String]) -> std::result::Result<NixFlags, String> {
        let mut f = NixFlags::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--impure" => f.impure = true,
                "--option" | "--override-input" => {
                    let (Some(k), Some(v)) = (it.next(), it.next()) else {
                        return Err(format!("{a} needs two values"));
                    };
                    if a == "--option" {
                        f.set_option(k.clone(), v.clone());
                    } else {
                        f.set_override(k.clone(), v.clone());
                    }
                }
                other => {
                    return Err(format!(
                        "{other:?} is not a Nix option nixos-nspawn passes on (--option NAME VALUE, --impure, --override-input INPUT REF)"
                    ))
                }
            }
        }
        Ok(f)
    }

    /// The arguments for nix / nix-build.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (k, v) in &self.options {
            a.extend(["--option".to_owned(), k.clone(), v.clone()]);
        }
        if self.impure {
            a.push("--impure".into());
        }
        for (k, v) in &self.override_inputs {
            a.extend(["--override-input".to_owned(), k.clone(), v.clone()]);
        }
        a
    }

    /// `other` on top of these (a later `--option NAME` replaces an earlier).
    pub fn merge(&mut self, other: &NixFlags) {
        for (k, v) in &other.options {
            self.set_option(k.clone(), v.clone());
        }
        self.impure |= other.impure;
        for (k, v) in &other.override_inputs {
            self.set_override(k.clone(), v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == NixFlags::default()
    }

    /// Refuse flags that mean nothing for this source.
    pub fn check_for(&self, source: &Source) -> Result<()> {
        let flake = matches!(source, Source::Flake(_));
        if !flake && !self.override_inputs.is_empty() {
            return Err(usage(format!(
                "--override-input only applies to --flake builds, not to the {}",
                source.describe()
            )));
        }
        if self.impure && matches!(source, Source::System(_)) {
            return Err(usage("--impure applies to builds; --system builds nothing"));
        }
        Ok(())
    }
}

/// A system and the temporary GC root that keeps it alive.
#[derive(Debug)]
pub struct Built {
    pub system: PathBuf,
    /// What to record in the registry entry to build it again (`None` for
    /// `--system`, which builds nothing).
    pub record: Option<BuildSource>,
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

impl crate::args::BuildFlags<'_> {
    /// The source given (`None`: none), refusing two.
    pub fn source(&self) -> Result<Option<Source>> {
        Source::given(self.config, self.config_file, self.flake, &self.systems)
    }

    /// The Nix options given.
    pub fn nix_flags(&self) -> Result<NixFlags> {
        NixFlags::from_cli(self.option, self.impure, self.override_input)
    }
}

/// A path as one argument of a program (the host tools take UTF-8 arguments).
fn path_arg(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
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
            nix_build: hosttools::NIX_BUILD.path(),
            nix: hosttools::NIX.path(),
            nix_store: hosttools::NIX_STORE.path(),
            nix_instantiate: hosttools::NIX_INSTANTIATE.path(),
            skip_version_check: std::env::var_os("NIXOS_NSPAWN_SKIP_NIX_CHECK")
                .is_some_and(|v| v == "1"),
            nix_dir: find_nix_dir(),
            nixpkgs: std::env::var("NIXOS_NSPAWN_NIXPKGS")
                .ok()
                .filter(|v| !v.is_empty()),
            extra_args: Vec::new(),
        }
    }

    /// Write the store closure of `system` next to entry `name`
    /// (`NAME.closure`, from `nix-store --query --requisites`), which the
    /// generator binds for `sharedNix = false` from the first start on; with
    /// the whole store shared, remove one left from before. Call it before the
    /// entry is written.
    pub fn record_closure(
        &self,
        root: &nixos_nspawn_core::Root,
        name: &str,
        shared_nix: bool,
        system: &Path,
    ) -> Result<()> {
        let path = root.join(nixos_nspawn_core::paths::closure_file(name));
        if shared_nix {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let system = system.to_string_lossy();
        let paths = nixos_nspawn_core::registry::query_closure(&self.nix_store, &system)
            .with_context(|| {
                format!("finding the store closure of {system} (sharedNix = false)")
            })?;
        let mut text = paths.join("\n");
        text.push('\n');
        nixos_nspawn_core::output::write_atomic(&path, text.as_bytes(), 0o644)?;
        Ok(())
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
            Source::Config(_) | Source::Expression(_) => {
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
                let out = hosttools::output(
                    &self.nix_instantiate,
                    &["--eval", "--strict", "--json", "--expr", &expr],
                )?;
                let shown = self.nixpkgs.as_deref().unwrap_or("<nixpkgs>");
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    // The first error line, not a warning before it (e.g. about
                    // build users) that says nothing about the failure.
                    let err = err
                        .lines()
                        .map(str::trim)
                        .find(|l| l.starts_with("error"))
                        .or_else(|| err.trim().lines().next())
                        .unwrap_or("")
                        .trim();
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
    pub fn build(
        &self,
        name: &str,
        source: &Source,
        platform: Option<&str>,
        flags: &NixFlags,
    ) -> Result<Built> {
        self.check_version(source)?;
        flags.check_for(source)?;
        let temp = std::env::temp_dir();
        sweep_stale_roots(&temp);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{ROOT_PREFIX}{}.", std::process::id()))
            .tempdir_in(&temp)
            .context("creating a temporary directory for the build's GC root")?;
        let link = tmp.path().join("result");
        let record = |kind: SourceKind, value: String| BuildSource {
            kind,
            value,
            platform: platform.map(str::to_owned),
            nix_args: flags.to_args(),
        };
        let recorded = match source {
            Source::Config(file) => {
                let file = file
                    .canonicalize()
                    .map_err(|e| usage(format!("--config {}: {e}", file.display())))?;
                let text = file
                    .to_str()
                    .context("--config: the path is not valid UTF-8")?
                    .to_owned();
                log::info!("building {name} from {}", file.display());
                self.nix_build(name, &file, platform, flags, &link)?;
                record(SourceKind::Config, text)
            }
            Source::Expression(text) => {
                let file = tmp.path().join("configuration.nix");
                std::fs::write(&file, inline_module(name, text))
                    .with_context(|| format!("writing {}", file.display()))?;
                log::info!("building {name} from its inline configuration");
                self.nix_build(name, &file, platform, flags, &link)?;
                record(SourceKind::Expression, text.clone())
            }
            Source::Flake(flake) => {
                let platform = platform.map(str::to_owned).unwrap_or_else(host_platform);
                let installable = self.resolve_flake(name, flake, &platform, flags)?;
                let mut args: Vec<String> = vec![
                    "--extra-experimental-features".into(),
                    "nix-command flakes".into(),
                    "build".into(),
                    installable.clone(),
                    "--out-link".into(),
                    link.display().to_string(),
                ];
                args.extend(flags.to_args());
                args.extend(self.extra_args.iter().cloned());
                log::info!("building {name} from {installable}");
                hosttools::run_visible(&self.nix, &args)?;
                record(SourceKind::Flake, installable)
            }
            Source::System(path) => return self.given_system(path, flags, tmp),
        };
        let system = std::fs::read_link(&link)
            .with_context(|| format!("the build made no result link {}", link.display()))?;
        Ok(Built {
            system,
            record: Some(recorded),
            _root: Some(tmp),
        })
    }

    /// `--system PATH`: nothing is built; a store path gets a temporary GC
    /// root (in `tmp`) until it is a profile generation.
    fn given_system(&self, path: &Path, flags: &NixFlags, tmp: tempfile::TempDir) -> Result<Built> {
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
            let mut args = vec![
                "--realise".to_owned(),
                path_arg(&real)?,
                "--add-root".to_owned(),
                path_arg(&tmp.path().join("result"))?,
                "--indirect".to_owned(),
            ];
            args.extend(flags.to_args());
            let out = hosttools::output(&self.nix_store, &args)?;
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
                record: None,
                _root: Some(tmp),
            });
        }
        log::warn!(
            "{} is not in the Nix store: nothing keeps it from being changed or removed",
            real.display()
        );
        Ok(Built {
            system: real,
            record: None,
            _root: None,
        })
    }

    /// `nix-build NIXDIR/eval-container.nix` of a configuration file.
    fn nix_build(
        &self,
        name: &str,
        file: &Path,
        platform: Option<&str>,
        flags: &NixFlags,
        link: &Path,
    ) -> Result<()> {
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
        if flags.impure {
            log::warn!("--impure: nix-build evaluates impurely anyway; ignored");
        }
        let mut pure = flags.clone();
        pure.impure = false;
        args.extend(pure.to_args());
        args.extend(self.extra_args.iter().cloned());
        hosttools::run_visible(&self.nix_build, &args)
    }

    /// The installable to build for `--flake REF[#ATTR]`, and why.
    ///
    /// `ATTR` starting with `nixosContainers.` is used as is, and
    /// `nixosConfigurations.X` as `nixosConfigurations.X.config.system.build.toplevel`.
    /// Otherwise `REF#nixosContainers.PLATFORM.ATTR` when the flake has it,
    /// else classic `nixos-container`'s `REF#nixosConfigurations.ATTR` when it
    /// has that (said in a warning), else the former (Nix then says what is
    /// missing). ATTR defaults to the container's name.
    pub fn resolve_flake(
        &self,
        name: &str,
        flake: &str,
        platform: &str,
        flags: &NixFlags,
    ) -> Result<String> {
        let (reference, attr) = match flake.split_once('#') {
            Some((r, a)) if !a.is_empty() => (r, Some(a)),
            Some((r, _)) => (r, None),
            None => (flake, None),
        };
        let reference = absolute_flake_ref(reference);
        if let Some(a) = attr {
            if a.starts_with("nixosContainers.") {
                return Ok(format!("{reference}#{a}"));
            }
            if let Some(rest) = a.strip_prefix("nixosConfigurations.") {
                return Ok(if rest.contains('.') {
                    format!("{reference}#{a}")
                } else {
                    format!("{reference}#{a}.config.system.build.toplevel")
                });
            }
        }
        // One attribute name (the container's name may contain dots: quoted).
        let (component, single) = match attr {
            Some(a) => (a.to_owned(), !a.contains(['.', '"'])),
            None if name.contains('.') => (format!("\"{name}\""), true),
            None => (name.to_owned(), true),
        };
        let bare = attr.unwrap_or(name);
        let containers = format!("{reference}#nixosContainers.{platform}.{component}");
        if !single {
            return Ok(containers);
        }
        if self.flake_has(
            &format!("{reference}#nixosContainers.{platform}"),
            bare,
            flags,
        ) {
            return Ok(containers);
        }
        if self.flake_has(&format!("{reference}#nixosConfigurations"), bare, flags) {
            let classic =
                format!("{reference}#nixosConfigurations.{component}.config.system.build.toplevel");
            log::warn!(
                "{reference} has no nixosContainers.{platform}.{bare}: building classic nixosConfigurations.{bare} \
                 ({classic}); a configuration made without nixos-nspawn's container profile (lib.mkContainer) \
                 brings no container settings and may not configure host0"
            );
            return Ok(classic);
        }
        Ok(containers)
    }

    /// Whether the attribute set at `installable` has `attr` (`nix eval`,
    /// JSON output). False when it cannot be evaluated (the build then
    /// reports why).
    fn flake_has(&self, installable: &str, attr: &str, flags: &NixFlags) -> bool {
        let apply = format!(
            "s: builtins.isAttrs s && builtins.hasAttr {} s",
            nix_string(attr)
        );
        let mut args: Vec<String> = vec![
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
            "eval".into(),
            "--json".into(),
            installable.into(),
            "--apply".into(),
            apply,
        ];
        args.extend(flags.to_args());
        args.extend(self.extra_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match hosttools::capture(&self.nix, &args) {
            Ok(out) => out.trim() == "true",
            Err(e) => {
                log::debug!("{installable} cannot be evaluated: {e:#}");
                false
            }
        }
    }
}

/// A bare path flake reference (`.`, `./dir`, `../dir`, `/dir`) made absolute,
/// so that the recorded source works from any directory. Other references
/// (`github:…`, `path:…`, registry names) are kept as they are.
pub fn absolute_flake_ref(reference: &str) -> String {
    if reference.contains(':') || !(reference.starts_with('.') || reference.starts_with('/')) {
        return reference.to_owned();
    }
    match Path::new(reference).canonicalize() {
        Ok(p) => p
            .to_str()
            .map_or_else(|| reference.to_owned(), str::to_owned),
        Err(_) => reference.to_owned(),
    }
}

/// The file an inline `--config` is built from: the attribute definitions
/// as the body of a NixOS module, as classic `nixos-container` writes them.
pub fn inline_module(name: &str, text: &str) -> String {
    format!(
        "# The inline configuration of container {name} (nixos-nspawn create/update --config).\n\
         {{ config, lib, pkgs, ... }}:\n{{\n{text}\n}}\n"
    )
}

/// The Nix `--flake` builds need: the flakes this project documents
/// (`lib.mkContainer`, the example) follow current nixpkgs, whose lib
/// requires 2.18 (`lib/minfeatures.nix`); flakes themselves need 2.4.
pub const FLAKE_MIN_NIX: &str = "2.18";

/// The version a Nix tool reports: the last word of `PROGRAM --version`
/// (`nix (Nix) 2.8.0`, `nix-build (Nix) 2.18.1`, `nix (Lix, like Nix) 2.91.1`).
pub fn tool_version(program: &Path) -> Result<String> {
    let out = hosttools::output(program, &["--version"]).with_context(|| {
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

    /// A file NAME holding `{ }` in a fresh directory (kept while it lives).
    fn nix_file(name: &str) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join(name);
        std::fs::write(&file, "{ }").unwrap();
        (d, file.to_str().unwrap().to_owned())
    }

    #[test]
    fn sources() {
        let (_d, file) = nix_file("c.nix");
        let file = file.as_str();
        assert_eq!(
            Source::from_flags(Some(file), None, None, None).unwrap(),
            Source::Config(file.into())
        );
        assert!(Source::from_flags(None, None, None, None).is_err());
        assert_eq!(Source::given(None, None, None, &[]).unwrap(), None);
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
    fn config_is_a_file_or_inline_definitions() {
        use crate::{exit_code, EXIT_USAGE};
        let (d, f) = nix_file("web.nix");
        let f = f.as_str();
        assert_eq!(config_value(f).unwrap(), Source::Config(f.into()));
        for text in [
            "services.nginx.enable = true;",
            "{ services.nginx.enable = true; }",
            "imports = [ ./x.nix ];\n",
            "",
        ] {
            assert_eq!(
                config_value(text).unwrap(),
                Source::Expression(text.into()),
                "{text:?}"
            );
        }
        for (v, msg) in [
            ("./missing.nix", "no such file"),
            ("missing", "no such file"),
            (d.path().to_str().unwrap(), "is a directory"),
        ] {
            let e = config_value(v).unwrap_err();
            assert_eq!(exit_code(&e), EXIT_USAGE, "{v}");
            assert!(e.to_string().contains(msg), "{e}");
        }
        // --config-file is always a file.
        assert_eq!(
            Source::given(None, Some("a = 1;"), None, &[]).unwrap(),
            Some(Source::Config("a = 1;".into()))
        );
        let e = Source::given(Some("a = 1;"), Some(f), None, &[]).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        let e = Source::given(
            None,
            None,
            None,
            &[("--system", Some("/a")), ("--system-path", Some("/b"))],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("--system and --system-path are the same option"),
            "{e}"
        );
        let m = inline_module("web", "services.nginx.enable = true;");
        assert!(
            m.contains("{ config, lib, pkgs, ... }:\n{\nservices.nginx.enable = true;\n}\n"),
            "{m}"
        );
    }

    #[test]
    fn pair_flags_are_joined_for_create_and_update_only() {
        let j = |a: &[&str]| join_pair_flags(a);
        assert_eq!(
            j(&[
                "-v",
                "create",
                "web",
                "--option",
                "substitute",
                "false",
                "--override-input",
                "nixpkgs",
                "github:a/b?ref=x",
                "--impure"
            ]),
            [
                "-v",
                "create",
                "web",
                "--option",
                "substitute=false",
                "--override-input",
                "nixpkgs=github:a/b?ref=x",
                "--impure"
            ]
        );
        assert_eq!(
            j(&["update", "web", "--option", "a=b"]),
            ["update", "web", "--option", "a=b"]
        );
        assert_eq!(
            j(&["update", "web", "--option", "a"]),
            ["update", "web", "--option", "a"]
        );
        assert_eq!(
            j(&["run", "web", "--", "nix", "--option", "a", "b"]),
            ["run", "web", "--", "nix", "--option", "a", "b"]
        );
        assert_eq!(
            j(&["create", "web", "--flake", ".", "--", "--option", "a", "b"]),
            ["create", "web", "--flake", ".", "--", "--option", "a", "b"]
        );
    }

    #[test]
    fn nix_flags() {
        use crate::{exit_code, EXIT_USAGE};
        let f = NixFlags::from_cli(
            &[
                "substitute=false".into(),
                "cores=2".into(),
                "substitute=true".into(),
            ],
            true,
            &["nixpkgs=path:/srv/nixpkgs".into()],
        )
        .unwrap();
        let args = f.to_args();
        assert_eq!(
            args,
            [
                "--option",
                "cores",
                "2",
                "--option",
                "substitute",
                "true",
                "--impure",
                "--override-input",
                "nixpkgs",
                "path:/srv/nixpkgs"
            ]
        );
        assert_eq!(
            NixFlags::from_args(&args).unwrap(),
            f,
            "recorded arguments read back"
        );
        let e = NixFlags::from_args(&["--store".into(), "/x".into()]).unwrap_err();
        assert!(e.contains("not a Nix option nixos-nspawn passes on"), "{e}");
        assert!(NixFlags::from_args(&["--option".into(), "a".into()]).is_err());
        let e = NixFlags::from_cli(&["substitute".into()], false, &[]).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert!(
            e.to_string().contains("--option needs a name and a value"),
            "{e}"
        );
        // Later flags replace earlier ones of the same name.
        let mut base =
            NixFlags::from_args(&["--option".into(), "cores".into(), "1".into()]).unwrap();
        base.merge(&NixFlags::from_cli(&["cores=4".into()], false, &[]).unwrap());
        assert_eq!(base.to_args(), ["--option", "cores", "4"]);
        // Flake-only flags.
        let e = f.check_for(&Source::Config("/a.nix".into())).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert!(
            e.to_string()
                .contains("--override-input only applies to --flake"),
            "{e}"
        );
        f.check_for(&Source::Flake(".#web".into())).unwrap();
        let impure = NixFlags {
            impure: true,
            ..NixFlags::default()
        };
        assert!(impure
            .check_for(&Source::System("/nix/store/x".into()))
            .is_err());
        impure
            .check_for(&Source::Expression("a = 1;".into()))
            .unwrap();
    }

    /// sharedNix = false: the closure nix-store gives is written next to the
    /// entry, as the generator reads it; sharedNix = true removes it.
    #[test]
    fn closure_next_to_the_entry() {
        let d = tempfile::tempdir().unwrap();
        let root = nixos_nspawn_core::Root::new(d.path().join("root"));
        let system = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";
        let glibc = "/nix/store/dddddddddddddddddddddddddddddddd-glibc";
        let fake = d.path().join("nix-store");
        nixos_nspawn_core::testing::write_script(
            &fake,
            format!(
                "#!/bin/sh\n[ \"$1 $2 $3\" = \"--query --requisites {system}\" ] || exit 3\necho {glibc}\necho {system}\n"
            ),
        );
        let mut nix = Nix::from_env();
        nix.nix_store = fake;
        nix.record_closure(&root, "web", false, Path::new(system))
            .unwrap();
        assert_eq!(
            nixos_nspawn_core::registry::load_closure(&root, "web", system),
            Some(vec![system.to_owned(), glibc.to_owned()])
        );
        nix.record_closure(&root, "web", true, Path::new(system))
            .unwrap();
        assert!(!root
            .join(nixos_nspawn_core::paths::closure_file("web"))
            .exists());
        nix.nix_store = "false".into();
        let err = nix
            .record_closure(&root, "web", false, Path::new(system))
            .unwrap_err();
        assert!(format!("{err:#}").contains("sharedNix = false"), "{err:#}");
    }

    #[test]
    fn flake_references() {
        let d = tempfile::tempdir().unwrap();
        let abs = d.path().canonicalize().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute_flake_ref("github:me/config"), "github:me/config");
        assert_eq!(absolute_flake_ref("path:./x"), "path:./x");
        assert_eq!(absolute_flake_ref("nixpkgs"), "nixpkgs");
        assert_eq!(
            absolute_flake_ref(abs.to_str().unwrap()),
            abs.to_str().unwrap()
        );
        assert_eq!(
            absolute_flake_ref("."),
            cwd.canonicalize().unwrap().to_str().unwrap()
        );
        // Explicit attribute paths need no evaluation.
        let nix = Nix {
            nix_build: "false".into(),
            nix: "false".into(),
            nix_store: "false".into(),
            nix_instantiate: "false".into(),
            nix_dir: None,
            nixpkgs: None,
            extra_args: vec![],
            skip_version_check: true,
        };
        let none = NixFlags::default();
        assert_eq!(
            nix.resolve_flake(
                "web",
                "github:me/c#nixosContainers.aarch64-linux.db",
                "x86_64-linux",
                &none
            )
            .unwrap(),
            "github:me/c#nixosContainers.aarch64-linux.db"
        );
        assert_eq!(
            nix.resolve_flake(
                "web",
                "github:me/c#nixosConfigurations.db",
                "x86_64-linux",
                &none
            )
            .unwrap(),
            "github:me/c#nixosConfigurations.db.config.system.build.toplevel"
        );
        // Nothing can be evaluated (`false` as nix): the nixosContainers path,
        // whose build then says what is missing; a dotted name is quoted.
        assert_eq!(
            nix.resolve_flake("web.example", "github:me/c", "x86_64-linux", &none)
                .unwrap(),
            "github:me/c#nixosContainers.x86_64-linux.\"web.example\""
        );
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
