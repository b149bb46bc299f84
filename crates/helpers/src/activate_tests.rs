//! Activation tests: parsing and error paths against a throwaway root, and,
//! where this runs as root with `unshare(1)`, the whole activation against a
//! fake container (a busybox tree in fresh PID, mount, UTS, IPC, network and
//! cgroup namespaces) with a fake `systemd-run` that records how it was
//! called. That the command then really runs confined inside a real
//! container is the integration suite's `sec_reload_confined`.

use super::*;
use crate::bootstrap::tests::Fixture;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

const SYSTEM: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";
const SYSTEM2: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web";
const SYSTEM3: &str = "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nixos-system-web";

fn failure_text(r: Result<Report, Failure>) -> (i32, String) {
    match r {
        Ok(r) => panic!("activation succeeded: {r:?}"),
        Err(Failure::Error(e)) => (1, format!("{e:#}")),
        Err(Failure::Status(code, msg)) => (code, msg),
        Err(Failure::Entry(errs)) => (
            1,
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nixos_nspawn_core::testing::write_script(path, body);
}

fn fake_machinectl(f: &Fixture, body: &str) -> Tools {
    let p = f.dir.path().join("machinectl");
    script(&p, &format!("#!/bin/sh\n{body}\n"));
    Tools {
        machinectl: p,
        ..Tools::default()
    }
}

#[test]
fn parsing() {
    assert_eq!(parse_leader("1234\n").unwrap(), 1234);
    assert!(parse_leader("").is_err());
    assert!(parse_leader("0").is_err());
    assert!(
        parse_leader("1").is_err(),
        "the host's init is never a leader"
    );
    assert!(parse_leader("12 13").is_err());
    let st = parse_status(
        "Name:\tsystemd\nNSpid:\t4242\t1\nCapBnd:\t000001fffeffffff\nNoNewPrivs:\t0\n",
    )
    .unwrap();
    assert_eq!(st.ns_pids, vec![4242, 1]);
    assert!(parse_status("Name:\tx\n").is_err());
    assert!(parse_status("NSpid:\t1\tx\n").is_err());
    assert!(in_unit(
        "0::/machine.slice/systemd-nspawn@web.service/payload/init.scope\n",
        "systemd-nspawn@web.service"
    ));
    assert!(in_unit(
        "1:name=systemd:/machine.slice/systemd-nspawn@web.service\n0::/\n",
        "systemd-nspawn@web.service"
    ));
    assert!(!in_unit(
        "0::/machine.slice/systemd-nspawn@web2.service/payload\n",
        "systemd-nspawn@web.service"
    ));
    assert!(!in_unit("0::/user.slice\n", "systemd-nspawn@web.service"));
}

#[test]
fn systemd_run_gets_the_command_verbatim() {
    let argv: Vec<String> = vec![
        format!("{SYSTEM}/bin/switch-to-configuration"),
        "test".into(),
    ];
    let env = vec![
        ("PATH".to_owned(), format!("{SYSTEM}/sw/bin")),
        ("LOCALE_ARCHIVE".to_owned(), "/a$b".to_owned()),
    ];
    assert_eq!(
        systemd_run_args("web", &argv, &env),
        vec![
            "--machine=web".to_string(),
            format!("--unit={UNIT}"),
            format!(
                "--description=nixos-nspawn activation: {SYSTEM}/bin/switch-to-configuration test"
            ),
            "--service-type=exec".into(),
            "--pipe".into(),
            "--wait".into(),
            "--collect".into(),
            "--quiet".into(),
            "--no-ask-password".into(),
            format!("--setenv=PATH={SYSTEM}/sw/bin"),
            "--setenv=LOCALE_ARCHIVE=/a$$b".into(),
            "--".into(),
            format!("{SYSTEM}/bin/switch-to-configuration"),
            "test".into(),
        ]
    );
    // systemd expands $VAR in ExecStart= argv: a literal $ is written $$.
    let args = systemd_run_args("web", &["/etc/re$load".to_string()], &[]);
    assert_eq!(args.last().unwrap(), "/etc/re$$load");
    assert!(args
        .iter()
        .any(|a| a == "--description=nixos-nspawn activation: /etc/re$$load"));
}

#[test]
fn exit_statuses_in_words() {
    let st = |code: i32| ExitStatus::from_raw(code << 8);
    assert_eq!(describe_status(st(3)), "exit status 3");
    assert!(describe_status(st(255)).contains("killed by a signal"));
    assert!(describe_status(st(203)).contains("could not be executed"));
    assert!(describe_status(st(1)).contains("cannot reach the container's service manager"));
    assert!(describe_status(ExitStatus::from_raw(9)).contains("killed by signal 9"));
}

#[test]
fn the_command_is_switch_to_configuration_or_the_reload_script() {
    let mut e = Entry::new("web", SYSTEM);
    assert_eq!(
        command(&e),
        vec![
            format!("{SYSTEM}/bin/switch-to-configuration"),
            "test".into()
        ]
    );
    e.activation.reload_script = Some("/etc/reload".into());
    assert_eq!(command(&e), vec!["/etc/reload".to_string()]);
}

#[test]
fn a_container_that_is_not_running_fails_fast_and_changes_nothing() {
    let f = Fixture::new();
    let before = crate::bootstrap::tests::snapshot(&f.root.join("/etc"));
    // No machined state directory: machinectl is asked (and cannot run).
    let tools = Tools {
        machinectl: "/nonexistent/machinectl".into(),
        ..Tools::default()
    };
    let (code, msg) = failure_text(activate(&f.root, "web", &tools));
    assert_eq!(code, 1);
    assert!(msg.contains("running /nonexistent/machinectl"), "{msg}");
    // machined's directory without a file for web: nothing is run at all.
    let state = machine_state_file(&f.root, "web");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let (code, msg) = failure_text(activate(&f.root, "web", &tools));
    assert_eq!(code, 1);
    assert!(
        msg.contains("container web is not running")
            && msg.contains("systemctl start systemd-nspawn@web.service"),
        "{msg}"
    );
    // machined has a record but says no (it went away meanwhile).
    std::fs::write(&state, "").unwrap();
    let before_state = crate::bootstrap::tests::snapshot(&f.root.join("/run"));
    let tools = fake_machinectl(&f, "echo \"No machine 'web' known\" >&2; exit 1");
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(msg.contains("container web is not running"), "{msg}");
    let tools = fake_machinectl(&f, "echo 'Failed to connect to bus' >&2; exit 1");
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(msg.contains("Failed to connect to bus"), "{msg}");
    let tools = fake_machinectl(&f, "echo garbage");
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(
        msg.contains("\"garbage\" is not a container leader's PID"),
        "{msg}"
    );
    assert_eq!(
        crate::bootstrap::tests::snapshot(&f.root.join("/run")),
        before_state
    );
    assert_eq!(
        crate::bootstrap::tests::snapshot(&f.root.join("/etc")),
        before
    );
    assert!(!f.root.join("/nix/var").exists(), "no profile touched");
    assert!(!f.root.join("/var").exists());
}

#[test]
fn a_vanished_or_wrong_leader_is_refused() {
    let f = Fixture::new();
    let state = machine_state_file(&f.root, "web");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "").unwrap();
    // A process that has exited (and been reaped).
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let tools = fake_machinectl(&f, &format!("echo {dead}"));
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(
        msg.contains(&format!("leader (PID {dead}) exited")),
        "{msg}"
    );
    // A live process that is not the init of a container: this test itself.
    let tools = fake_machinectl(&f, &format!("echo {}", std::process::id()));
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(msg.contains("is not the init of a container"), "{msg}");
    assert!(profile::generations(&f.root, "web").unwrap().is_empty());
    assert!(applied::read(&f.root, "web").unwrap().is_none());
}

#[test]
fn a_missing_entry_is_reported() {
    let f = Fixture::new();
    let (code, msg) = failure_text(activate(&f.root, "db", &Tools::default()));
    assert_eq!(code, 1);
    assert!(
        msg.contains("/etc/nixos-nspawn/containers/db.json"),
        "{msg}"
    );
}

/// A throwaway container: busybox in new namespaces, chrooted to a temp dir;
/// PID 1 in its PID namespace.
struct FakeContainer {
    unshare: std::process::Child,
    leader: u32,
    dir: tempfile::TempDir,
}

impl FakeContainer {
    fn start() -> Option<FakeContainer> {
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["bin", "proc", "out", "etc"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy(busybox, r.join("bin/busybox")).unwrap();
        std::fs::set_permissions(r.join("out"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--cgroup",
        ]);
        cmd.arg("--mount-proc")
            .arg(format!("--root={}", r.display()))
            .args(["/bin/busybox", "sh", "-c"])
            .arg(
                "/bin/busybox hostname fakebox && /bin/busybox touch /out/ready && \
                 exec /bin/busybox sleep 600",
            );
        let unshare = match cmd.stdin(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: unshare: {e}");
                return None;
            }
        };
        let mut fc = FakeContainer {
            unshare,
            leader: 0,
            dir,
        };
        for _ in 0..500 {
            if fc.dir.path().join("out/ready").exists() {
                let children = std::fs::read_to_string(format!(
                    "/proc/{0}/task/{0}/children",
                    fc.unshare.id()
                ))
                .unwrap_or_default();
                fc.leader = children.split_whitespace().next()?.parse().ok()?;
                // Up once the leader has exec-ed its final `sleep`.
                let cmdline =
                    std::fs::read(format!("/proc/{}/cmdline", fc.leader)).unwrap_or_default();
                if cmdline == b"/bin/busybox\x00sleep\x00600\x00" {
                    return Some(fc);
                }
            }
            if let Ok(Some(status)) = fc.unshare.try_wait() {
                eprintln!("skipped: unshare exited ({status})");
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("skipped: the fake container did not come up");
        None
    }

    fn stop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.leader as i32).unwrap(),
            rustix::process::Signal::Kill,
        );
        let _ = self.unshare.wait();
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        self.stop();
    }
}

