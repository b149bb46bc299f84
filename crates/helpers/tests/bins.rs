//! The binaries as processes: arguments, exit status, messages on stderr.

use std::path::Path;
use std::process::{Command, Output};

const SYSTEM: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";

fn run(exe: &str, root: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .env("NIXOS_NSPAWN_ROOT", root)
        .env("NIXOS_NSPAWN_LOG", "stderr")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let reg = d.path().join("etc/nixos-nspawn/containers");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("web.json"),
        format!(r#"{{"version": 1, "name": "web", "system": "{SYSTEM}"}}"#),
    )
    .unwrap();
    let sys = d.path().join(SYSTEM.trim_start_matches('/'));
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("init"), "").unwrap();
    std::fs::create_dir_all(d.path().join("run/systemd/machines")).unwrap();
    d
}

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_nixos-nspawn-bootstrap");
const ACTIVATE: &str = env!("CARGO_BIN_EXE_nixos-nspawn-activate");

#[test]
fn usage() {
    let d = root();
    for exe in [BOOTSTRAP, ACTIVATE] {
        for args in [&[][..], &["a", "b"], &["--frobnicate"]] {
            let o = run(exe, d.path(), args);
            assert_eq!(o.status.code(), Some(2), "{exe} {args:?}");
            assert!(stderr(&o).starts_with("usage: "), "{}", stderr(&o));
        }
        // Asking for help is not a mistake: stdout, exit 0.
        for help in ["--help", "-h"] {
            let o = run(exe, d.path(), &[help]);
            assert_eq!(o.status.code(), Some(0), "{exe} {help}");
            assert!(String::from_utf8_lossy(&o.stdout).starts_with("usage: "));
            assert!(o.stderr.is_empty());
        }
        let o = run(exe, d.path(), &["--version"]);
        assert_eq!(o.status.code(), Some(0));
        let name = Path::new(exe).file_name().unwrap().to_str().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn bootstrap_then_again() {
    let d = root();
    let o = run(BOOTSTRAP, d.path(), &["web"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("nixos-nspawn-bootstrap: created "), "{err}");
    assert!(
        err.ends_with("container web ready to start: profile generation 1 (new)\n"),
        "{err}"
    );
    let o = run(BOOTSTRAP, d.path(), &["web"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stderr(&o),
        "nixos-nspawn-bootstrap: container web ready to start: profile generation 1, nothing changed\n"
    );
}

#[test]
fn errors_are_reported_with_exit_1() {
    let d = root();
    let o = run(BOOTSTRAP, d.path(), &["db"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(
            "nixos-nspawn-bootstrap: error: /etc/nixos-nspawn/containers/db.json: cannot be read"
        ),
        "{}",
        stderr(&o)
    );
    let o = run(ACTIVATE, d.path(), &["web"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "nixos-nspawn-activate: error: container web is not running (systemd-machined has no \
         machine web); start it with `systemctl start systemd-nspawn@web.service`\n"
    );
    // An error chain on one line: etc/ planted as a link inside the rootfs
    // (to a directory of the temporary root, never the real host's).
    let rootfs = d.path().join("var/lib/machines/web");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::os::unix::fs::symlink(d.path().join("etc"), rootfs.join("etc")).unwrap();
    let o = run(BOOTSTRAP, d.path(), &["web"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(
            "nixos-nspawn-bootstrap: error: preparing the root file system of container web: "
        ) && stderr(&o).contains("etc is a symbolic link"),
        "{}",
        stderr(&o)
    );
}

/// The helpers find their programs as the CLI does: `$NIXOS_NSPAWN_MACHINECTL`
/// names the machinectl asked for the leader (it used to be ignored here).
#[test]
fn the_programs_variables_are_honoured() {
    let d = root();
    std::fs::write(d.path().join("run/systemd/machines/web"), "").unwrap();
    let fake = d.path().join("fake-machinectl");
    nixos_nspawn_core::testing::write_script(
        &fake,
        "#!/bin/sh\necho \"$*\" > \"$0.args\"\necho \"No machine '$2' known\" >&2\nexit 1\n",
    );
    let o = Command::new(ACTIVATE)
        .arg("web")
        .env("NIXOS_NSPAWN_ROOT", d.path())
        .env("NIXOS_NSPAWN_LOG", "stderr")
        .env("NIXOS_NSPAWN_MACHINECTL", &fake)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "nixos-nspawn-activate: error: container web is not running (systemd-machined: No machine 'web' known)\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("fake-machinectl.args")).unwrap(),
        "show web --property=Leader --value\n"
    );
}
