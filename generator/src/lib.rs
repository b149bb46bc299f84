//! `nixos-nspawn-generator`: the systemd generator (systemd.generator(7)) that
//! turns the registry into units, at boot and on every `daemon-reload`.
//!
//! ```text
//! nixos-nspawn-generator NORMAL_DIR [EARLY_DIR LATE_DIR]
//! ```
//!
//! It reads `/etc/nixos-nspawn/{containers,zones}/*.json` (under
//! `NIXOS_NSPAWN_ROOT`), renders them with [`nixos_nspawn_core::render`], writes the
//! unit drop-ins and `.wants/` links into `NORMAL_DIR` and the `.nspawn` and
//! networkd files into `/run/systemd/` through [`nixos_nspawn_core::output`], which
//! also prunes our stale files there. It never fails the boot: a bad registry
//! file is logged (one warning per problem, naming file, field and value) and
//! skipped; a failing `/run` write is logged and the drop-ins are still
//! written. Only an output directory that cannot be written makes it exit 1.
//! It talks to no daemon and reads nothing under `/var`.
//!
//! The binary is a thin wrapper around [`main_with`]; tests call [`run`].

pub mod kmsg;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use log::Level;
use nixos_nspawn_core::addressing;
use nixos_nspawn_core::output::{self, RunChanges};
use nixos_nspawn_core::render::{self, Contents, Context, Dest, OutputFile};
use nixos_nspawn_core::{paths, registry, EntryError, Root, Zone};

pub const USAGE: &str = "usage: nixos-nspawn-generator NORMAL_DIR [EARLY_DIR LATE_DIR]
       nixos-nspawn-generator --clean | --help | --version
Run by systemd at boot and at every daemon-reload (systemd.generator(7)); --clean removes
the files it wrote under /run/systemd/nspawn and /run/systemd/network (when uninstalling).
See nixos-nspawn-generator(8).";

/// Build-time override of the directory holding `nixos-nspawn-bootstrap` and
/// `nixos-nspawn-activate`; unset, they are looked for next to this binary.
pub const HELPER_DIR: Option<&str> = option_env!("NIXOS_NSPAWN_HELPER_DIR");

/// Build-time directory of systemd's units (`.wants/` links point into it).
pub const UNIT_DIR: &str =
    nixos_nspawn_core::build_time_or!("NIXOS_NSPAWN_UNIT_DIR", "/usr/lib/systemd/system");

/// Build-time `systemd-nspawn` executable for `ExecStart=` overrides.
pub const SYSTEMD_NSPAWN: &str =
    nixos_nspawn_core::build_time_or!("NIXOS_NSPAWN_SYSTEMD_NSPAWN", "systemd-nspawn");

/// The directory of the helpers: the build-time [`HELPER_DIR`], else the
/// directory of this executable with symlinks resolved (`/proc/self/exe`), so
/// a link in `/etc/systemd/system-generators/` to the installed binary works.
pub fn helper_dir() -> Result<PathBuf> {
    if let Some(dir) = HELPER_DIR.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("finding the generator's own executable")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    Ok(dir.to_path_buf())
}

/// The rendering context of this build for `root`: `NIXOS_NSPAWN_ROOT` is
/// passed on to the helpers when it is not `/`. When the helper directory
/// cannot be found the packaged default is used and a warning returned.
pub fn context(root: &Root) -> (Context, Option<String>) {
    let defaults = Context::default();
    let (helper_dir, warning) = match helper_dir() {
        Ok(d) => (d, None),
        Err(e) => {
            let w = format!(
                "{e:#}; using {} for the helpers",
                defaults.helper_dir.display()
            );
            (defaults.helper_dir, Some(w))
        }
    };
    let root_env = if root.is_host_root() {
        None
    } else if root.path().is_absolute() {
        Some(root.path().to_path_buf())
    } else {
        // The helpers run with another working directory.
        Some(
            std::env::current_dir()
                .map(|cwd| cwd.join(root.path()))
                .unwrap_or_else(|_| root.path().to_path_buf()),
        )
    };
    let ctx = Context {
        helper_dir,
        root_env,
        unit_dir: PathBuf::from(UNIT_DIR),
        nspawn_exe: SYSTEMD_NSPAWN.to_owned(),
        host_network: addressing::load_host_network(root),
    };
    (ctx, warning)
}