#[test]
fn checks_look_inside_the_container() {
    let Some(fc) = FakeContainer::start() else {
        return;
    };
    let leader = Leader::open(fc.leader).unwrap();
    let inside = Inside::new(&leader).unwrap();
    inside.check_executable("/bin/busybox").unwrap();
    // Checked inside the container's root, not on the host.
    let e = inside.check_executable("/usr/bin/unshare").unwrap_err();
    assert!(
        format!("{e:#}").contains("does not exist inside the container"),
        "{e:#}"
    );
    let e = inside.check_executable("/etc").unwrap_err();
    assert!(
        format!("{e:#}").contains("is not an executable file"),
        "{e:#}"
    );
    assert_eq!(
        inside.environment("/x"),
        vec![("PATH".to_owned(), "/x/sw/bin:/x/sw/sbin".to_owned())]
    );
}

/// A `systemd-run` that records its arguments (one per line) in `calls` and
/// exits with the status written to `exit` (0 when absent), printing a line on
/// stdout and one on stderr.
fn fake_systemd_run(f: &Fixture, tools: Tools) -> (Tools, PathBuf, PathBuf) {
    let p = f.dir.path().join("systemd-run");
    let calls = f.dir.path().join("systemd-run.calls");
    let exit = f.dir.path().join("systemd-run.exit");
    script(
        &p,
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {c}\necho -- >> {c}\n\
             echo out-line; echo err-line >&2\nexit $(cat {e} 2>/dev/null || echo 0)\n",
            c = calls.display(),
            e = exit.display()
        ),
    );
    (
        Tools {
            systemd_run: p,
            ..tools
        },
        calls,
        exit,
    )
}

