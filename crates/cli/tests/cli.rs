//! The `nixos-nspawn` binary as a process: exit codes, a whole imperative
//! life cycle against a fake `systemctl` (a script keeping unit states in
//! files, selected with `NIXOS_NSPAWN_SYSTEMCTL`), concurrent CLIs, and
//! builds with the real Nix (`--system` store paths, `--config` through
//! `NIXOS_NSPAWN_NIX_DIR`, `--flake`), skipped where Nix is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nixos_nspawn_core::testing::stdout_of_success;
use serde_json::Value;

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
# A fake systemctl: unit states in $FAKE_DIR/state/UNIT ("active running"),
# every call appended to $FAKE_DIR/log, $FAKE_DIR/fail-VERB-UNIT makes VERB fail.
[ "$1" = --no-ask-password ] && shift
echo "$*" >> "$FAKE_DIR/log"
mkdir -p "$FAKE_DIR/state"
verb=$1
unit=$2
case "$verb" in
  daemon-reload) [ -e "$FAKE_DIR/fail-daemon-reload" ] && exit 1; exit 0 ;;
  show)
    # One block per unit (a pattern: every unit with a state);
    # $FAKE_DIR/no-generator: no drop-in from the generator.
    units=
    for u; do
      case "$u" in
        *'*'*) for f in "$FAKE_DIR"/state/$u; do [ -e "$f" ] && units="$units ${f##*/}"; done ;;
        *.service) units="$units $u" ;;
      esac
    done
    first=1
    for u in $units; do
      [ $first = 1 ] || echo
      first=0
      if [ -e "$FAKE_DIR/state/$u" ]; then read -r a s < "$FAKE_DIR/state/$u"; else a=inactive; s=dead; fi
      printf 'Id=%s\nActiveState=%s\nSubState=%s\nMainPID=0\nResult=success\n' "$u" "$a" "$s"
      [ -e "$FAKE_DIR/no-generator" ] || printf 'DropInPaths=/run/systemd/generator/%s.d/50-nixos-nspawn.conf\n' "$u"
    done
    exit 0 ;;
  start|stop|reload|restart)
    [ -e "$FAKE_DIR/fail-$verb-$unit" ] && { echo "Job for $unit failed (fake)." >&2; exit 1; }
    case "$verb" in
      stop) echo "inactive dead" > "$FAKE_DIR/state/$unit" ;;
      *) echo "active running" > "$FAKE_DIR/state/$unit" ;;
    esac
    exit 0 ;;
esac
echo "fake systemctl: unknown $*" >&2
exit 1
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let fake = f.dir.path().join("fake");
        std::fs::create_dir_all(&fake).unwrap();
        let script = fake.join("systemctl");
        nixos_nspawn_core::testing::write_script(&script, FAKE_SYSTEMCTL);
        f
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn fake(&self) -> PathBuf {
        self.dir.path().join("fake")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nixos-nspawn"));
        c.env("NIXOS_NSPAWN_ROOT", self.root())
            .env("NIXOS_NSPAWN_SYSTEMCTL", self.fake().join("systemctl"))
            .env("NIXOS_NSPAWN_MACHINECTL", "")
            .env("NIXOS_NSPAWN_BUSCTL", "")
            .env("NIXOS_NSPAWN_LOG", "stderr")
            .env("FAKE_DIR", self.fake());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `create NAME --system SYSTEM --no-start`, which must succeed.
    fn create_stopped(&self, name: &str, system: &Path) -> String {
        self.ok(&[
            "create",
            name,
            "--system",
            system.to_str().unwrap(),
            "--no-start",
        ])
    }

    fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(&format!("{args:?}"), self.run(args))
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.fake().join("log")).unwrap_or_default();
        std::fs::remove_file(self.fake().join("log")).ok();
        text.lines().map(str::to_owned).collect()
    }

    /// A fake system (a directory with init and switch-to-configuration).
    fn system(&self, tag: &str) -> PathBuf {
        let s = self.dir.path().join(format!("systems/{tag}"));
        std::fs::create_dir_all(s.join("bin")).unwrap();
        for f in ["init", "bin/switch-to-configuration"] {
            nixos_nspawn_core::testing::write_script(s.join(f), "#!/bin/sh\n");
        }
        s
    }
}