/// What one run did.
#[derive(Debug)]
pub struct Report {
    /// Containers rendered, sorted by name.
    pub containers: Vec<String>,
    /// Every registry problem (and container that could not be rendered).
    pub errors: Vec<EntryError>,
    /// Files and links written to the normal output directory.
    pub generator_files: usize,
    /// The `/run` sync: what changed, or why not everything could be written.
    pub run: Result<RunChanges>,
}

impl Report {
    /// The messages to log, in order: one warning per registry problem, an
    /// error when `/run` could not be (fully) written.
    pub fn messages(&self) -> Vec<(Level, String)> {
        let mut out: Vec<(Level, String)> = self
            .errors
            .iter()
            .map(|e| (Level::Warn, e.to_string()))
            .collect();
        if let Err(e) = &self.run {
            out.push((
                Level::Error,
                format!(
                    "not all files under /run could be written (each container's bootstrap helper writes its own again at start): {e:#}"
                ),
            ));
        }
        out
    }

    /// One line for the log at info level.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} container(s) rendered, {} registry problem(s), {} unit file(s)",
            self.containers.len(),
            self.errors.len(),
            self.generator_files
        );
        if let Ok(c) = &self.run {
            s.push_str(&format!(
                "; /run: {} written, {} pruned, {} unchanged",
                c.written.len(),
                c.pruned.len(),
                c.unchanged
            ));
        }
        s
    }
}

/// One generator run: read the registry under `root`, render it with `ctx`,
/// write the unit files into `normal_dir` and sync `/run` (pruning our stale
/// files). Errs only when `normal_dir` cannot be written; everything else is
/// in the [`Report`].
///
/// Containers are read, rendered and written one at a time, in the
/// registry's walk ([`registry::Listing::walk`], two threads for a large
/// registry), so memory does not grow with the registry beyond a name and a
/// path per container; zone members are held until all are read (their
/// addresses depend on each other's, [`addressing::ZonePlan`]) and rendered
/// after the others. The result is the same as [`render::render_registry`]
/// of [`registry::load`] written out (a test checks it, files and messages,
/// on every golden case).
pub fn run(root: &Root, normal_dir: &Path, ctx: &Context) -> Result<Report> {
    std::fs::create_dir_all(normal_dir)
        .with_context(|| format!("creating output directory {}", normal_dir.display()))?;
    let mut units = output::GeneratorDir::new(normal_dir);
    let mut sync = output::RunSync::new(root);
    let unit_error = || format!("writing units to {}", normal_dir.display());
    let mut errors = ctx.host_network.clone().err().unwrap_or_default();
    // Problems found while rendering come after the registry's own, as in
    // render::render_registry (validation makes them all but impossible).
    let mut render_errors = Vec::new();

    let mut zones = read_zones(root, &mut errors);
    let listing = listed(root, paths::REGISTRY_DIR, &mut errors);
    let parts = match &listing {
        Some(listing) => render_parts(root, normal_dir, ctx, listing, &mut units, &mut sync)?,
        None => Vec::new(),
    };
    let mut containers = Vec::with_capacity(listing.as_ref().map_or(0, |l| l.files.len()));
    let mut generator_files = 0;
    let mut used_zones = BTreeSet::new();
    let mut any_autostart = false;
    let mut members = Vec::new();
    for mut p in parts {
        errors.append(&mut p.errors);
        render_errors.append(&mut p.render_errors);
        containers.append(&mut p.containers);
        generator_files += p.generator_files;
        any_autostart |= p.any_autostart;
        members.append(&mut p.zone_members);
    }

    // Zone members, now that every zone and member is known: their
    // addresses depend on the others'.
    let plan = render::zone_plan(
        ctx,
        zones.values().map(|(z, _)| z),
        members.iter().map(|(e, _)| {
            (
                e.name.as_str(),
                e.network.zone.as_deref().unwrap_or_default(),
            )
        }),
    );
    render_errors.extend(plan.errors());
    for (entry, closure) in members {
        let (warning, rendered) =
            render::render_container(&entry, ctx, Ok(plan.member(&entry)), closure.as_deref());
        render_errors.extend(warning);
        match rendered {
            Ok(rendered) => {
                generator_files += units.write(&rendered).with_context(unit_error)?;
                sync.write(&rendered)?;
                any_autostart |= entry.auto_start;
                if let Some(zone) = entry.network.zone {
                    used_zones.insert(zone);
                }
                containers.push(entry.name);
            }
            Err(e) => render_errors.push(e),
        }
    }
    containers.sort();

    // Every declared zone, and systemd's defaults for zones used but not declared.
    for name in used_zones {
        zones
            .entry(name)
            .or_insert_with_key(|name| (Zone::undeclared(name), false));
    }
    for (zone, declared) in zones.values() {
        match render::zone_files(zone, *declared, &plan.zone(&zone.name)) {
            Ok(files) => sync.write(&files)?,
            Err(e) => render_errors.push(EntryError::file(
                &paths::zone_file(&zone.name),
                format!("cannot be rendered: {e}"),
            )),
        }
    }
    if any_autostart {
        // Pull machines.target in even where it is not enabled.
        let link = OutputFile {
            dest: Dest::Generator(PathBuf::from("multi-user.target.wants/machines.target")),
            contents: Contents::Symlink(ctx.unit_dir.join("machines.target")),
        };
        generator_files += units.write(&[link]).with_context(unit_error)?;
    }
    errors.extend(render_errors);
    Ok(Report {
        containers,
        errors,
        generator_files,
        run: sync.finish(true),
    })
}

