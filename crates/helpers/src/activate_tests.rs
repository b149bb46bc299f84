//! Activation tests: parsing and error paths against a throwaway root, and,
//! where this runs as root with `unshare(1)`, the real namespace entry into a
//! fake container (a busybox tree in fresh PID, mount, UTS, IPC, network and
//! cgroup namespaces, optionally a user namespace).

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
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
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
    assert_eq!(st.cap_bounding, 0x1fffeffffff);
    assert!(!st.no_new_privs);
    assert!(parse_status("NSpid:\t1\n").is_err());
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
    let drop = caps_to_drop(0x1fffeffffff);
    assert_eq!(drop, vec![Capability::SystemResource]);
    assert_eq!(caps_to_drop(0).len(), 41);
    assert!(caps_to_drop(u64::MAX).is_empty());
    for (i, c) in ALL_CAPS.iter().enumerate() {
        assert_eq!(*c as usize, i, "capability table in kernel order");
    }
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

/// A throwaway container: busybox in new namespaces, chrooted to a temp dir,
/// with a reduced capability bounding set; PID 1 in its PID namespace.
struct FakeContainer {
    unshare: std::process::Child,
    leader: u32,
    dir: tempfile::TempDir,
}

impl FakeContainer {
    fn start(user_ns: bool) -> Option<FakeContainer> {
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
        let mut cmd = Command::new("setpriv");
        cmd.args(["--bounding-set=-sys_module,-sys_time", "unshare"]);
        cmd.args([
            "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--cgroup",
        ]);
        if user_ns {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.arg("--mount-proc")
            .arg(format!("--root={}", r.display()))
            .args(["/bin/busybox", "sh", "-c"])
            // A user namespace resets the bounding set (setpriv's drop only
            // shows without one); there the leader gets no_new_privs instead.
            .arg(format!(
                "/bin/busybox hostname fakebox && /bin/busybox touch /out/ready && \
                 exec /bin/busybox {} sleep 600",
                if user_ns {
                    "setpriv --nnp /bin/busybox"
                } else {
                    ""
                }
            ));
        let unshare = match cmd.stdin(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: setpriv/unshare: {e}");
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

    fn out(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("out").join(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
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

const PROBE: &str = "/bin/busybox echo $$ > /out/pid; /bin/busybox hostname > /out/hostname; \
     /bin/busybox grep CapBnd /proc/self/status > /out/capbnd; \
     /bin/busybox grep NoNewPrivs /proc/self/status > /out/nnp; /bin/busybox id -u > /out/uid; \
     /bin/busybox readlink /proc/self/ns/net > /out/net; echo \"$PATH\" > /out/path";

fn own_ns(ns: &str) -> String {
    std::fs::read_link(format!("/proc/thread-self/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

fn probe(user_ns: bool, one_by_one: bool) {
    let Some(fc) = FakeContainer::start(user_ns) else {
        return;
    };
    let (pid_before, children_before) = (own_ns("pid"), own_ns("pid_for_children"));
    let leader = Leader::open(fc.leader).unwrap();
    let mut target = Target::new(&leader).unwrap();
    target.one_by_one = one_by_one;
    assert_eq!(target.enter_user, user_ns);
    target.check_executable("/bin/busybox").unwrap();
    // Checked inside the container's root, not on the host.
    let e = target.check_executable("/usr/bin/setpriv").unwrap_err();
    assert!(
        format!("{e:#}").contains("does not exist inside the container"),
        "{e:#}"
    );
    let env = vec![("PATH".to_owned(), "/x/sw/bin".to_owned())];
    let argv: Vec<String> = ["/bin/busybox", "sh", "-c", PROBE]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let status = target.run(&argv, &env).unwrap();
    assert!(status.success(), "{status}");
    let pid: u32 = fc.out("pid").parse().unwrap();
    assert!(pid > 1 && pid < 10, "its PID namespace: {pid}");
    assert_eq!(fc.out("hostname"), "fakebox", "its UTS namespace");
    assert_eq!(fc.out("uid"), "0", "root inside");
    assert_eq!(fc.out("path"), "/x/sw/bin", "a clean environment");
    assert_ne!(fc.out("net"), own_ns("net"), "its network namespace");
    let bnd =
        u64::from_str_radix(fc.out("capbnd").trim_start_matches("CapBnd:").trim(), 16).unwrap();
    let leader_status = leader.status().unwrap();
    assert_eq!(bnd, leader_status.cap_bounding, "the leader's bounding set");
    let cap = |c: Capability| 1u64 << (c as u32);
    if !user_ns {
        assert_eq!(bnd & cap(Capability::SystemModule), 0, "{bnd:x}");
        assert_eq!(bnd & cap(Capability::SystemTime), 0, "{bnd:x}");
    }
    assert_ne!(bnd & cap(Capability::SystemAdmin), 0, "{bnd:x}");
    assert_eq!(leader_status.no_new_privs, user_ns);
    assert_eq!(
        fc.out("nnp").ends_with('1'),
        user_ns,
        "the leader's no_new_privs: {}",
        fc.out("nnp")
    );
    // This process is back in its own namespaces.
    assert_eq!(own_ns("pid"), pid_before);
    assert_eq!(own_ns("pid_for_children"), children_before);
    // Exit status is propagated.
    let argv: Vec<String> = ["/bin/busybox", "sh", "-c", "exit 7"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(target.run(&argv, &env).unwrap().code(), Some(7));
}

#[test]
fn runs_inside_a_fake_container() {
    probe(false, false);
}

#[test]
fn runs_inside_a_fake_container_entering_namespaces_one_by_one() {
    probe(false, true);
    probe(true, true);
}

#[test]
fn runs_inside_a_user_namespaced_fake_container() {
    probe(true, false);
}

/// The whole activation against a fake container: the profile switches and
/// the applied record follows on success; on failure the status propagates,
/// the profile is put back and the record is left alone.
#[test]
fn end_to_end_with_a_fake_container() {
    let Some(mut fc) = FakeContainer::start(false) else {
        return;
    };
    let f = Fixture::new();
    crate::bootstrap::bootstrap(&f.root, "web", &Tools::default()).unwrap();
    let state = machine_state_file(&f.root, "web");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "").unwrap();
    let tools = fake_machinectl(&f, &format!("echo {}", fc.leader));
    let inside = |p: &str| fc.dir.path().join(p.trim_start_matches('/'));
    // The new system exists only inside the container.
    script(
        &inside(&format!("{SYSTEM2}/bin/switch-to-configuration")),
        "#!/bin/busybox sh\n/bin/busybox echo \"$1 $$\" > /out/switched\n",
    );
    f.write_entry(&Entry::new("web", SYSTEM2));
    let r = activate_checked(&f.root, "web", &tools, false).unwrap();
    assert_eq!((r.generation, r.new_generation), (2, true));
    assert!(
        fc.out("switched").starts_with("test "),
        "{}",
        fc.out("switched")
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
    let before = crate::bootstrap::tests::snapshot(&f.root.join(paths::profile_dir("web")));
    let applied_before = applied::read(&f.root, "web").unwrap();
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert_eq!(code, 3);
    assert!(
        msg.contains("/bin/fail failed inside container web"),
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

    // A missing switch-to-configuration inside: refused before any change,
    // even though the host has one.
    f.write_entry(&Entry::new("web", SYSTEM3));
    f.fake_system(SYSTEM3);
    script(
        &f.root
            .join(format!("{SYSTEM3}/bin/switch-to-configuration")),
        "#!/bin/sh\n",
    );
    let (code, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert_eq!(code, 1);
    assert!(msg.contains("does not exist inside the container"), "{msg}");
    assert_eq!(profile::generations(&f.root, "web").unwrap().len(), 2);

    // The container stops: the leader is gone.
    fc.stop();
    f.write_entry(&Entry::new("web", SYSTEM2));
    let (_, msg) = failure_text(activate_checked(&f.root, "web", &tools, false));
    assert!(msg.contains("exited"), "{msg}");
}

use std::collections::BTreeMap;