/// The whole activation against a fake container: the profile switches and
/// the applied record follows on success; on failure the status propagates,
/// the profile is put back and the record is left alone. The command is
/// handed to `systemd-run --machine=web` and never executed by us, not even
/// when it exists inside.
#[test]
fn end_to_end_with_a_fake_container() {
    let Some(mut fc) = FakeContainer::start() else {
        return;
    };
    let f = Fixture::new();
    crate::bootstrap::bootstrap(&f.root, "web", &Tools::default()).unwrap();
    let state = machine_state_file(&f.root, "web");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "").unwrap();
    let (tools, calls, exit) =
        fake_systemd_run(&f, fake_machinectl(&f, &format!("echo {}", fc.leader)));
    let inside = |p: &str| fc.dir.path().join(p.trim_start_matches('/'));
    // The new system exists only inside the container.
    script(
        &inside(&format!("{SYSTEM2}/bin/switch-to-configuration")),
        "#!/bin/busybox sh\n/bin/busybox echo ran > /out/switched\n",
    );
    f.write_entry(&Entry::new("web", SYSTEM2));
    let r = activate_checked(&f.root, "web", &tools, false).unwrap();
    assert_eq!((r.generation, r.new_generation), (2, true));
    let called = std::fs::read_to_string(&calls).unwrap();
    let args: Vec<&str> = called.lines().collect();
    assert_eq!(args[0], "--machine=web", "{called}");
    for a in ["--pipe", "--wait", "--service-type=exec", "--collect"] {
        assert!(args.contains(&a), "{a} missing: {called}");
    }
    let cmd = format!("{SYSTEM2}/bin/switch-to-configuration");
    let dashes = args.iter().position(|a| *a == "--").unwrap();
    assert_eq!(&args[dashes + 1..dashes + 3], &[cmd.as_str(), "test"]);
    assert!(
        !fc.dir.path().join("out/switched").exists(),
        "the command inside the container was executed by the helper itself"
    );
    let a = applied::read(&f.root, "web").unwrap().unwrap();
    assert_eq!((a.action.as_str(), a.generation), ("reload", Some(2)));
    assert_eq!(
        profile::current(&f.root, "web").unwrap().unwrap().system,
        Path::new(SYSTEM2)
    );
    // With the real unit check the fake container is refused.
    let (_, msg) = failure_text(activate(&f.root, "web", &tools));
    assert!(
        msg.contains("is not in systemd-nspawn@web.service"),
        "{msg}"
    );

    // A failing reload script: its status, profile restored, record kept.
    let mut e = Entry::new("web", SYSTEM3);
    e.activation.reload_script = Some("/bin/fail".into());
    f.write_entry(&e);
    script(&inside("/bin/fail"), "#!/bin/busybox sh\nexit 3\n");
    std::fs::write(&exit, "3").unwrap();
    let before = crate::bootstrap::tests::snapshot(&f.root.join(paths::profile_dir("web")));
    let applied_before = applied::read(&f.root, "web").unwrap();
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert_eq!(code, 3);
    assert!(
        msg.contains("/bin/fail failed inside container web (exit status 3)"),
        "{msg}"
    );
    assert!(msg.contains("the profile is back at generation 2"), "{msg}");
    assert_eq!(
        profile::generations(&f.root, "web").unwrap().len(),
        2,
        "generation 3 removed"
    );
    let after = crate::bootstrap::tests::snapshot(&f.root.join(paths::profile_dir("web")));
    let links = |s: &BTreeMap<PathBuf, String>| -> Vec<PathBuf> {
        s.keys()
            .filter(|p| !p.ends_with("system.lock"))
            .cloned()
            .collect()
    };
    assert_eq!(links(&after), links(&before));
    assert_eq!(applied::read(&f.root, "web").unwrap(), applied_before);
    // Killed by a signal inside (systemd-run says 255).
    std::fs::write(&exit, "255").unwrap();
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert_eq!(code, 255);
    assert!(msg.contains("killed by a signal"), "{msg}");
    std::fs::remove_file(&exit).unwrap();

    // No systemd-run at all: nothing ran, the profile is back.
    let broken = Tools {
        systemd_run: "/nonexistent/systemd-run".into(),
        ..tools.clone()
    };
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &broken, false));
    assert_eq!(code, 1);
    assert!(
        msg.contains("running /nonexistent/systemd-run")
            && msg.contains("nothing ran inside container web")
            && msg.contains("the profile is back at generation 2"),
        "{msg}"
    );

    // A missing switch-to-configuration inside: refused before any change,
    // even though the host has one.
    f.write_entry(&Entry::new("web", SYSTEM3));
    f.fake_system(SYSTEM3);
    script(
        &f.root
            .join(format!("{SYSTEM3}/bin/switch-to-configuration")),
        "#!/bin/sh\n",
    );
    let calls_before = std::fs::read_to_string(&calls).unwrap();
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert_eq!(code, 1);
    assert!(msg.contains("does not exist inside the container"), "{msg}");
    assert_eq!(profile::generations(&f.root, "web").unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        calls_before,
        "systemd-run not called"
    );

    // The container stops: the leader is gone.
    fc.stop();
    f.write_entry(&Entry::new("web", SYSTEM2));
    let (_, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert!(msg.contains("exited"), "{msg}");
}

use std::collections::BTreeMap;
