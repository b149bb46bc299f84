//! What classic `nixos-container` users type every day, thin over systemd
//! and machined: `start`, `stop`, `restart`, `terminate` (the unit), `login`,
//! `root-login` and `run` (a login, a root shell or a command inside the
//! container, started by the container's own service manager).
//!
//! - `start`/`stop`/`restart NAME`: `systemctl VERB systemd-nspawn@NAME.service`.
//! - `terminate NAME`: `machinectl terminate NAME`, then wait until the unit
//!   is inactive (as classic waits for the leader to exit).
//! - `login NAME`: `machinectl login NAME` (a getty inside; needs D-Bus in
//!   the container, as every NixOS system has).
//! - `root-login NAME`: `machinectl shell root@NAME` (a root login shell
//!   without password, as classic's `su -l` through nsenter gave), watching
//!   the shell's unit in the container: when a cgroup-v1 container's systemd
//!   missed that it has no process left, it is told ([`ShellWatch`]).
//! - `run NAME -- CMD…`: `systemd-run --machine=NAME --wait --uid=root … --
//!   /bin/sh -l -c '"$@"; exit $?' sh CMD…`: CMD runs as a transient unit of
//!   the container's systemd, in a root login shell's environment (classic ran
//!   `su root -l -c "exec CMD"`), and its exit status is ours (128 + N when
//!   signal N ended it). Nothing runs on the host side of the container's
//!   namespaces, so user-namespaced containers work and stay confined.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use argh::FromArgs;

use nixos_nspawn_core::registry::Entry;

use crate::edit::{self, Found};
use crate::systemd::{ptmx_indexes, Attach, GuestUnit, Tool, UnitDetails, Verb, Watch};
use crate::{not_found, usage, Ctx, EXIT_OK};

/// Start a container (systemctl start systemd-nspawn@NAME.service).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
pub struct StartArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Stop a container: a clean shutdown (systemctl stop).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct StopArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Restart a container (systemctl restart), or start it when it is stopped.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restart")]
pub struct RestartArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Terminate a running container (machinectl terminate) and wait until its
/// unit has stopped.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "terminate")]
pub struct TerminateArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Log in to a running container on a getty inside it (machinectl login);
/// press ^] three times within a second to leave.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "login")]
pub struct LoginArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Open a root login shell in a running container, without a password
/// (machinectl shell root@NAME).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "root-login")]
pub struct RootLoginArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
}

/// Run a command as root inside a running container (systemd-run
/// --machine=NAME), in a login shell's environment; exits with the
/// command's exit status.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
    /// the command and its arguments (after --)
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

/// A container the machine commands can act on.
struct Known {
    /// Its registry entry (`None`: removed from the registry but its unit
    /// still runs, or the entry is invalid).
    entry: Option<Entry>,
    unit: UnitDetails,
}

/// Look `name` up in the registry and ask systemd about its unit.
/// `need_entry`: the command starts the unit, so the generator must have made
/// it from a valid entry.
fn lookup(ctx: &Ctx, name: &str, need_entry: bool) -> Result<Known> {
    edit::check_name(name)?;
    let found = edit::find(&ctx.root, name)?;
    if let (Found::Invalid(errors), true) = (&found, need_entry) {
        return Err(edit::entry_errors(errors).context(format!(
            "the registry entry of {name} is invalid, so systemd has no unit for it; fix {}",
            nixos_nspawn_core::paths::registry_file(name).display()
        )));
    }
    if !ctx.sys.available() {
        anyhow::bail!(
            "systemd is not running here (no /run/systemd/system): cannot act on container {name}"
        );
    }
    let unit = ctx
        .sys
        .unit_details(name)
        .with_context(|| format!("asking systemd about {name}"))?;
    let entry = match found {
        Found::Imperative(e) => Some(e),
        Found::Declarative { entry, .. } => entry,
        Found::Invalid(_) => None,
        Found::Missing if !need_entry && unit.state.is_running() => None,
        Found::Missing => {
            return Err(not_found(format!(
                "there is no container {name} ({} does not exist)",
                nixos_nspawn_core::paths::registry_file(name).display()
            )))
        }
    };
    Ok(Known { entry, unit })
}

