//! `show-ip NAME` and `show-host-key NAME`, as classic `nixos-container`.
//!
//! - `show-ip`: the container's address from machined (`GetMachineAddresses`
//!   through `busctl --json=short`): its first global IPv4 address, else its
//!   first global IPv6 address, else a link-local one; `--all` prints every
//!   address. (Classic printed `LOCAL_ADDRESS` from its .conf file.)
//! - `show-host-key`: `/etc/ssh/ssh_host_ed25519_key.pub`, else
//!   `ssh_host_ecdsa_key.pub`, of the container's root file system, read
//!   without following links or opening anything but a regular file (the
//!   container's root user controls that tree), and printed only when it is
//!   one line of printable text (so a hostile container cannot send escape
//!   sequences to the terminal).

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use argh::FromArgs;

use nixos_nspawn_core::paths;
use nixos_nspawn_core::rootfs::Dir;

use crate::edit::{self, Found};
use crate::{not_found, Ctx, EXIT_OK};

/// Print a running container's IP address (from machined).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show-ip")]
pub struct ShowIpArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// print every address, one per line
    #[argh(switch)]
    pub all: bool,
}

/// Print the container's SSH host public key (ed25519, else ecdsa).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show-host-key")]
pub struct ShowHostKeyArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// The registry entry of `name` (any kind); not found (3) when there is none.
fn known(ctx: &Ctx, name: &str) -> Result<Option<nixos_nspawn_core::registry::Entry>> {
    edit::check_name(name)?;
    match edit::find(&ctx.root, name)? {
        Found::Missing => Err(not_found(format!(
            "there is no container {name} ({} does not exist)",
            paths::registry_file(name).display()
        ))),
        Found::Imperative(e) => Ok(Some(e)),
        Found::Declarative { entry, .. } => Ok(entry),
        Found::Invalid(_) => Ok(None),
    }
}

/// How useful an address is for reaching the container: global IPv4, global
/// IPv6, then link-local ones.
fn rank(a: &str) -> u8 {
    match a.split('%').next().unwrap_or(a).parse::<IpAddr>() {
        Ok(IpAddr::V4(v)) if !v.is_link_local() && !v.is_loopback() => 0,
        Ok(IpAddr::V6(v)) if (v.segments()[0] & 0xffc0) != 0xfe80 && !v.is_loopback() => 1,
        Ok(IpAddr::V4(_)) => 2,
        Ok(IpAddr::V6(_)) => 3,
        Err(_) => 4,
    }
}

/// The address `show-ip` prints: the best-ranked, in machined's order.
pub fn best_address(addrs: &[String]) -> Option<&String> {
    addrs.iter().min_by_key(|a| rank(a))
}

pub fn run_show_ip(ctx: &mut Ctx, a: ShowIpArgs) -> Result<i32> {
    let name = &a.name;
    known(ctx, name)?;
    if !ctx.sys.available() {
        anyhow::bail!("systemd is not running here: no addresses to ask machined for");
    }
    let unit = ctx
        .sys
        .unit_details(name)
        .with_context(|| format!("asking systemd about {name}"))?;
    if !unit.state.is_running() {
        anyhow::bail!(
            "{name} is not running ({}); its addresses come from the running container",
            unit.state.word()
        );
    }
    let addrs = ctx.sys.addresses(name);
    if a.all {
        if addrs.is_empty() {
            anyhow::bail!("{name} has no IP address (machined reports none)");
        }
        for addr in &addrs {
            ctx.println(addr)?;
        }
        return Ok(EXIT_OK);
    }
    let best = best_address(&addrs)
        .with_context(|| format!("{name} has no IP address (machined reports none)"))?;
    ctx.println(best)?;
    Ok(EXIT_OK)
}

/// The key files classic `nixos-container show-host-key` reads, in order.
pub const HOST_KEYS: [&str; 2] = [
    "etc/ssh/ssh_host_ed25519_key.pub",
    "etc/ssh/ssh_host_ecdsa_key.pub",
];

/// A public key line as `ssh-keygen` writes it: printable ASCII, one line.
fn check_key(text: &[u8], what: &str) -> Result<String> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let printable = body.iter().all(|b| (0x20..0x7f).contains(b));
    let s = std::str::from_utf8(body).unwrap_or_default();
    let kind = s.split(' ').next().unwrap_or_default();
    if !printable || body.is_empty() || !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-")) {
        anyhow::bail!("{what} does not look like an SSH public key (one line of printable text starting with its type); not printed");
    }
    Ok(s.to_owned())
}