/// The declared zones (`true`: declared), by name; bad files go to `errors`.
fn read_zones(root: &Root, errors: &mut Vec<EntryError>) -> BTreeMap<String, (Zone, bool)> {
    let mut zones = BTreeMap::new();
    if let Some(listing) = listed(root, paths::ZONES_DIR, errors) {
        for file in &listing.files {
            match listing.dir.load(file, registry::parse_zone) {
                Ok(z) => {
                    zones.insert(z.name.clone(), (z, true));
                }
                Err(errs) => errors.extend(errs),
            }
        }
    }
    zones
}

/// Every container of `listing` but the zone members, rendered and written
/// in the registry's walk; a second half's `/run` writes are merged into `sync`.
fn render_parts<'r>(
    root: &'r Root,
    normal_dir: &Path,
    ctx: &Context,
    listing: &registry::Listing,
    units: &mut output::GeneratorDir,
    sync: &mut output::RunSync<'r>,
) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    // Derived addresses: which name holds which slot (file names only).
    let claims = ctx.claims(listing.stems());
    let part = |dir: &registry::RegistryDir,
                files: &[registry::Listed],
                units: &mut output::GeneratorDir,
                sync: &mut output::RunSync| {
        render_part(normal_dir, ctx, &claims, dir, files, units, sync)
    };
    // The second half, if any, with its own writers, merged afterwards.
    for p in listing.walk(
        |dir, files| part(dir, files, units, sync).map(|p| (p, None)),
        |dir, files| {
            let mut units = output::GeneratorDir::new(normal_dir);
            let mut sync = output::RunSync::new(root);
            part(dir, files, &mut units, &mut sync).map(|p| (p, Some(sync)))
        },
    ) {
        let (p, other_sync) = p?;
        if let Some(other) = other_sync {
            sync.absorb(other);
        }
        parts.push(p);
    }
    Ok(parts)
}

/// What rendering some of the containers gave.
#[derive(Default)]
struct Part {
    errors: Vec<EntryError>,
    render_errors: Vec<EntryError>,
    containers: Vec<String>,
    generator_files: usize,
    /// Zone members, rendered once all are known, with their closures.
    zone_members: Vec<(registry::Entry, Option<Vec<String>>)>,
    any_autostart: bool,
}