/// The `systemctl show` call the CLI makes about one container.
fn show(name: &str) -> String {
    format!(
        "show --property={} systemd-nspawn@{name}.service",
        nixos_nspawn_cli::systemd::SHOW_PROPERTIES
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_codes() {
    let f = Fixture::new();
    assert_eq!(code(&f.run(&[])), 2);
    assert_eq!(code(&f.run(&["frobnicate"])), 2);
    assert_eq!(code(&f.run(&["list", "--bogus"])), 2);
    assert_eq!(code(&f.run(&["list", "--type", "other"])), 2);
    assert_eq!(code(&f.run(&["create", "web"])), 2, "no source");
    assert_eq!(code(&f.run(&["create", "bad_name", "--system", "/x"])), 2);
    let help = f.run(&["--help"]);
    assert_eq!(code(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("4 refused"));
    assert_eq!(code(&f.run(&["create", "--help"])), 0);
    let o = f.run(&["status", "web"]);
    assert_eq!(code(&o), 3);
    assert_eq!(stderr(&o), "error: there is no container web\n");
    assert_eq!(code(&f.run(&["remove", "web"])), 3);
    assert_eq!(code(&f.run(&["update", "web", "--system", "/x"])), 3);
    assert_eq!(code(&f.run(&["list-generations", "web"])), 3);
    // A missing --system path is a bad argument (2), like a missing --config.
    let o = f.run(&["create", "web", "--system", "/does/not/exist"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("error: --system /does/not/exist: No such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn life_cycle() {
    let f = Fixture::new();
    let (a, b, c) = (f.system("a"), f.system("b"), f.system("c"));
    let a_s = a.to_str().unwrap();
    let out = f.ok(&[
        "create", "web", "--system", a_s, "--zone", "backend", "--port", "8080:80",
    ]);
    assert!(
        out.starts_with("Created container web: generation 1"),
        "{out}"
    );
    assert_eq!(
        f.log(),
        vec![
            "daemon-reload".to_owned(),
            show("web"),
            "start systemd-nspawn@web.service".to_owned()
        ]
    );
    assert_eq!(code(&f.run(&["create", "web", "--system", a_s])), 4);

    let list = f.json(&["list", "--json"]);
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["generation"], 1);
    assert_eq!(list[0]["network"], "zone");
    assert_eq!(f.log().len(), 1, "one systemctl call for the whole list");

    // What the bootstrap helper records when the container starts.
    let reg: Value = serde_json::from_slice(
        &std::fs::read(f.root().join("etc/nixos-nspawn/containers/web.json")).unwrap(),
    )
    .unwrap();
    let applied = f.root().join("run/nixos-nspawn/applied/web.json");
    std::fs::create_dir_all(applied.parent().unwrap()).unwrap();
    std::fs::write(
        &applied,
        serde_json::json!({"entry": reg, "generation": 1, "action": "start", "time": 0})
            .to_string(),
    )
    .unwrap();
    let v = f.json(&["update", "web", "--system", b.to_str().unwrap(), "--json"]);
    assert_eq!(v["generation"], 2);
    assert_eq!(v["activation"]["action"], "reload");
    assert_eq!(v["activation"]["reason"], "only system changed");
    assert_eq!(
        f.log(),
        vec![
            "daemon-reload".to_owned(),
            show("web"),
            "reload systemd-nspawn@web.service".to_owned()
        ]
    );
    // Without an applied record (started outside nixos-nspawn) the plan restarts.
    std::fs::remove_file(&applied).unwrap();
    let v = f.json(&["update", "web", "--system", a_s, "--json"]);
    assert_eq!(v["activation"]["action"], "restart");
    std::fs::write(
        &applied,
        serde_json::json!({"entry": reg, "generation": 1, "action": "start", "time": 0})
            .to_string(),
    )
    .unwrap();
    let o = f.run(&[
        "update",
        "web",
        "--system",
        c.to_str().unwrap(),
        "--strategy",
        "reload",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The decision is said once: on stdout, not again on stderr.
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches("reload — only system changed").count(),
        1,
        "{out}"
    );
    assert!(
        !stderr(&o).contains("only system changed"),
        "{}",
        stderr(&o)
    );
    f.log();
    let gens = f.json(&["list-generations", "web", "--json"]);
    assert_eq!(gens.as_array().unwrap().len(), 4);
    assert_eq!(gens[3]["current"], true);
    f.ok(&["rollback", "web", "--to", "1"]);
    assert!(f
        .log()
        .contains(&"reload systemd-nspawn@web.service".to_string()));
    let st = f.json(&["status", "web", "--json"]);
    assert_eq!(st["desired"]["generation"], 1);
    assert_eq!(st["desired"]["system"], a_s);
    assert_eq!(st["state"], "running");

    // A failing reload is exit 1, with the way back in the message.
    std::fs::write(f.fake().join("fail-reload-systemd-nspawn@web.service"), "").unwrap();
    let o = f.run(&["rollback", "web", "--to", "4"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("caused by"), "{}", stderr(&o));
    std::fs::remove_file(f.fake().join("fail-reload-systemd-nspawn@web.service")).unwrap();

    // apply --dry-run: the plan only.
    f.log();
    let plan = f.json(&["apply", "--dry-run", "--json"]);
    assert_eq!(plan[0]["name"], "web");
    assert_eq!(
        f.log(),
        vec!["show --property=Id,ActiveState,SubState systemd-nspawn@*.service"]
    );

    let state = f.root().join("var/lib/machines/web");
    std::fs::create_dir_all(state.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", state.join("etc/passwd")).unwrap();
    let out = f.ok(&["remove", "web", "--delete-state"]);
    assert!(out.contains("deleted /var/lib/machines/web"), "{out}");
    assert!(!state.exists());
    assert!(Path::new("/etc/passwd").exists());
    assert!(!f
        .root()
        .join("etc/nixos-nspawn/containers/web.json")
        .exists());
    assert!(!f
        .root()
        .join("nix/var/nix/profiles/per-nspawn/web")
        .exists());
    assert_eq!(f.json(&["list", "--json"]), serde_json::json!([]));
}

#[test]
fn declarative_entries_are_listed_but_never_modified() {
    let f = Fixture::new();
    let a = f.system("a");
    let store = f.dir.path().join("store-entry.json");
    std::fs::write(
        &store,
        format!(
            r#"{{"version": 1, "name": "db", "declarative": true, "system": "{}"}}"#,
            a.display()
        ),
    )
    .unwrap();
    let reg = f.root().join("etc/nixos-nspawn/containers");
    std::fs::create_dir_all(&reg).unwrap();
    std::os::unix::fs::symlink(&store, reg.join("db.json")).unwrap();
    let list = f.json(&["list", "--type", "declarative", "--json"]);
    assert_eq!(list[0]["kind"], "declarative");
    for args in [
        vec!["update", "db", "--system", a.to_str().unwrap()],
        vec!["rollback", "db"],
        vec!["remove", "db"],
    ] {
        let o = f.run(&args);
        assert_eq!(code(&o), 4, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("declarative container"),
            "{}",
            stderr(&o)
        );
    }
    assert!(reg
        .join("db.json")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn failed_start_leaves_nothing_behind() {
    let f = Fixture::new();
    let a = f.system("a");
    std::fs::write(f.fake().join("fail-start-systemd-nspawn@web.service"), "").unwrap();
    let o = f.run(&["create", "web", "--system", a.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("everything was rolled back"),
        "{}",
        stderr(&o)
    );
    let leftovers: Vec<_> = walk(&f.root());
    assert!(
        leftovers.iter().all(|p| p.is_dir()),
        "only empty directories may remain: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
        }
    }
    out
}

/// 8 CLIs update one container and 8 create distinct ones, all at once;
/// then 8 race to create one name. No update is lost: every update is a
/// generation, the registry names the current one, every entry is valid.
#[test]
fn concurrent_clis_never_lose_an_update() {
    let f = Fixture::new();
    let base = f.system("base");
    f.create_stopped("shared", &base);
    let systems: Vec<PathBuf> = (0..8).map(|i| f.system(&format!("s{i}"))).collect();
    let mut children = Vec::new();
    for (i, s) in systems.iter().enumerate() {
        children.push(
            f.cmd()
                .args(["update", "shared", "--system", s.to_str().unwrap()])
                .args(if i % 2 == 0 {
                    vec!["--strategy", "restart"]
                } else {
                    vec![]
                })
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        children.push(
            f.cmd()
                .args([
                    "create",
                    &format!("c{i}"),
                    "--system",
                    s.to_str().unwrap(),
                    "--no-start",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    // Their messages (the systems are not in the store: a warning each) are
    // shown only when one fails.
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let gens = f.json(&["list-generations", "shared", "--json"]);
    let gens = gens.as_array().unwrap();
    assert_eq!(gens.len(), 9, "one generation per update: {gens:?}");
    let mut seen: Vec<&str> = gens.iter().map(|g| g["system"].as_str().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 9);
    let current = gens.iter().find(|g| g["current"] == true).unwrap();
    let st = f.json(&["status", "shared", "--json"]);
    assert_eq!(
        st["desired"]["system"], current["system"],
        "registry and profile agree"
    );
    let list = f.json(&["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 9);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["kind"] == "imperative"));

    // Eight creates of one name: exactly one wins, the rest are refused (4).
    let children: Vec<_> = (0..8)
        .map(|i| {
            f.cmd()
                .args([
                    "create",
                    "race",
                    "--system",
                    systems[i].to_str().unwrap(),
                    "--no-start",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 4), "{codes:?}");
    let gens = f.json(&["list-generations", "race", "--json"]);
    assert_eq!(gens.as_array().unwrap().len(), 1);
}

fn have_nix() -> bool {
    Command::new("nix-store")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Path::new("/nix/store").is_dir()
}

/// Whether the real-Nix tests can run (they build with /bin/busybox); says
/// so when they cannot.
fn have_nix_and_busybox() -> bool {
    let ok = have_nix() && Path::new("/bin/busybox").exists();
    if !ok {
        eprintln!("skipped: needs Nix and /bin/busybox");
    }
    ok
}

/// A derivation (Nix text) of a stand-in NixOS system named NAME for
/// PLATFORM, built with /bin/busybox.
fn busybox_system(name: &str, platform: &str) -> String {
    format!(
        r#"derivation {{
      name = "{name}";
      system = "{platform}";
      builder = "/bin/busybox";
      args = [ "sh" "-c" "/bin/busybox mkdir -p $out/bin && printf '#!/bin/sh\n' > $out/init && /bin/busybox cp $out/init $out/bin/switch-to-configuration && /bin/busybox chmod +x $out/init $out/bin/switch-to-configuration" ];
    }}"#
    )
}

/// Whether a flake build failed only because this Nix cannot build flakes
/// (then the test is skipped).
fn flakes_unsupported(o: &Output) -> bool {
    let no = !o.status.success() && stderr(o).contains("experimental");
    if no {
        eprintln!("skipped: this Nix cannot build flakes: {}", stderr(o));
    }
    no
}

/// A directory added to the store: a real store path with init and
/// bin/switch-to-configuration.
fn store_system(f: &Fixture, tag: &str) -> PathBuf {
    let dir = f.system(&format!("store-{tag}"));
    std::fs::write(dir.join("tag"), tag).unwrap();
    let out = Command::new("nix-store")
        .arg("--add")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn store_paths_with_real_nix() {
    if !have_nix() {
        eprintln!("skipped: no Nix");
        return;
    }
    let f = Fixture::new();
    let a = store_system(&f, &format!("a-{}", std::process::id()));
    let b = store_system(&f, &format!("b-{}", std::process::id()));
    f.create_stopped("web", &a);
    f.ok(&["update", "web", "--system", b.to_str().unwrap()]);
    let gens = f.json(&["list-generations", "web", "--json"]);
    assert_eq!(gens[0]["system"], a.to_str().unwrap());
    assert_eq!(gens[1]["system"], b.to_str().unwrap());
    // nix-env reads the same profile.
    let profile = f.root().join("nix/var/nix/profiles/per-nspawn/web/system");
    let out = Command::new("nix-env")
        .arg("-p")
        .arg(&profile)
        .arg("--list-generations")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("   1   ") && text.contains("   2   ") && text.contains("(current)"),
        "{text}"
    );
    // A path that is not a valid store path is refused.
    let o = f.run(&[
        "update",
        "web",
        "--system",
        "/nix/store/00000000000000000000000000000000-nope",
    ]);
    // It does not exist: a bad argument, as a missing --config is.
    assert_eq!(code(&o), 2);
}

/// --config: nix-build of NIXDIR/eval-container.nix with the name and the
/// configuration's absolute path (a stand-in eval-container.nix here, as
/// nixpkgs is not available offline); its result becomes generation 1.
#[test]
fn config_builds_with_real_nix() {
    if !have_nix_and_busybox() {
        return;
    }
    let f = Fixture::new();
    let nixdir = stand_in_nixdir(&f);
    let conf = f.dir.path().join("configuration.nix");
    std::fs::write(
        &conf,
        format!("{{ itest.bind = \"/srv/{}\"; }}\n", std::process::id()),
    )
    .unwrap();
    // A nixpkgs that states no minimum (nixpkgs itself is not available offline).
    let nixpkgs = f.dir.path().join("nixpkgs");
    std::fs::create_dir_all(&nixpkgs).unwrap();
    let o = f
        .cmd()
        .env("NIXOS_NSPAWN_NIX_DIR", &nixdir)
        .env("NIXOS_NSPAWN_NIXPKGS", &nixpkgs)
        .env("ITEST_TAG", "conf")
        .args([
            "create",
            "web",
            "--config",
            conf.to_str().unwrap(),
            "--no-start",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let system = v["system"].as_str().unwrap();
    assert!(
        system.starts_with("/nix/store/") && system.ends_with("-nixos-system-web-conf"),
        "{system}"
    );
    let st = f.json(&["list", "--json"]);
    assert_eq!(st[0]["system"], system);
    let entry: Value = serde_json::from_slice(
        &std::fs::read(f.root().join("etc/nixos-nspawn/containers/web.json")).unwrap(),
    )
    .unwrap();
    let bind = format!("/srv/{}", std::process::id());
    assert_eq!(
        entry["bindMounts"][0],
        format!("{bind}:{bind}"),
        "the system's own settings"
    );
    assert_eq!(entry["declarative"], false);
}

/// --flake REF#ATTR builds REF#nixosContainers.<platform>.ATTR.
#[test]
fn flake_builds_with_real_nix() {
    if !have_nix_and_busybox() {
        return;
    }
    let f = Fixture::new();
    let flake = f.dir.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    let platform = format!("{}-linux", std::env::consts::ARCH);
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}: {{
    nixosContainers.{platform}.web = {drv};
  }};
}}
"#,
            drv = busybox_system(
                &format!("nixos-system-web-flake-{}", std::process::id()),
                &platform
            )
        ),
    )
    .unwrap();
    let reference = format!("path:{}#web", flake.display());
    let args = [
        "create",
        "web",
        "--flake",
        &reference,
        "--no-start",
        "--json",
    ];
    let mut o = f.run(&args);
    let version = nix_version("nix");
    if nixos_nspawn_cli::nixbuild::version_cmp(&version, "2.18").is_lt() {
        // Too old for a flake on current nixpkgs: one clear line, nothing built.
        assert_eq!(code(&o), 1);
        let top = stderr(&o).lines().next().unwrap_or("").to_owned();
        assert!(
            top.starts_with(&format!("error: Nix {version} is too old for --flake:"))
                && top.contains("--system"),
            "{}",
            stderr(&o)
        );
        assert!(!f
            .root()
            .join("etc/nixos-nspawn/containers/web.json")
            .exists());
        // This flake needs no nixpkgs: it builds when told to try anyway.
        o = f
            .cmd()
            .env("NIXOS_NSPAWN_SKIP_NIX_CHECK", "1")
            .args(args)
            .output()
            .unwrap();
    }
    if flakes_unsupported(&o) {
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["system"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-nixos-system-web-flake-{}", std::process::id())));
}

fn nix_version(tool: &str) -> String {
    let out = Command::new(tool).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned()
}

/// --config asks the nixpkgs it will build with for the Nix it needs (with
/// this very Nix) and refuses, in one line, before building anything.
#[test]
fn config_refuses_a_nix_too_old_for_its_nixpkgs() {
    if !have_nix() {
        eprintln!("skipped: needs Nix");
        return;
    }
    let f = Fixture::new();
    let conf = f.dir.path().join("configuration.nix");
    std::fs::write(&conf, "{ }\n").unwrap();
    let version = nix_version("nix-instantiate");
    let top = |nixpkgs: Option<&Path>, path: Option<&str>| {
        let mut c = f.cmd();
        c.env_remove("NIXOS_NSPAWN_NIXPKGS");
        if let Some(p) = nixpkgs {
            c.env("NIXOS_NSPAWN_NIXPKGS", p);
        }
        c.env("NIX_PATH", path.unwrap_or(""));
        let o = c
            .args([
                "create",
                "web",
                "--config",
                conf.to_str().unwrap(),
                "--no-start",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(!f
            .root()
            .join("etc/nixos-nspawn/containers/web.json")
            .exists());
        stderr(&o).lines().next().unwrap_or("").to_owned()
    };
    // An older nixpkgs: lib/minver.nix.
    let old = f.dir.path().join("old-nixpkgs");
    std::fs::create_dir_all(old.join("lib")).unwrap();
    std::fs::write(old.join("lib/minver.nix"), "\"99.1\"\n").unwrap();
    let t = top(Some(&old), None);
    assert_eq!(
        t,
        format!(
            "error: Nix {version} is too old for the nixpkgs {}: it needs Nix >= 99.1; with this Nix only --system works (build the system where a newer Nix runs and copy it here, see the README), or install a newer Nix, or point NIXOS_NSPAWN_NIXPKGS at an older nixpkgs",
            old.display()
        )
    );
    // Current nixpkgs: lib/minfeatures.nix, found through NIX_PATH.
    let new = f.dir.path().join("new-nixpkgs");
    std::fs::create_dir_all(new.join("lib")).unwrap();
    std::fs::write(
        new.join("lib/minfeatures.nix"),
        "{ missing = [ { description = \"`builtins.nixVersion` reports at least 99.2\"; } ]; }\n",
    )
    .unwrap();
    let t = top(None, Some(&format!("nixpkgs={}", new.display())));
    assert!(
        t.starts_with(&format!(
            "error: Nix {version} is too old for the nixpkgs <nixpkgs>: it needs `builtins.nixVersion` reports at least 99.2;"
        )),
        "{t}"
    );
    // No nixpkgs at all.
    let t = top(None, None);
    assert!(
        t.starts_with("error: --config needs a nixpkgs: set NIXOS_NSPAWN_NIXPKGS"),
        "{t}"
    );
}

#[test]
fn version_verbose_anywhere_and_root() {
    let f = Fixture::new();
    let o = f.run(&["--version"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("nixos-nspawn {}", env!("CARGO_PKG_VERSION"))
    );
    // -v after the command, as before it.
    for args in [
        &["-v", "list"][..],
        &["list", "-v"][..],
        &["list", "--verbose"][..],
    ] {
        let o = f.run(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("debug: running "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!stderr(&f.run(&["list"])).contains("debug:"));
    // Not root, on the real root: refused before anything is touched, with
    // the reason on the top line (not what it would have tripped over).
    use std::os::unix::process::CommandExt as _;
    let o = Command::new(env!("CARGO_BIN_EXE_nixos-nspawn"))
        .args([
            "create",
            "web",
            "--system",
            "/nix/store/00000000000000000000000000000000-x",
        ])
        .env_remove("NIXOS_NSPAWN_ROOT")
        .env("NIXOS_NSPAWN_SYSTEMCTL", "")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: nixos-nspawn create must be run as root"),
        "{}",
        stderr(&o)
    );
    // Reading is fine as anyone; so is a dry run.
    let o = Command::new(env!("CARGO_BIN_EXE_nixos-nspawn"))
        .args(["apply", "--dry-run", "--json"])
        .env_remove("NIXOS_NSPAWN_ROOT")
        .env("NIXOS_NSPAWN_SYSTEMCTL", "")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        !stderr(&o).contains("must be run as root"),
        "{}",
        stderr(&o)
    );
}

/// Issue 12: `remove --delete-state` removed the entry and profile before
/// its own checks, and a remove killed or refused halfway left state that a
/// retry called "no container" and a later `create` silently reused. Now:
/// checks first; `kill -9` at every step of the removal leaves something that
/// the same remove finishes, and `create` refuses until it has.
#[test]
fn remove_killed_at_each_step_is_finished_by_running_it_again() {
    use std::os::unix::process::ExitStatusExt as _;
    for step in [
        "checked",
        "tombstoned",
        "reloaded",
        "state-deleted",
        "profile-removed",
    ] {
        let f = Fixture::new();
        let s = f.system("a");
        f.ok(&[
            "create",
            "web",
            "--system",
            s.to_str().unwrap(),
            "--no-start",
        ]);
        let state = f.root().join("var/lib/machines/web");
        std::fs::create_dir_all(state.join("etc/deep")).unwrap();
        std::fs::write(state.join("etc/deep/file"), "x").unwrap();
        let entry = f.root().join("etc/nixos-nspawn/containers/web.json");
        let profile = f.root().join("nix/var/nix/profiles/per-nspawn/web");
        let o = f
            .cmd()
            .args(["remove", "web", "--delete-state"])
            .env("NIXOS_NSPAWN_TEST_CRASH_AT", format!("remove:{step}"))
            .output()
            .unwrap();
        assert_eq!(o.status.signal(), Some(9), "{step}: {:?}", o.status);
        let tomb = f
            .root()
            .join("etc/nixos-nspawn/containers/.web.json.removing");
        if step == "checked" {
            // Nothing removed yet.
            assert!(
                entry.exists() && profile.exists() && state.exists(),
                "{step}"
            );
        } else {
            assert!(tomb.exists(), "{step}: no tombstone");
            assert!(!entry.exists(), "{step}");
            // create must not reuse the half-removed container.
            let c = f.run(&[
                "create",
                "web",
                "--system",
                s.to_str().unwrap(),
                "--no-start",
            ]);
            assert_eq!(
                code(&c),
                4,
                "{step}: {}",
                String::from_utf8_lossy(&c.stderr)
            );
            let err = String::from_utf8_lossy(&c.stderr);
            assert!(
                err.contains("a remove --delete-state of web was interrupted"),
                "{step}: {err}"
            );
        }
        // list shows nothing invalid meanwhile.
        let list = f.run(&["list", "--json"]);
        assert!(list.status.success(), "{step}");
        // Running the same remove again finishes it.
        let out = f.ok(&["remove", "web", "--delete-state"]);
        assert!(out.contains("Removed container web"), "{step}: {out}");
        assert!(!entry.exists() && !tomb.exists(), "{step}");
        assert!(!profile.exists(), "{step}: profile left");
        assert!(!state.exists(), "{step}: state left");
        assert_eq!(code(&f.run(&["remove", "web"])), 3, "{step}");
        f.ok(&[
            "create",
            "web",
            "--system",
            s.to_str().unwrap(),
            "--no-start",
        ]);
    }
}

/// A refused deletion (a link where the state directory belongs) removes
/// nothing: the entry and profile stay, and the retry after fixing it works.
#[test]
fn a_refused_state_deletion_removes_nothing() {
    let f = Fixture::new();
    let s = f.system("a");
    f.create_stopped("web", &s);
    let machines = f.root().join("var/lib/machines");
    std::fs::create_dir_all(&machines).unwrap();
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, machines.join("web")).unwrap();
    let o = f.run(&["remove", "web", "--delete-state"]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing was removed"), "{err}");
    assert!(f
        .root()
        .join("etc/nixos-nspawn/containers/web.json")
        .exists());
    assert!(f
        .root()
        .join("nix/var/nix/profiles/per-nspawn/web")
        .exists());
    std::fs::remove_file(machines.join("web")).unwrap();
    f.ok(&["remove", "web", "--delete-state"]);
    assert!(!f
        .root()
        .join("etc/nixos-nspawn/containers/web.json")
        .exists());
}

/// Issue 12: with stderr (or stdout) a pipe nobody reads (`… 2>&1 | head`
/// after head exited) `eprintln!` panicked and the release build aborted
/// (SIGABRT, exit 134). Now the exit code is the command's own.
#[test]
fn closed_stderr_and_stdout_do_not_abort() {
    use std::os::fd::OwnedFd;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Stdio;
    let closed = || {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        Stdio::from(OwnedFd::from(a))
    };
    let f = Fixture::new();
    for (args, want) in [
        (vec!["remove", "nope"], 3),
        (vec!["--bogus"], 2),
        (vec!["create", "bad name", "--system", "/x"], 2),
        (vec!["list"], 0),
        (vec!["--help"], 0),
    ] {
        for (which, out, err) in [
            ("stderr", Stdio::null(), closed()),
            ("stdout", closed(), Stdio::null()),
            ("both", closed(), closed()),
        ] {
            let st = f
                .cmd()
                .args(&args)
                .stdout(out)
                .stderr(err)
                .status()
                .unwrap();
            assert_eq!(st.signal(), None, "{args:?} with {which} closed: {st:?}");
            assert_eq!(
                st.code(),
                Some(want),
                "{args:?} with {which} closed: {st:?}"
            );
        }
    }
}

/// Issue 12: the top line says what is wrong, and bad arguments exit 2.
#[test]
fn error_messages_say_what_is_wrong_first() {
    let f = Fixture::new();
    // The error's top line (warnings may come before it).
    let top = |o: &Output| {
        stderr(o)
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or("")
            .to_owned()
    };
    // A system without bin/switch-to-configuration: the problem first, the hint after it.
    let s = f.dir.path().join("systems/noswitch");
    std::fs::create_dir_all(&s).unwrap();
    nixos_nspawn_core::testing::write_script(s.join("init"), "#!/bin/sh\n");
    let o = f.run(&[
        "create",
        "web",
        "--system",
        s.to_str().unwrap(),
        "--no-start",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let t = top(&o);
    assert!(
        t.starts_with(&format!(
            "error: {} is not a NixOS system for a container: bin/switch-to-configuration:",
            s.display()
        )),
        "{t}"
    );
    assert!(
        t.ends_with("with activation strategy none it is not needed (--strategy none)"),
        "{t}"
    );
    // --system …/init: says it is a file and what was probably meant.
    let init = s.join("init");
    let o = f.run(&["create", "web", "--system", init.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        top(&o),
        format!(
            "error: --system {0}: {0} is a file, not a NixOS system (a directory with init and bin/switch-to-configuration) (did you mean --system {1}?)",
            init.display(),
            s.display()
        )
    );
    // An unknown protocol is named as such.
    let sys = f.system("a");
    let o = f.run(&[
        "create",
        "web",
        "--system",
        sys.to_str().unwrap(),
        "--port",
        "sctp:53",
    ]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        top(&o),
        "error: --port sctp:53: unknown protocol \"sctp\" (tcp or udp; systemd-nspawn forwards nothing else)"
    );
    // Missing sources: both exit 2.
    assert_eq!(
        code(&f.run(&["create", "web", "--system", "/no/such/system"])),
        2
    );
    assert_eq!(
        code(&f.run(&["create", "web", "--config", "/no/such/config.nix"])),
        2
    );
    assert!(!f
        .root()
        .join("etc/nixos-nspawn/containers/web.json")
        .exists());
}

/// The classic commands' exit codes, against the fake systemctl.
#[test]
fn classic_commands_exit_codes() {
    let f = Fixture::new();
    for cmd in [
        "start",
        "stop",
        "restart",
        "terminate",
        "login",
        "root-login",
        "show-ip",
        "show-host-key",
    ] {
        assert_eq!(
            code(&f.run(&[cmd, "nope"])),
            3,
            "{cmd} of an unknown container"
        );
        assert_eq!(code(&f.run(&[cmd])), 2, "{cmd} without a name");
    }
    assert_eq!(code(&f.run(&["run", "nope", "--", "true"])), 3);
    let a = f.system("a");
    f.create_stopped("web", &a);
    f.log();
    let o = f.run(&["run", "web"]);
    assert_eq!(code(&o), 2, "run without a command");
    assert!(stderr(&o).contains("run needs a command"), "{}", stderr(&o));
    assert_eq!(f.ok(&["start", "web"]), "", "quiet, as classic");
    assert_eq!(f.ok(&["restart", "web"]), "");
    assert_eq!(f.ok(&["stop", "web"]), "");
    assert_eq!(
        f.log(),
        vec![
            "show --property=ActiveState,SubState,MainPID,Result,ActiveEnterTimestamp,ActiveExitTimestamp,InactiveEnterTimestamp,InactiveExitTimestamp,DropInPaths systemd-nspawn@web.service",
            "start systemd-nspawn@web.service",
            "show --property=ActiveState,SubState,MainPID,Result,ActiveEnterTimestamp,ActiveExitTimestamp,InactiveEnterTimestamp,InactiveExitTimestamp,DropInPaths systemd-nspawn@web.service",
            "restart systemd-nspawn@web.service",
            "show --property=ActiveState,SubState,MainPID,Result,ActiveEnterTimestamp,ActiveExitTimestamp,InactiveEnterTimestamp,InactiveExitTimestamp,DropInPaths systemd-nspawn@web.service",
            "stop systemd-nspawn@web.service",
        ]
    );
    // Not running: login, run and show-ip say so (1); terminate has nothing to do (0).
    for args in [
        &["login", "web"][..],
        &["run", "web", "--", "true"],
        &["show-ip", "web"],
    ] {
        let o = f.run(args);
        assert_eq!(code(&o), 1, "{args:?}");
        assert!(stderr(&o).contains("web is not running"), "{}", stderr(&o));
    }
    assert_eq!(code(&f.run(&["terminate", "web"])), 0);
    std::fs::write(f.fake().join("fail-start-systemd-nspawn@web.service"), "").unwrap();
    let o = f.run(&["start", "web"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("journalctl -u systemd-nspawn@web.service"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ensure_unique_name_prints_the_name() {
    let f = Fixture::new();
    let a = f.system("a");
    let sys = a.to_str().unwrap();
    assert_eq!(
        f.ok(&[
            "create",
            "web",
            "--system",
            sys,
            "--no-start",
            "--ensure-unique-name"
        ]),
        "web\n"
    );
    assert_eq!(
        f.ok(&[
            "create",
            "web",
            "--system",
            sys,
            "--no-start",
            "--ensure-unique-name"
        ]),
        "web-0\n"
    );
    // A leftover state directory makes a name taken too.
    std::fs::create_dir_all(f.root().join("var/lib/machines/web-1")).unwrap();
    assert_eq!(
        f.ok(&[
            "create",
            "web",
            "--system",
            sys,
            "--no-start",
            "--ensure-unique-name"
        ]),
        "web-2\n"
    );
    assert_eq!(
        code(&f.run(&["create", "web", "--system", sys, "--no-start"])),
        4
    );
}

/// A stand-in NIXDIR/eval-container.nix: the configuration is a module
/// function whose `itest.bind` becomes the system's bind mount, and
/// `$ITEST_TAG` its name (nix-build evaluates impurely), so a rebuild can
/// make a new store path.
fn stand_in_nixdir(f: &Fixture) -> PathBuf {
    let nixdir = f.dir.path().join("nixdir");
    std::fs::create_dir_all(&nixdir).unwrap();
    std::fs::write(
        nixdir.join("eval-container.nix"),
        r#"{ name, configuration, nixpkgs ? null, system ? builtins.currentSystem }:
let
  m = import configuration;
  cfg = if builtins.isFunction m then m { config = { }; lib = { }; pkgs = { }; } else m;
in
derivation {
  name = "nixos-system-${name}-${builtins.getEnv "ITEST_TAG"}";
  inherit system;
  builder = "/bin/busybox";
  args = [ "sh" "-c" ''
    set -e
    /bin/busybox mkdir -p $out/bin $out/nixos-nspawn
    printf '#!/bin/sh\n' > $out/init
    /bin/busybox cp $out/init $out/bin/switch-to-configuration
    /bin/busybox chmod +x $out/init $out/bin/switch-to-configuration
    echo '{"version":1,"name":"${name}","system":"'$out'","bindMounts":["${cfg.itest.bind}"]}' > $out/nixos-nspawn/entry.json
  '' ];
}
"#,
    )
    .unwrap();
    nixdir
}

/// `--config 'DEFINITIONS'` (classic's inline form) builds, is recorded with
/// its Nix options, shown by status, and `update NAME` rebuilds from it.
#[test]
fn inline_config_is_recorded_and_rebuilt() {
    if !have_nix_and_busybox() {
        return;
    }
    let f = Fixture::new();
    let nixdir = stand_in_nixdir(&f);
    let pid = std::process::id();
    let text = format!("itest.bind = \"/srv/inline-{pid}\";");
    let run = |tag: &str, args: &[&str]| {
        // The stand-in eval-container.nix needs no nixpkgs: skip the Nix version check.
        let o = f
            .cmd()
            .env("NIXOS_NSPAWN_NIX_DIR", &nixdir)
            .env("NIXOS_NSPAWN_SKIP_NIX_CHECK", "1")
            .env("ITEST_TAG", tag)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let out = run(
        "one",
        &[
            "create",
            "web",
            "--config",
            &text,
            "--option",
            "substitute",
            "false",
            "--no-start",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["system"]
            .as_str()
            .unwrap()
            .ends_with("-nixos-system-web-one"),
        "{v}"
    );
    assert_eq!(v["source"]["expression"], text.as_str());
    let entry: Value = serde_json::from_slice(
        &std::fs::read(f.root().join("etc/nixos-nspawn/containers/web.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        entry["bindMounts"][0],
        format!("/srv/inline-{pid}:/srv/inline-{pid}")
    );
    assert_eq!(
        entry["source"],
        serde_json::json!({"expression": text, "platform": null, "nixArgs": ["--option", "substitute", "false"]})
    );
    let st = f.ok(&["status", "web"]);
    assert!(st.contains("Source:      inline configuration"), "{st}");
    assert!(st.contains("Nix options --option substitute false"), "{st}");
    // No source given: the recorded one is built again (a new store path here).
    let out = run("two", &["update", "web", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["generation"], 2, "{v}");
    assert!(
        v["system"]
            .as_str()
            .unwrap()
            .ends_with("-nixos-system-web-two"),
        "{v}"
    );
    // A file given with --config-file replaces the recorded source.
    let conf = f.dir.path().join("web.nix");
    std::fs::write(&conf, format!("{{ itest.bind = \"/srv/file-{pid}\"; }}")).unwrap();
    run(
        "three",
        &["update", "web", "--config-file", conf.to_str().unwrap()],
    );
    let entry: Value = serde_json::from_slice(
        &std::fs::read(f.root().join("etc/nixos-nspawn/containers/web.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        entry["source"]["config"],
        conf.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(entry["source"]["nixArgs"], serde_json::json!([]));
    // --system drops it; update without a source then says what to give.
    let b = f.system("b");
    f.ok(&["update", "web", "--system", b.to_str().unwrap()]);
    let o = f.run(&["update", "web"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("has no recorded source"),
        "{}",
        stderr(&o)
    );
}

/// `--flake REF#ATTR` falls back to classic's nixosConfigurations.ATTR when
/// the flake has no nixosContainers.<platform>.ATTR, says so, and records
/// what it built.
#[test]
fn flake_falls_back_to_nixos_configurations() {
    if !have_nix_and_busybox() {
        return;
    }
    let f = Fixture::new();
    let flake = f.dir.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    let platform = format!("{}-linux", std::env::consts::ARCH);
    let pid = std::process::id();
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}: {{
    nixosContainers.{platform}.other = throw "not this one";
    nixosConfigurations.web.config.system.build.toplevel = {drv};
  }};
}}
"#,
            drv = busybox_system(&format!("nixos-system-web-classic-{pid}"), &platform)
        ),
    )
    .unwrap();
    let reference = format!("path:{}", flake.display());
    // This flake needs no nixpkgs, so it builds with any flake-capable Nix.
    let o = f
        .cmd()
        .env("NIXOS_NSPAWN_SKIP_NIX_CHECK", "1")
        .args([
            "create",
            "web",
            "--flake",
            &format!("{reference}#web"),
            "--no-start",
            "--json",
        ])
        .output()
        .unwrap();
    if flakes_unsupported(&o) {
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no nixosContainers.")
            && stderr(&o).contains("building classic nixosConfigurations.web"),
        "{}",
        stderr(&o)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["system"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-nixos-system-web-classic-{pid}")));
    let installable = format!("{reference}#nixosConfigurations.web.config.system.build.toplevel");
    assert_eq!(v["source"]["flake"], installable.as_str());
    // update without a source builds the recorded installable again.
    let o = f
        .cmd()
        .env("NIXOS_NSPAWN_SKIP_NIX_CHECK", "1")
        .args(["update", "web", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let u: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(u["system"], v["system"]);
    // Neither attribute: the build fails, naming the nixosContainers one.
    let o = f
        .cmd()
        .env("NIXOS_NSPAWN_SKIP_NIX_CHECK", "1")
        .args([
            "create",
            "db",
            "--flake",
            &format!("{reference}#db"),
            "--no-start",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("nixosContainers"), "{}", stderr(&o));
}

/// `check-registry`: the registry under the root, or a directory given, with
/// every problem worded after the NixOS options when asked.
#[test]
fn check_registry_reports_every_problem() {
    let f = Fixture::new();
    let a = f.system("a");
    f.create_stopped("web", &a);
    assert_eq!(
        f.ok(&["check-registry"]),
        "1 registry entries and 0 zone files are valid\n"
    );
    // A directory of generated files, as the module's check writes it.
    let dir = f.dir.path().join("generated");
    std::fs::create_dir_all(dir.join("containers")).unwrap();
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let entry = std::fs::read_to_string(f.root().join("etc/nixos-nspawn/containers/web.json"))
        .unwrap()
        .replace(
            "\"timeoutStartSec\": \"90s\"",
            "\"timeoutStartSec\": \"soon\"",
        );
    assert!(entry.contains("\"soon\""), "{entry}");
    std::fs::write(dir.join("containers/web.json"), entry).unwrap();
    std::fs::write(
        dir.join("zones/thirteenchars.json"),
        r#"{"version": 1, "name": "thirteenchars", "network": null, "netdev": null}"#,
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let o = f.run(&["check-registry", d, "--options", "host"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: nixos.containers.instances.web: registry field timeoutStartSec: \"soon\" is not a systemd time span"),
        "{err}"
    );
    assert!(
        err.contains("error: nixos.containers.zones.thirteenchars: registry field name:"),
        "{err}"
    );
    let o = f.run(&["check-registry", d]);
    assert!(
        stderr(&o).contains("containers/web.json: timeoutStartSec:"),
        "{}",
        stderr(&o)
    );
    let o = f.run(&["check-registry", d, "--options", "guest"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = f.run(&["check-registry", "/nonexistent/dir"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}