pub fn run_show_host_key(ctx: &mut Ctx, a: ShowHostKeyArgs) -> Result<i32> {
    let name = &a.name;
    let entry = known(ctx, name)?;
    let running = ctx.sys.available()
        && ctx
            .sys
            .unit_details(name)
            .is_ok_and(|u| u.state.is_running());
    let leader = if running { ctx.sys.leader(name) } else { None };
    // An ephemeral container's root is a snapshot only the running machine
    // knows: read it through its leader's root. Otherwise the state directory.
    let ephemeral = entry.as_ref().is_some_and(|e| e.ephemeral);
    let (tree, shown) = match (ephemeral, leader) {
        (true, Some(pid)) => (
            Dir::open_trusted(std::path::Path::new(&format!("/proc/{pid}/root")))?,
            format!("the root of {name} (leader PID {pid})"),
        ),
        (true, None) => anyhow::bail!(
            "{name} is ephemeral and not running: its root file system (and host key) exists only while it runs"
        ),
        (false, _) => {
            let machines = ctx.root.machines_dir();
            let dir = match Dir::open_trusted(&machines).and_then(|m| m.open_root(name)) {
                Ok(d) => d,
                Err(e) if !ctx.root.join(paths::machine_dir(name)).exists() => {
                    log::debug!("{e:#}");
                    anyhow::bail!(
                        "{name} has no root file system yet ({} does not exist: it has never run)",
                        paths::machine_dir(name).display()
                    );
                }
                Err(e) => return Err(e),
            };
            (dir, paths::machine_dir(name).display().to_string())
        }
    };
    for rel in HOST_KEYS {
        if let Some(bytes) = tree.read_file(rel, 16 * 1024)? {
            let key = check_key(&bytes, &format!("/{rel} of {shown}"))?;
            if let Some(pid) = leader.filter(|_| ephemeral) {
                // The PID still belongs to the container (not reused meanwhile).
                if ctx.sys.leader(name) != Some(pid) {
                    anyhow::bail!("{name} stopped while its host key was read");
                }
            }
            ctx.println(key)?;
            return Ok(EXIT_OK);
        }
    }
    anyhow::bail!(
        "{name} has no SSH host key (neither /{} nor /{} in {shown}; is sshd enabled in it?)",
        HOST_KEYS[0],
        HOST_KEYS[1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND};
    use nixos_nspawn_core::registry::Entry;
    use std::collections::BTreeMap;

    #[test]
    fn best_address_prefers_global_ipv4() {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            best_address(&v(&["fe80::1", "fd00::2", "169.254.1.2", "10.0.0.2"])).unwrap(),
            "10.0.0.2"
        );
        assert_eq!(
            best_address(&v(&["fe80::1", "fd00::2"])).unwrap(),
            "fd00::2"
        );
        assert_eq!(best_address(&v(&["fe80::1%3"])).unwrap(), "fe80::1%3");
        assert!(best_address(&[]).is_none());
    }

    #[test]
    fn show_ip() {
        let mut env = Env::new();
        edit::write_entry(&env.root(), &Entry::new("web", "/nix/store/a")).unwrap();
        let args = |all| ShowIpArgs {
            name: "web".into(),
            all,
        };
        let e = run_show_ip(&mut env.ctx(), args(false)).unwrap_err();
        assert!(e.to_string().contains("web is not running"), "{e}");
        env.sys.set_running("web");
        assert!(
            run_show_ip(&mut env.ctx(), args(false)).is_err(),
            "no address"
        );
        env.sys.addresses = BTreeMap::from([(
            "web".to_owned(),
            vec!["fe80::1".to_owned(), "192.168.7.9".to_owned()],
        )]);
        run_show_ip(&mut env.ctx(), args(false)).unwrap();
        assert_eq!(env.output(), "192.168.7.9\n");
        run_show_ip(&mut env.ctx(), args(true)).unwrap();
        assert_eq!(env.output(), "fe80::1\n192.168.7.9\n");
        let e = run_show_ip(
            &mut env.ctx(),
            ShowIpArgs {
                name: "nope".into(),
                all: false,
            },
        )
        .unwrap_err();
        assert_eq!(exit_code(&e), EXIT_NOT_FOUND);
    }

    #[test]
    fn host_keys_are_read_safely() {
        use std::os::unix::fs::symlink;
        let mut env = Env::new();
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/a")).unwrap();
        let args = || ShowHostKeyArgs { name: "web".into() };
        let e = run_show_host_key(&mut env.ctx(), args()).unwrap_err();
        assert!(e.to_string().contains("never run"), "{e}");
        let ssh = root.join(paths::machine_dir("web")).join("etc/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let e = run_show_host_key(&mut env.ctx(), args()).unwrap_err();
        assert!(e.to_string().contains("has no SSH host key"), "{e}");
        assert_eq!(exit_code(&e), 1);
        std::fs::write(
            ssh.join("ssh_host_ecdsa_key.pub"),
            "ecdsa-sha2-nistp256 AAAAE2 root@web\n",
        )
        .unwrap();
        run_show_host_key(&mut env.ctx(), args()).unwrap();
        assert_eq!(env.output(), "ecdsa-sha2-nistp256 AAAAE2 root@web\n");
        std::fs::write(
            ssh.join("ssh_host_ed25519_key.pub"),
            "ssh-ed25519 AAAAC3 root@web\n",
        )
        .unwrap();
        run_show_host_key(&mut env.ctx(), args()).unwrap();
        assert_eq!(
            env.output(),
            "ssh-ed25519 AAAAC3 root@web\n",
            "ed25519 first"
        );
        // Escape sequences are never printed; links are never followed.
        std::fs::write(
            ssh.join("ssh_host_ed25519_key.pub"),
            "ssh-ed25519 \x1b]0;owned\x07\n",
        )
        .unwrap();
        let e = run_show_host_key(&mut env.ctx(), args()).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not look like an SSH public key"),
            "{e}"
        );
        std::fs::remove_file(ssh.join("ssh_host_ed25519_key.pub")).unwrap();
        let secret = env.dir.path().join("host-key");
        std::fs::write(&secret, "ssh-ed25519 HOST root@host\n").unwrap();
        symlink(&secret, ssh.join("ssh_host_ed25519_key.pub")).unwrap();
        let e = run_show_host_key(&mut env.ctx(), args()).unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        assert!(env.output().is_empty());
        let e = run_show_host_key(
            &mut env.ctx(),
            ShowHostKeyArgs {
                name: "nope".into(),
            },
        )
        .unwrap_err();
        assert_eq!(exit_code(&e), EXIT_NOT_FOUND);
    }
}
