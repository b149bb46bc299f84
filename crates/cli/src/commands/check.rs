//! `check-registry [DIR]`: the registry parser on every entry
//! (`DIR/containers/*.json`) and zone file (`DIR/zones/*.json`) of a tree,
//! `/etc/nixos-nspawn` under the root unless given. The NixOS host module and
//! the container profile run it at build time (`system.checks`) on the files
//! they generate, so the Rust parser is the one validator of what Nix writes;
//! `--options host|container` words each problem after the NixOS option it
//! comes from (`nixos.containers.instances.NAME`, `nixos.containers.zones.ZONE`,
//! `nixosContainer`), followed by the registry field and the parser's message.

use std::path::Path;

use anyhow::Result;
use argh::FromArgs;

use nixos_nspawn_core::error::EntryError;
use nixos_nspawn_core::paths::Root;
use nixos_nspawn_core::registry::{self, RegistryDir};

use crate::{usage, Ctx, EXIT_ERROR, EXIT_OK};

/// Check registry entries and zone files with the parser the generator uses:
/// DIR/containers/*.json and DIR/zones/*.json (DIR: /etc/nixos-nspawn). Every
/// problem is printed; the exit status is 1 when there is one.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check-registry")]
pub struct CheckRegistryArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// name each problem after the NixOS options it comes from: "host"
    /// (nixos.containers.instances.NAME, nixos.containers.zones.ZONE) or
    /// "container" (nixosContainer)
    #[argh(option, from_str_fn(parse_options))]
    pub options: Option<Options>,
    /// the directory with containers/ and zones/ (default: /etc/nixos-nspawn
    /// under $NIXOS_NSPAWN_ROOT)
    #[argh(positional)]
    pub dir: Option<String>,
}

/// Whose options the files were generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    Host,
    Container,
}

fn parse_options(s: &str) -> Result<Options, String> {
    match s {
        "host" => Ok(Options::Host),
        "container" => Ok(Options::Container),
        _ => Err(format!("{s:?} is not host or container")),
    }
}

/// Which kind of file a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Container,
    Zone,
}

/// One problem, worded for `options`: the option prefix for the file's stem,
/// then the registry field, then the parser's message.
fn describe(options: Option<Options>, kind: Kind, e: &EntryError) -> String {
    let stem = e
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = match (options, kind) {
        (None, _) => return e.to_string(),
        (Some(Options::Host), Kind::Container) => {
            format!("nixos.containers.instances.{}", nix_attr(&stem))
        }
        (Some(Options::Host), Kind::Zone) => format!("nixos.containers.zones.{}", nix_attr(&stem)),
        (Some(Options::Container), _) => "nixosContainer".to_owned(),
    };
    match &e.field {
        Some(field) => format!("{prefix}: registry field {field}: {}", e.message),
        None => format!("{prefix}: {}", e.message),
    }
}

/// An attribute name as Nix prints it in an option path: bare when it is an
/// identifier, quoted otherwise (as lib.strings.escapeNixIdentifier).
fn nix_attr(name: &str) -> String {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'));
    if ident {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// Every problem of the files in `logical_dir` under `root`, and how many
/// files were checked.
fn check_dir(
    root: &Root,
    logical_dir: &str,
    kind: Kind,
    problems: &mut Vec<(Kind, EntryError)>,
) -> usize {
    let dir = match RegistryDir::open(root, logical_dir) {
        Ok(Some(d)) => d,
        Ok(None) => return 0,
        Err(e) => {
            problems.push((kind, e));
            return 0;
        }
    };
    let files = match dir.list() {
        Ok(f) => f,
        Err(e) => {
            problems.push((kind, e));
            return 0;
        }
    };
    for f in &files {
        let result = match kind {
            Kind::Container => dir.load(f, registry::parse_entry).map(|_| ()),
            Kind::Zone => dir.load(f, registry::parse_zone).map(|_| ()),
        };
        if let Err(errors) = result {
            problems.extend(errors.into_iter().map(|e| (kind, e)));
        }
    }
    files.len()
}

pub fn run(ctx: &mut Ctx, a: CheckRegistryArgs) -> Result<i32> {
    // A given DIR is a plain directory (a build directory, a copy); the
    // default is the registry under the root. Logical paths in messages are
    // relative to DIR, or the registry's own.
    let (root, containers, zones) = match &a.dir {
        Some(d) => {
            if !Path::new(d).is_dir() {
                return Err(usage(format!("{d} is not a directory")));
            }
            (Root::new(d), "containers", "zones")
        }
        None => (
            ctx.root.clone(),
            "/etc/nixos-nspawn/containers",
            "/etc/nixos-nspawn/zones",
        ),
    };
    let mut problems = Vec::new();
    let n_entries = check_dir(&root, containers, Kind::Container, &mut problems);
    let n_zones = check_dir(&root, zones, Kind::Zone, &mut problems);
    if problems.is_empty() {
        ctx.println(format!(
            "{n_entries} registry entries and {n_zones} zone files are valid"
        ))?;
        return Ok(EXIT_OK);
    }
    for (kind, e) in &problems {
        eprintln!("error: {}", describe(a.options, *kind, e));
    }
    Ok(EXIT_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn field_error(file: &str, field: &str, message: &str) -> EntryError {
        EntryError::field(&PathBuf::from(file), field, message)
    }

    #[test]
    fn problems_are_worded_after_the_options() {
        let e = field_error("containers/web.json", "network.zone", "\"x\" is bad");
        assert_eq!(
            describe(Some(Options::Host), Kind::Container, &e),
            "nixos.containers.instances.web: registry field network.zone: \"x\" is bad"
        );
        assert_eq!(
            describe(Some(Options::Container), Kind::Container, &e),
            "nixosContainer: registry field network.zone: \"x\" is bad"
        );
        assert_eq!(
            describe(None, Kind::Container, &e),
            "containers/web.json: network.zone: \"x\" is bad"
        );
        let z = field_error("zones/lan.json", "network.Network.Address", "bad");
        assert_eq!(
            describe(Some(Options::Host), Kind::Zone, &z),
            "nixos.containers.zones.lan: registry field network.Network.Address: bad"
        );
        let f = EntryError::file(&PathBuf::from("containers/a.b.json"), "is not JSON");
        assert_eq!(
            describe(Some(Options::Host), Kind::Container, &f),
            "nixos.containers.instances.\"a.b\": is not JSON"
        );
    }

    #[test]
    fn attribute_names_quoted_as_nix_does() {
        assert_eq!(nix_attr("web-1"), "web-1");
        assert_eq!(nix_attr("web_1"), "web_1");
        assert_eq!(nix_attr("1web"), "\"1web\"");
        assert_eq!(nix_attr("a.b"), "\"a.b\"");
    }
}