/// Read, render and write the containers of `files`, one at a time.
fn render_part(
    normal_dir: &Path,
    ctx: &Context,
    claims: &addressing::Claims,
    dir: &registry::RegistryDir,
    files: &[registry::Listed],
    units: &mut output::GeneratorDir,
    sync: &mut output::RunSync,
) -> Result<Part> {
    let mut p = Part::default();
    let unit_error = || format!("writing units to {}", normal_dir.display());
    for file in files {
        let entry = match dir.load(file, registry::parse_entry) {
            Ok(entry) => entry,
            Err(errs) => {
                p.errors.extend(errs);
                continue;
            }
        };
        // sharedNix = false: the closure of its system, written next to the
        // entry by the module or the CLI, if there is one for this system.
        let closure = (!entry.shared_nix)
            .then(|| dir.closure(&entry.name, &entry.system))
            .flatten();
        if entry.network.mode == registry::NetworkMode::Zone {
            p.zone_members.push((entry, closure));
            continue;
        }
        let (warning, rendered) = render::render_container(
            &entry,
            ctx,
            ctx.assignment(&entry, claims),
            closure.as_deref(),
        );
        p.render_errors.extend(warning);
        let rendered = match rendered {
            Ok(files) => files,
            Err(e) => {
                p.render_errors.push(e);
                continue;
            }
        };
        p.generator_files += units.write(&rendered).with_context(unit_error)?;
        sync.write(&rendered)?;
        p.any_autostart |= entry.auto_start;
        p.containers.push(entry.name);
    }
    Ok(p)
}

/// A registry directory, open and listed (a problem listing it goes to
/// `errors`; a missing directory is `None`, an empty registry).
fn listed(
    root: &Root,
    logical_dir: &str,
    errors: &mut Vec<EntryError>,
) -> Option<registry::Listing> {
    registry::Listing::of(root, logical_dir)
        .map_err(|e| errors.push(e))
        .ok()?
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Args {
    Run {
        normal_dir: PathBuf,
    },
    Help,
    Version,
    /// Remove every file of ours under `/run/systemd/{nspawn,network}`.
    Clean,
}

/// Remove every file this generator wrote under `/run` (the ones starting
/// with [`nixos_nspawn_core::HEADER_PREFIX`]): what an uninstall runs before it
/// removes the generator, so no container's settings outlive it. The
/// generator's own output directory is emptied by systemd at the next
/// daemon-reload.
pub fn clean(root: &Root) -> Result<RunChanges> {
    output::RunSync::new(root).finish(true)
}

/// `NORMAL [EARLY LATE]`: one or three directories (two are accepted too);
/// only NORMAL is written.
pub fn parse_args(args: &[OsString]) -> std::result::Result<Args, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Args::Help);
    }
    match args {
        [a] if a == "--version" => return Ok(Args::Version),
        [a] if a == "--clean" => return Ok(Args::Clean),
        _ => {}
    }
    if let Some(opt) = args.iter().find(|a| a.to_string_lossy().starts_with('-')) {
        return Err(format!("unknown option {}", opt.to_string_lossy()));
    }
    match args {
        [] => Err("missing the output directory".into()),
        [normal, ..] if args.len() <= 3 => {
            if normal.is_empty() {
                return Err("the output directory is an empty string".into());
            }
            Ok(Args::Run {
                normal_dir: PathBuf::from(normal),
            })
        }
        _ => Err(format!(
            "expected at most 3 directories, got {}",
            args.len()
        )),
    }
}