/// The error for a container that must run and does not.
fn not_running(name: &str, u: &UnitDetails) -> anyhow::Error {
    anyhow::anyhow!(
        "{name} is not running ({}); start it with nixos-nspawn start {name}",
        u.state.word()
    )
}

fn unit_verb(ctx: &Ctx, name: &str, verb: Verb, need_entry: bool) -> Result<i32> {
    lookup(ctx, name, need_entry)?;
    ctx.sys.unit(verb, name).with_context(|| {
        format!(
            "{} {name} failed (see journalctl -u systemd-nspawn@{name}.service)",
            match verb {
                Verb::Start => "starting",
                Verb::Stop => "stopping",
                Verb::Restart => "restarting",
                Verb::Reload => "reloading",
            }
        )
    })?;
    Ok(EXIT_OK)
}

pub fn run_start(ctx: &mut Ctx, a: StartArgs) -> Result<i32> {
    unit_verb(ctx, &a.name, Verb::Start, true)
}

pub fn run_stop(ctx: &mut Ctx, a: StopArgs) -> Result<i32> {
    unit_verb(ctx, &a.name, Verb::Stop, false)
}

pub fn run_restart(ctx: &mut Ctx, a: RestartArgs) -> Result<i32> {
    unit_verb(ctx, &a.name, Verb::Restart, true)
}

/// How long `terminate` waits for the unit to stop (systemd kills what is
/// left after the unit's stop timeout, 90 s by default).
const TERMINATE_WAIT: Duration = Duration::from_secs(300);