/// The whole program; returns the exit status.
pub fn main_with(args: &[OsString]) -> i32 {
    let root = Root::from_env();
    kmsg::Logger::new(!root.is_host_root()).install();
    let normal_dir = match parse_args(args) {
        Ok(Args::Run { normal_dir }) => normal_dir,
        Ok(Args::Help) => {
            println!("{USAGE}");
            return 0;
        }
        Ok(Args::Version) => {
            println!("{}", nixos_nspawn_core::version_line(kmsg::IDENT));
            return 0;
        }
        Ok(Args::Clean) => {
            return match clean(&root) {
                Ok(c) => {
                    println!(
                        "removed {} file(s) of nixos-nspawn-generator under /run",
                        c.pruned.len()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("{}: error: {e:#}", kmsg::IDENT);
                    1
                }
            };
        }
        Err(msg) => {
            eprintln!("{}: {msg}\n{USAGE}", kmsg::IDENT);
            return 1;
        }
    };
    let (ctx, warning) = context(&root);
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    // What systemd will load is rendered from the inputs as they are now
    // (taken before reading them; nixos_nspawn_core::loaded), when systemd
    // runs us: into its directory, with every file under /run written.
    let loading = (normal_dir == root.join(paths::GENERATOR_DIR))
        .then(|| nixos_nspawn_core::loaded::inputs(&root));
    match run(&root, &normal_dir, &ctx) {
        Ok(report) => {
            for (level, msg) in report.messages() {
                log::log!(level, "{msg}");
            }
            log::info!("{}", report.summary());
            if let (Some(inputs), Ok(_)) = (loading, &report.run) {
                if let Err(e) = nixos_nspawn_core::loaded::record(&root, &inputs) {
                    log::warn!("{e:#} (the next apply reloads systemd anyway)");
                }
            }
            0
        }
        Err(e) => {
            log::error!("{e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let run = |d: &str| {
            Ok(Args::Run {
                normal_dir: PathBuf::from(d),
            })
        };
        assert_eq!(parse_args(&args(&["/run/g"])), run("/run/g"));
        assert_eq!(parse_args(&args(&["/n", "/e", "/l"])), run("/n"));
        assert!(parse_args(&args(&[])).is_err());
        assert!(parse_args(&args(&["/n", "/e", "/l", "/x"])).is_err());
        assert!(parse_args(&args(&["", "/e", "/l"])).is_err());
        assert!(parse_args(&args(&["--frobnicate", "/n"])).is_err());
        assert_eq!(parse_args(&args(&["--help"])), Ok(Args::Help));
        assert_eq!(parse_args(&args(&["--version"])), Ok(Args::Version));
        assert_eq!(parse_args(&args(&["--clean"])), Ok(Args::Clean));
        assert!(parse_args(&args(&["--clean", "/n"])).is_err());
    }

    /// Two threads from registry::PARALLEL_FROM containers on: the same files and the
    /// same messages, in the same order, as rendering the registry at once.
    #[test]
    fn two_threads_give_what_one_does() {
        use nixos_nspawn_core::render::{render_registry, Contents, Dest};
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path().join("root"));
        let reg = root.registry_dir();
        std::fs::create_dir_all(&reg).unwrap();
        // A /24 pool: 64 blocks, so many of the names collide.
        std::fs::write(
            root.join(addressing::HOST_NETWORK_FILE),
            r#"{"version": 1, "ipv4Pool": "10.99.0.0/24"}"#,
        )
        .unwrap();
        let n = registry::PARALLEL_FROM + 44;
        for i in 0..n {
            let name = format!("c{i:04}");
            let text = match i % 50 {
                7 => "{ not json".to_owned(),
                9 => format!(r#"{{"version": 1, "name": "{name}", "system": "relative"}}"#),
                13 => format!(
                    r#"{{"version": 1, "name": "{name}", "system": "/nix/store/x", "network": {{"mode": "zone", "zone": "z{}"}}}}"#,
                    i % 3
                ),
                _ => nixos_nspawn_core::Entry::new(&name, "/nix/store/x").to_json(),
            };
            std::fs::write(reg.join(format!("{name}.json")), text).unwrap();
        }
        let ctx = Context {
            host_network: addressing::load_host_network(&root),
            ..Context::default()
        };
        let normal = d.path().join("normal");
        let report = run(&root, &normal, &ctx).unwrap();
        report.run.as_ref().unwrap();
        let expected = render_registry(&registry::load(&root), &ctx);
        assert_eq!(report.containers, expected.containers);
        let got: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        let want: Vec<String> = expected.errors.iter().map(ToString::to_string).collect();
        assert_eq!(got, want);
        assert!(want
            .iter()
            .any(|e| e.contains("derive the same address block")));
        for f in &expected.files {
            let path = match &f.dest {
                Dest::Generator(rel) => normal.join(rel),
                Dest::Run(p) => root.join(p),
            };
            match &f.contents {
                Contents::File(text) => {
                    assert_eq!(&std::fs::read_to_string(&path).unwrap(), text, "{path:?}")
                }
                Contents::Symlink(t) => assert_eq!(&std::fs::read_link(&path).unwrap(), t),
            }
        }
        // Nothing pruned that the other thread wrote: a second run changes nothing.
        let again = run(&root, &normal, &ctx).unwrap().run.unwrap();
        assert_eq!((again.written.len(), again.pruned.len()), (0, 0));
    }

    #[test]
    fn build_context() {
        let (ctx, warning) = context(&Root::new("/tmp/r"));
        assert_eq!(warning, None);
        assert_eq!(ctx.root_env, Some(PathBuf::from("/tmp/r")));
        assert!(ctx.helper_dir.is_absolute());
        let (ctx, _) = context(&Root::default());
        assert_eq!(ctx.root_env, None);
        assert_eq!(ctx.unit_dir, Path::new(UNIT_DIR));
    }
}