pub fn run_terminate(ctx: &mut Ctx, a: TerminateArgs) -> Result<i32> {
    let name = &a.name;
    let k = lookup(ctx, name, false)?;
    if !k.unit.state.is_running() && k.unit.state.active_state != "deactivating" {
        log::info!("{name} is not running ({})", k.unit.state.word());
        return Ok(EXIT_OK);
    }
    ctx.sys
        .terminate(name)
        .with_context(|| format!("terminating {name} failed"))?;
    let start = Instant::now();
    loop {
        let u = ctx
            .sys
            .unit_details(name)
            .with_context(|| format!("asking systemd about {name}"))?;
        if !u.state.is_running() && u.state.active_state != "deactivating" {
            return Ok(EXIT_OK);
        }
        if start.elapsed() > TERMINATE_WAIT {
            anyhow::bail!(
                "{name} was terminated but its unit is still {} after {} s",
                u.state.active_state,
                TERMINATE_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running container, for login, root-login and run.
fn running(ctx: &Ctx, name: &str) -> Result<Known> {
    let k = lookup(ctx, name, false)?;
    if !k.unit.state.is_running() {
        return Err(not_running(name, &k.unit));
    }
    Ok(k)
}

pub fn run_login(ctx: &mut Ctx, a: LoginArgs) -> Result<i32> {
    running(ctx, &a.name)?;
    ctx.flush()?;
    ctx.sys.attached(
        Tool::Machinectl,
        &["login".to_owned(), a.name.clone()],
        Attach::Inherit,
    )
}

/// How often root-login looks at the shell's unit in the container.
const SHELL_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Looks after telling the container's systemd before root-login stops
/// waiting for machinectl to return and ends it.
const SHELL_LEAVE_AFTER: u32 = 5;

/// Looks at the shell's unit after machinectl returned, and how often.
const SHELL_LOOKS_AFTER: u32 = 8;
const SHELL_LOOK_AFTER_EVERY: Duration = Duration::from_millis(500);

/// Whether a unit's processes are gone by systemd's own account while it
/// still waits for them: stopping (`KillMode=mixed` goes on to SIGKILL at
/// once when the main process is gone), with no main or control process.
/// A cgroup-v1 container's systemd learns that the rest of the cgroup
/// emptied only from SIGCHLD of the processes it watches, and sometimes
/// misses it (the unit then stays so until its stop timeout).
pub fn shell_gone(u: &GuestUnit) -> bool {
    u.state.active_state == "deactivating"
        && matches!(
            u.state.sub_state.as_str(),
            "stop-sigterm" | "stop-sigkill" | "final-sigterm" | "final-sigkill"
        )
        && u.main_pid.is_none()
        && u.control_pid.is_none()
}

/// The unit machined starts in the container for the shell on its pseudo
/// terminal N (`/dev/pts/N` there).
pub fn shell_unit(pty: u32) -> String {
    format!("container-shell@{pty}.service")
}

/// What root-login does after one look at the shell's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellStep {
    Wait,
    /// Tell the container's systemd that the unit's cgroup is empty.
    TellEmpty {
        cgroup: String,
    },
    /// Told, and machinectl is still connected: end it.
    Leave,
}

/// root-login's watch over its shell's unit (`container-shell@N.service`
/// in the container), one look at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellWatch {
    pub unit: String,
    /// Consecutive looks that found the shell gone and the unit stopping.
    gone_looks: u32,
    /// Looks since the container's systemd was told.
    since_told: Option<u32>,
}

impl ShellWatch {
    pub fn new(unit: String) -> ShellWatch {
        ShellWatch {
            unit,
            gone_looks: 0,
            since_told: None,
        }
    }

    /// Whether the container's systemd was told (the unit was stuck).
    pub fn told(&self) -> bool {
        self.since_told.is_some()
    }

    /// The next step after a look that found `units` (`None`: the look
    /// failed). The shell must be seen gone on two looks in a row (a unit
    /// that ends normally passes through these states within milliseconds).
    pub fn step(&mut self, units: Option<&[GuestUnit]>) -> ShellStep {
        if let Some(n) = self.since_told.as_mut() {
            *n += 1;
            return if *n == SHELL_LEAVE_AFTER {
                ShellStep::Leave
            } else {
                ShellStep::Wait
            };
        }
        let stuck = units
            .unwrap_or_default()
            .iter()
            .find(|u| u.id == self.unit && shell_gone(u));
        let Some(u) = stuck else {
            self.gone_looks = 0;
            return ShellStep::Wait;
        };
        self.gone_looks += 1;
        if self.gone_looks < 2 {
            return ShellStep::Wait;
        }
        self.since_told = Some(0);
        match &u.control_group {
            Some(cg) => ShellStep::TellEmpty { cgroup: cg.clone() },
            None => ShellStep::Wait,
        }
    }
}

pub fn run_root_login(ctx: &mut Ctx, a: RootLoginArgs) -> Result<i32> {
    let name = &a.name;
    running(ctx, name)?;
    ctx.flush()?;
    let sys = ctx.sys;
    // machinectl returns when the shell's unit has ended and the container's
    // systemd has closed the pseudo terminal it holds for it. Watch that
    // unit (known by the terminal's index: machinectl holds its master).
    let mut watch: Option<ShellWatch> = None;
    let mut ended = false;
    let mut look = |pid: u32| -> Watch {
        if watch.is_none() {
            if let [pty] = ptmx_indexes(pid)[..] {
                watch = Some(ShellWatch::new(shell_unit(pty)));
            }
        }
        let Some(w) = watch.as_mut() else {
            return Watch::Continue;
        };
        let units = sys
            .guest_units(name, &w.unit)
            .map_err(|e| log::debug!("looking at {} in {name}: {e:#}", w.unit))
            .ok();
        match w.step(units.as_deref()) {
            ShellStep::Wait => Watch::Continue,
            ShellStep::TellEmpty { cgroup } => {
                if let Err(e) = sys.guest_cgroup_empty(name, &cgroup) {
                    log::debug!("telling {name}'s systemd that {cgroup} is empty: {e:#}");
                }
                Watch::Continue
            }
            ShellStep::Leave => {
                ended = true;
                Watch::End
            }
        }
    };
    let status = sys.attached_watched(
        Tool::Machinectl,
        &["shell".to_owned(), format!("root@{name}")],
        Attach::Inherit,
        SHELL_LOOK_EVERY,
        &mut look,
    )?;
    // machinectl left before the unit ended (^] three times, or ended by a
    // signal): the shell gets SIGHUP, and its unit may then be stuck the
    // same way (left failed, it would refuse the next shell on that pty).
    // Look a few times until it has ended; a unit that has ended is not
    // found at the first look.
    if let Some(w) = watch.as_mut().filter(|w| !w.told()) {
        for _ in 0..SHELL_LOOKS_AFTER {
            let units = sys.guest_units(name, &w.unit).ok();
            let ended = units.as_deref().is_some_and(|us| {
                us.iter().all(|u| {
                    u.id != w.unit
                        || !u.state.is_running() && u.state.active_state != "deactivating"
                })
            });
            if units.is_none() || ended {
                break;
            }
            if let ShellStep::TellEmpty { cgroup } = w.step(units.as_deref()) {
                if let Err(e) = sys.guest_cgroup_empty(name, &cgroup) {
                    log::debug!("telling {name}'s systemd that {cgroup} is empty: {e:#}");
                }
                break;
            }
            std::thread::sleep(SHELL_LOOK_AFTER_EVERY);
        }
    }
    let Some(w) = watch.filter(ShellWatch::told) else {
        return Ok(status);
    };
    if ended {
        log::warn!(
            "the shell in {name} has exited, but {} there is still stopping and held machinectl; left it (the unit ends when its stop timeout runs out)",
            w.unit
        );
        return Ok(1);
    }
    log::info!(
        "the shell in {name} had exited but {name}'s systemd missed that {} had no process left (a cgroup-v1 artefact); told it",
        w.unit
    );
    Ok(status)
}

/// systemd expands `$NAME` and `${NAME}` in the command line of a unit (also a
/// transient one; systemd 252's systemd-run cannot turn that off): `$$` is a
/// literal `$`.
pub fn escape_dollars(arg: &str) -> String {
    arg.replace('$', "$$")
}

/// The shell that runs a `run` command: a root login shell's environment
/// (`/etc/profile`, as classic's `su root -l`), the command as its
/// positional parameters (never re-quoted), and its exit status reported as
/// a shell does (128 + N for signal N, which systemd would count as a clean
/// exit for SIGTERM, SIGINT, SIGHUP and SIGPIPE).
const RUN_SHELL: [&str; 5] = ["/bin/sh", "-l", "-c", "\"$@\"; exit $?", "sh"];

/// The `systemd-run` arguments for `run`. `pty`: give the command a pseudo
/// terminal inside the container (when ours is one and the container is not
/// user-namespaced: systemd 252 cannot hand such a container a terminal,
/// "Failed to change ownership of terminal"); else pipes.
pub fn systemd_run_args(name: &str, command: &[String], pty: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--machine={name}"),
        "--wait".into(),
        "--quiet".into(),
        "--collect".into(),
        "--uid=root".into(),
        if pty { "--pty" } else { "--pipe" }.into(),
        "--".into(),
    ];
    args.extend(RUN_SHELL.iter().map(|a| escape_dollars(a)));
    args.extend(command.iter().map(|a| escape_dollars(a)));
    args
}

/// Whether the machine runs in a user namespace of its own: its leader's
/// `uid_map` (the host kernel's file) maps anything but the identity.
fn user_namespaced(ctx: &Ctx, name: &str) -> bool {
    let Some(leader) = ctx.sys.leader(name) else {
        return true;
    };
    match std::fs::read_to_string(format!("/proc/{leader}/uid_map")) {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => true,
    }
}

pub fn run_run(ctx: &mut Ctx, a: RunArgs) -> Result<i32> {
    if a.command.is_empty() {
        return Err(usage(format!(
            "run needs a command: nixos-nspawn run {} -- COMMAND [ARGS…]",
            a.name
        )));
    }
    let k = running(ctx, &a.name)?;
    use std::io::IsTerminal as _;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let namespaced = k.entry.as_ref().is_some_and(|e| e.user_namespacing)
        || (terminal && user_namespaced(ctx, &a.name));
    let pty = terminal && !namespaced;
    if terminal && !pty {
        log::debug!(
            "{} runs in a user namespace: the command gets pipes, not a terminal (systemd 252 cannot give it one)",
            a.name
        );
    }
    ctx.flush()?;
    let args = systemd_run_args(&a.name, &a.command, pty);
    ctx.sys.attached(
        Tool::SystemdRun,
        &args,
        if pty {
            Attach::Inherit
        } else {
            Attach::NoTerminal
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_USAGE};
    use nixos_nspawn_core::registry::Entry;

    fn env_with(names: &[&str]) -> Env {
        let env = Env::new();
        for n in names {
            edit::write_entry(&env.root(), &Entry::new(n, "/nix/store/aaaa-system")).unwrap();
        }
        env
    }

    fn start(env: &mut Env, name: &str) -> Result<i32> {
        run_start(&mut env.ctx(), StartArgs { name: name.into() })
    }

    fn stop(env: &mut Env, name: &str) -> Result<i32> {
        run_stop(&mut env.ctx(), StopArgs { name: name.into() })
    }

    fn terminate(env: &mut Env, name: &str) -> Result<i32> {
        run_terminate(&mut env.ctx(), TerminateArgs { name: name.into() })
    }

    #[test]
    fn unit_verbs() {
        let mut env = env_with(&["web"]);
        assert_eq!(start(&mut env, "web").unwrap(), 0);
        assert_eq!(
            run_restart(&mut env.ctx(), RestartArgs { name: "web".into() }).unwrap(),
            0
        );
        assert_eq!(stop(&mut env, "web").unwrap(), 0);
        assert_eq!(
            env.sys.calls(),
            vec!["start web", "restart web", "stop web"]
        );
        assert!(env.output().is_empty(), "quiet on success, as classic");
        // Failures name the journal.
        env.sys.fail_on("start web");
        let e = start(&mut env, "web").unwrap_err();
        assert_eq!(exit_code(&e), 1);
        assert!(
            format!("{e:#}").contains("journalctl -u systemd-nspawn@web.service"),
            "{e:#}"
        );
    }

    #[test]
    fn unknown_invalid_and_removed_containers() {
        let mut env = env_with(&[]);
        let e = start(&mut env, "nope").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_NOT_FOUND);
        let e = stop(&mut env, "nope").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_NOT_FOUND);
        let e = start(&mut env, "bad name").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        // An invalid entry has no unit to start, but a running one can be stopped.
        std::fs::create_dir_all(env.root().registry_dir()).unwrap();
        std::fs::write(edit::registry_path(&env.root(), "bad"), "{").unwrap();
        let e = start(&mut env, "bad").unwrap_err();
        assert!(format!("{e:#}").contains("is invalid"), "{e:#}");
        env.sys.set_running("bad");
        stop(&mut env, "bad").unwrap();
        // Removed from the registry but still running: stop and terminate work.
        env.sys.set_running("gone");
        terminate(&mut env, "gone").unwrap();
        assert!(env.sys.calls().contains(&"terminate gone".to_owned()));
        let e = start(&mut env, "gone").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_NOT_FOUND);
    }

    #[test]
    fn terminate_waits_and_is_quiet_when_stopped() {
        let mut env = env_with(&["web"]);
        terminate(&mut env, "web").unwrap();
        assert!(env.sys.calls().is_empty(), "not running: nothing to do");
        env.sys.set_running("web");
        terminate(&mut env, "web").unwrap();
        assert_eq!(env.sys.calls(), vec!["terminate web"]);
        env.sys.set_running("web");
        env.sys.clear();
        env.sys.fail_on("terminate web");
        assert_eq!(exit_code(&terminate(&mut env, "web").unwrap_err()), 1);
    }

    #[test]
    fn login_and_root_login_need_a_running_container() {
        let mut env = env_with(&["web"]);
        let e = run_login(&mut env.ctx(), LoginArgs { name: "web".into() }).unwrap_err();
        assert!(
            e.to_string()
                .contains("web is not running (stopped); start it with nixos-nspawn start web"),
            "{e}"
        );
        env.sys.set_running("web");
        run_login(&mut env.ctx(), LoginArgs { name: "web".into() }).unwrap();
        *env.sys.attached_status.lock().unwrap() = 1;
        assert_eq!(
            run_root_login(&mut env.ctx(), RootLoginArgs { name: "web".into() }).unwrap(),
            1
        );
        assert_eq!(
            env.sys.calls(),
            vec![
                "machinectl [inherit] login web",
                "machinectl [inherit] shell root@web"
            ]
        );
    }

    fn shell(state: (&str, &str), main: Option<u32>, control: Option<u32>) -> GuestUnit {
        GuestUnit {
            id: "container-shell@3.service".into(),
            state: crate::systemd::UnitState::new(state.0, state.1),
            main_pid: main,
            control_pid: control,
            control_group: Some("/system.slice/container-shell@3.service".into()),
        }
    }

    #[test]
    fn a_shell_is_gone_when_its_stopping_unit_has_no_process_left() {
        let stuck = shell(("deactivating", "stop-sigkill"), None, None);
        assert!(shell_gone(&stuck));
        assert!(shell_gone(&shell(
            ("deactivating", "stop-sigterm"),
            None,
            None
        )));
        assert!(shell_gone(&shell(
            ("deactivating", "final-sigkill"),
            None,
            None
        )));
        assert!(!shell_gone(&shell(("active", "running"), Some(40), None)));
        assert!(!shell_gone(&shell(
            ("deactivating", "stop-sigterm"),
            Some(40),
            None
        )));
        assert!(!shell_gone(&shell(
            ("deactivating", "stop-post"),
            None,
            Some(41)
        )));
        assert!(!shell_gone(&shell(
            ("deactivating", "stop-sigkill"),
            None,
            Some(41)
        )));
        assert!(!shell_gone(&shell(("failed", "failed"), None, None)));
        assert_eq!(shell_unit(3), "container-shell@3.service");
    }

    #[test]
    fn the_watch_tells_after_two_looks_and_leaves_after_five_more() {
        let stuck = [shell(("deactivating", "stop-sigkill"), None, None)];
        let running = [shell(("active", "running"), Some(40), None)];
        let other = [GuestUnit {
            id: "container-shell@4.service".into(),
            ..stuck[0].clone()
        }];
        let mut w = ShellWatch::new(shell_unit(3));
        // Running, another shell's unit stuck, a failed look: nothing to do.
        for look in [Some(&running[..]), Some(&other[..]), None, Some(&[][..])] {
            assert_eq!(w.step(look), ShellStep::Wait);
        }
        // Stuck once, then running again (a unit on its way out): wait.
        assert_eq!(w.step(Some(&stuck)), ShellStep::Wait);
        assert_eq!(w.step(Some(&running)), ShellStep::Wait);
        assert!(!w.told());
        // Stuck on two looks in a row: tell its systemd, once.
        assert_eq!(w.step(Some(&stuck)), ShellStep::Wait);
        assert_eq!(
            w.step(Some(&stuck)),
            ShellStep::TellEmpty {
                cgroup: "/system.slice/container-shell@3.service".into()
            }
        );
        assert!(w.told());
        for _ in 1..SHELL_LEAVE_AFTER {
            assert_eq!(w.step(Some(&stuck)), ShellStep::Wait);
        }
        assert_eq!(w.step(Some(&stuck)), ShellStep::Leave);
    }

    /// root-login's watch in the fake: our test process holds a pty master
    /// (as machinectl does) and passes on our PID as machinectl's.
    fn root_login_with(env: &mut Env, looks: Vec<Vec<GuestUnit>>, ends_when_told: bool) -> i32 {
        env.sys.set_running("web");
        *env.sys.guest_looks.lock().unwrap() = looks;
        env.sys.ends_when_told = ends_when_told;
        run_root_login(&mut env.ctx(), RootLoginArgs { name: "web".into() }).unwrap()
    }

    #[test]
    fn root_login_tells_a_container_that_missed_the_shells_end() {
        let _one = crate::testing::PTY_MASTERS.lock().unwrap();
        let Some((master, pty)) = crate::testing::open_ptmx() else {
            eprintln!("no /dev/ptmx here: skipped");
            return;
        };
        assert_eq!(ptmx_indexes(std::process::id()), [pty]);
        let unit = shell_unit(pty);
        let ours = |state: (&str, &str), main: Option<u32>| GuestUnit {
            id: unit.clone(),
            ..shell(state, main, None)
        };
        let running = vec![ours(("active", "running"), Some(40))];
        let stuck = vec![ours(("deactivating", "stop-sigkill"), None)];

        // The shell exits and its unit ends: machinectl returns, nothing told.
        let mut env = env_with(&["web"]);
        let code = root_login_with(&mut env, vec![running.clone(); 3], true);
        assert_eq!(code, 0);
        // Three looks while it runs, one after (the unit is gone).
        assert_eq!(
            env.sys.calls(),
            [
                "machinectl [inherit] shell root@web".to_owned(),
                format!("guest-units web {unit}"),
                format!("guest-units web {unit}"),
                format!("guest-units web {unit}"),
                format!("guest-units web {unit}"),
            ]
        );

        // The user left machinectl (^] three times) and the unit is stuck:
        // told after two more looks.
        let mut env = env_with(&["web"]);
        env.sys.looks_after = 2;
        let looks = vec![running.clone(), stuck.clone(), stuck.clone()];
        assert_eq!(root_login_with(&mut env, looks, false), 0);
        let calls = env.sys.calls();
        assert_eq!(calls.len(), 5, "{calls:?}");
        assert_eq!(
            calls[4],
            "cgroup-empty web /system.slice/container-shell@3.service"
        );

        // Stuck: told on the second look; machinectl then returns by itself.
        let mut env = env_with(&["web"]);
        let looks = vec![running.clone(), stuck.clone(), stuck.clone(), stuck.clone()];
        assert_eq!(root_login_with(&mut env, looks, true), 0);
        let calls = env.sys.calls();
        assert_eq!(
            calls[calls.len() - 1],
            "cgroup-empty web /system.slice/container-shell@3.service"
        );
        assert_eq!(calls.len(), 5, "{calls:?}");

        // Told, and still connected five looks later: machinectl is ended, exit 1.
        let mut env = env_with(&["web"]);
        let looks = vec![stuck.clone(); 10];
        assert_eq!(root_login_with(&mut env, looks, false), 1);
        let calls = env.sys.calls();
        assert_eq!(calls.last().unwrap(), "sigterm");
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("cgroup-empty"))
                .count(),
            1
        );
        drop(master);
    }

    #[test]
    fn run_passes_the_exit_status_and_never_a_terminal() {
        let mut env = env_with(&["web"]);
        let args = |cmd: &[&str]| RunArgs {
            name: "web".into(),
            command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        };
        let e = run_run(&mut env.ctx(), args(&[])).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert!(
            run_run(&mut env.ctx(), args(&["true"])).is_err(),
            "not running"
        );
        env.sys.set_running("web");
        *env.sys.attached_status.lock().unwrap() = 7;
        assert_eq!(
            run_run(&mut env.ctx(), args(&["sh", "-c", "exit 7"])).unwrap(),
            7
        );
        let calls = env.sys.calls();
        // cargo test's stdin is no terminal: pipes, with terminals kept out.
        assert_eq!(
            calls,
            vec![
                r#"systemd-run [no-terminal] --machine=web --wait --quiet --collect --uid=root --pipe -- /bin/sh -l -c "$$@"; exit $$? sh sh -c exit 7"#
            ]
        );
    }

    #[test]
    fn dollars_reach_the_command_literally() {
        let a = systemd_run_args("web", &["echo".into(), "$HOME ${X} $$".into()], true);
        assert_eq!(a.last().unwrap(), "$$HOME $${X} $$$$");
        assert!(a.contains(&"--pty".to_owned()));
        assert_eq!(a[7..12], ["/bin/sh", "-l", "-c", "\"$$@\"; exit $$?", "sh"]);
    }
}
