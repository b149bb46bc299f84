//! Unit-file injection corpus: adversarial strings in every string field of
//! the registry schema (and of zone files). Each case must end in one of two
//! ways:
//!
//! * a clear rejection: every error names the file, at least one names the
//!   field, and each is one bounded line without control characters; or
//! * output that reads back as exactly that value: the fuzzers' property
//!   (`fuzz/src/props.rs`, compiled in) renders the entry and its skeleton and
//!   checks, file by file, that the sections and keys are the intended ones and
//!   every value reads back unchanged with `unit::parse` (and, for command
//!   lines, argument by argument with `unit::split_exec`); and, where
//!   `systemd-analyze` exists, `systemd-analyze verify` of the drop-in against
//!   the host's real `systemd-nspawn@.service` reports nothing about it.
//!
//! Run with `--nocapture` to see the outcome matrix.

#[path = "../../../fuzz/src/gen.rs"]
#[allow(dead_code)]
mod gen;
#[path = "../../../fuzz/src/props.rs"]
#[allow(dead_code)]
mod props;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use nixos_nspawn_core::registry::{self, Entry, Registry};
use nixos_nspawn_core::render::{self, Contents, Context, Dest};
use serde_json::{json, Value};

/// The adversarial strings, with a label for the matrix.
fn strings() -> Vec<(&'static str, String)> {
    let s = |l: &'static str, v: &str| (l, v.to_owned());
    vec![
        s("LF", "a\nb"),
        s("CR", "a\rb"),
        s("CRLF", "a\r\nb"),
        s("NUL", "a\0b"),
        s("TAB", "a\tb"),
        s("ESC", "a\x1b[31mb"),
        s("DEL", "a\x7fb"),
        s("NEL", "a\u{85}b"),
        s("%n", "%n"),
        s("%%", "%%"),
        s("100%", "100%"),
        s("%", "%"),
        s("%%%", "a%%%b"),
        s("backslash", "a\\b"),
        s("\\n", "a\\nb"),
        s("trailing \\", "a\\"),
        s("\"", "a\"b"),
        s("'", "it's"),
        s("$VAR", "$VAR"),
        s("${X}", "${X}"),
        s("$$", "$$"),
        s("space", "a b"),
        s("leading space", " a"),
        s("trailing space", "a "),
        s("spaces only", "   "),
        s("empty", ""),
        s(";", ";"),
        s("; comment", "; x"),
        s("#", "#x"),
        s("[Section]", "[Section]"),
        s(
            "line injection",
            "x\n[Service]\nExecStartPre=/bin/sh -c 'touch /pwned'",
        ),
        s("key injection", "x ExecStartPre=/bin/sh"),
        s("RTL override", "a\u{202e}cba"),
        s("zero-width", "a\u{200b}b"),
        s("BOM", "\u{feff}a"),
        s("NBSP trailing", "a\u{a0}"),
        s("U+2028", "a\u{2028}b"),
        s("unicode", "ä€𝄞🦀"),
        s(
            "100 KiB",
            &"x%$\\\"' ".repeat(100 << 10 >> 3).replace(' ', "y"),
        ),
    ]
}

/// Puts a string into a copy of a valid entry.
type Put = dyn Fn(&mut Value, &str);

/// Where a string goes: the field path the errors must name, and how to put
/// it in (into a copy of a valid entry).
struct Field {
    path: String,
    put: Box<Put>,
    /// The field's value is a raw command line, environment assignment or
    /// other setting whose validity is the writer's business; `systemd-analyze
    /// verify` complaints about its content are expected, not injection.
    raw: bool,
    /// The string is put inside a valid value (so leading or trailing
    /// whitespace or a backslash are not at the value's ends).
    embedded: bool,
}

fn base() -> Value {
    json!({
        "version": 1,
        "name": "web",
        "system": "/nix/store/0000-nixos-system-web",
        "bindMounts": ["/srv/web:/var/www:ro"],
        "credentials": [{ "id": "db", "path": "/run/secrets/db" }]
    })
}

fn f(path: impl Into<String>, put: impl Fn(&mut Value, &str) + 'static) -> Field {
    Field {
        path: path.into(),
        put: Box::new(put),
        raw: false,
        embedded: false,
    }
}

/// The names in the settings `top` (sections of keys): a key's name in its
/// `section`, and a section's name.
fn settings_names(top: &'static str, section: &'static str) -> [Field; 2] {
    [
        f(format!("{top}.{section}"), move |v, s| {
            v[top] = json!({ section: { s: "x" } })
        }),
        f(top, move |v, s| v[top] = json!({ s: { "X": "y" } })),
    ]
}

fn fields() -> Vec<Field> {
    /// Inside a valid value.
    fn e(path: &'static str, put: fn(&mut Value, &str)) -> Field {
        Field {
            embedded: true,
            ..f(path, put)
        }
    }
    /// A raw command line or similar, inside a valid value.
    fn raw(path: &'static str, put: fn(&mut Value, &str)) -> Field {
        Field {
            raw: true,
            embedded: true,
            ..f(path, put)
        }
    }
    let mut fields = vec![
        f("name", |v, s| v["name"] = json!(s)),
        f("system", |v, s| v["system"] = json!(s)),
        e("system", |v, s| {
            v["system"] = json!(format!("/nix/store/x-{s}"))
        }),
        f("timeoutStartSec", |v, s| v["timeoutStartSec"] = json!(s)),
        e("timeoutStartSec", |v, s| {
            v["timeoutStartSec"] = json!(format!("90s{s}"))
        }),
        f("systemCallFilter", |v, s| v["systemCallFilter"] = json!(s)),
        e("systemCallFilter", |v, s| {
            v["systemCallFilter"] = json!(format!("@system-service {s}"))
        }),
        f("bindMounts[0]", |v, s| v["bindMounts"] = json!([s])),
        e("bindMounts[0]", |v, s| {
            v["bindMounts"] = json!([format!("/srv/{s}")])
        }),
        e("bindMounts[0]", |v, s| {
            v["bindMounts"] = json!([format!("/srv:/data/{s}:ro")])
        }),
        e("bindMounts[0]", |v, s| {
            v["bindMounts"] = json!([format!("/srv:/data:{s}")])
        }),
        f("credentials[0].id", |v, s| {
            v["credentials"][0]["id"] = json!(s)
        }),
        f("credentials[0].path", |v, s| {
            v["credentials"][0]["path"] = json!(s)
        }),
        e("credentials[0].path", |v, s| {
            v["credentials"][0]["path"] = json!(format!("/run/secrets/{s}"))
        }),
        f("network.mode", |v, s| v["network"] = json!({ "mode": s })),
        f("network.zone", |v, s| {
            v["network"] = json!({ "mode": "zone", "zone": s })
        }),
        f("network.bridge", |v, s| {
            v["network"] = json!({ "mode": "bridge", "bridge": s })
        }),
        f("network.host.Network.Domains", |v, s| {
            v["network"] = json!({ "host": { "Network": { "Domains": s } } })
        }),
        f("network.host.Network.Address", |v, s| {
            v["network"] = json!({ "host": { "Network": { "Address": s } } })
        }),
        f("network.host.Network", |v, s| {
            v["network"] = json!({ "host": { "Network": { s: "x" } } })
        }),
        f("network.host", |v, s| {
            v["network"] = json!({ "host": { s: { "Domains": "x" } } })
        }),
        f("network.host.Route[0].Gateway", |v, s| {
            v["network"] = json!({ "host": { "Route": [{ "Gateway": s }] } })
        }),
        f("forwardPorts[0].protocol", |v, s| {
            v["forwardPorts"] = json!([{ "protocol": s, "hostPort": 80 }])
        }),
        f("activation.strategy", |v, s| {
            v["activation"] = json!({ "strategy": s })
        }),
        f("activation.reloadScript", |v, s| {
            v["activation"] = json!({ "reloadScript": s })
        }),
        e("activation.reloadScript", |v, s| {
            v["activation"] = json!({ "reloadScript": format!("/nix/store/r-{s}") })
        }),
        f("extraNspawn.Exec.Hostname", |v, s| {
            v["extraNspawn"] = json!({ "Exec": { "Hostname": s } })
        }),
    ];
    fields.extend(settings_names("extraNspawn", "Exec"));
    fields.extend([
        f("extraNspawn.Files.Bind[1]", |v, s| {
            v["extraNspawn"] = json!({ "Files": { "Bind": ["/a", s] } })
        }),
        f("extraService.Unit.Description", |v, s| {
            v["extraService"] = json!({ "Unit": { "Description": s } })
        }),
        e(
            "extraService.Unit.Description",
            |v, s| v["extraService"] = json!({ "Unit": { "Description": format!("Web {s} end") } }),
        ),
        raw("extraService.Service.ExecStartPre", |v, s| {
            v["extraService"] = json!({ "Service": { "ExecStartPre": format!("/bin/echo {s}") } })
        }),
        raw("extraService.Service.Environment", |v, s| {
            v["extraService"] = json!({ "Service": { "Environment": format!("X={s}") } })
        }),
        raw("extraService.Service.CPUQuota", |v, s| {
            v["extraService"] = json!({ "Service": { "CPUQuota": s } })
        }),
    ]);
    fields.extend(settings_names("extraService", "Service"));
    fields.push(f("extraService.Unit[0].Description", |v, s| {
        v["extraService"] = json!({ "Unit": [{ "Description": s }] })
    }));
    fields
}

fn zone_fields() -> Vec<Field> {
    vec![
        f("name", |v, s| v["name"] = json!(s)),
        f("network.Network.Domains", |v, s| {
            v["network"] = json!({ "Network": { "Domains": s } })
        }),
        f("network.Network.Address", |v, s| {
            v["network"] = json!({ "Network": { "Address": s } })
        }),
        f("network.Network", |v, s| {
            v["network"] = json!({ "Network": { s: "x" } })
        }),
        f("network", |v, s| v["network"] = json!({ s: { "A": "b" } })),
        f("network.IPv6Prefix[0].Prefix", |v, s| {
            v["network"] = json!({ "IPv6Prefix": [{ "Prefix": s }] })
        }),
        f("netdev.NetDev.Description", |v, s| {
            v["netdev"] = json!({ "NetDev": { "Description": s } })
        }),
        f("netdev.Bridge", |v, s| {
            v["netdev"] = json!({ "Bridge": { s: 1 } })
        }),
    ]
}

/// Whether a file stem can hold `name` (else the file is `web.json`, and a
/// name mismatch is reported, naming the field `name` as well).
fn stem(name: &str, default: &str) -> String {
    if gen::usable_stem(name) {
        name.to_owned()
    } else {
        default.to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Rejected,
    Accepted,
    /// Valid, but one rendered line would be longer than systemd reads:
    /// refused at rendering, naming the file.
    RefusedAtRender,
}

struct Case {
    field: String,
    label: &'static str,
    embedded: bool,
    outcome: Outcome,
    /// For accepted entries: the entry, to verify with systemd-analyze.
    entry: Option<Entry>,
    raw: bool,
}

fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
            .chars()
            .take(1500)
            .collect()
    })
}

/// An error list must name `field` (or a field below it) somewhere.
fn names_field(errors: &[nixos_nspawn_core::EntryError], field: &str) -> bool {
    errors.iter().any(|e| {
        e.field.as_deref().is_some_and(|f| {
            f == field
                || f.starts_with(&format!("{field}."))
                || f.starts_with(&format!("{field}["))
                // An unknown or bad key is reported at its own path below
                // the section.
                || field.starts_with(f)
        })
    })
}

/// `s` put into `v` where `field` goes, as JSON, and the file it is parsed
/// as: `/etc/nixos-nspawn/DIR/NAME.json` (`DEFAULT.json` where the name
/// cannot be a file's stem).
fn input(field: &Field, s: &str, mut v: Value, dir: &str, default: &str) -> (Vec<u8>, PathBuf) {
    (field.put)(&mut v, s);
    let name = v["name"].as_str().unwrap_or(default).to_owned();
    let file = format!("/etc/nixos-nspawn/{dir}/{}.json", stem(&name, default));
    (v.to_string().into_bytes(), file.into())
}

/// A rejection must be clear (the fuzzers' property) and name the field.
fn check_rejection(
    file: &Path,
    errors: &[nixos_nspawn_core::EntryError],
    field: &str,
    what: &str,
    failures: &mut Vec<String>,
) {
    if let Err(e) = catch(|| props::check_errors(file, errors)) {
        failures.push(format!("{what}: bad errors: {e}"));
    }
    if !names_field(errors, field) {
        failures.push(format!("{what}: errors do not name the field: {errors:?}"));
    }
}

fn run_cases() -> (Vec<Case>, Vec<String>) {
    let mut cases = Vec::new();
    let mut failures = Vec::new();
    for field in fields() {
        for (label, s) in strings() {
            let (json, file) = input(&field, &s, base(), "containers", "web");
            let what = format!("{} <- {label}", field.path);
            match registry::parse_entry(&file, &json) {
                Err(errors) => {
                    check_rejection(&file, &errors, &field.path, &what, &mut failures);
                    cases.push(Case {
                        field: field.path.clone(),
                        label,
                        embedded: field.embedded,
                        outcome: Outcome::Rejected,
                        entry: None,
                        raw: field.raw,
                    });
                }
                Ok(entry) => {
                    if let Err(e) = catch(|| props::check_entry(&entry)) {
                        failures.push(format!("{what}: {e}"));
                    }
                    let refused = render::container_files(&entry, &Context::default()).is_err();
                    cases.push(Case {
                        field: field.path.clone(),
                        label,
                        embedded: field.embedded,
                        outcome: if refused {
                            Outcome::RefusedAtRender
                        } else {
                            Outcome::Accepted
                        },
                        entry: (!refused).then_some(entry),
                        raw: field.raw,
                    });
                }
            }
        }
    }
    for field in zone_fields() {
        for (label, s) in strings() {
            let lan = json!({ "version": 1, "name": "lan" });
            let (json, file) = input(&field, &s, lan, "zones", "lan");
            let what = format!("zone {} <- {label}", field.path);
            let outcome = match registry::parse_zone(&file, &json) {
                Err(errors) => {
                    check_rejection(&file, &errors, &field.path, &what, &mut failures);
                    Outcome::Rejected
                }
                Ok(zone) => {
                    if let Err(e) = catch(|| props::check_zone(&zone)) {
                        failures.push(format!("{what}: {e}"));
                    }
                    Outcome::Accepted
                }
            };
            cases.push(Case {
                field: format!("zone {}", field.path),
                label,
                embedded: false,
                outcome,
                entry: None,
                raw: false,
            });
        }
    }
    (cases, failures)
}

/// Labels accepted, rejected and refused at rendering, for one field.
type Matrix = (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>);

fn outcome_of<'c>(cases: &'c [Case], field: &str, label: &str) -> Vec<&'c Case> {
    cases
        .iter()
        .filter(|c| c.field == field && c.label == label)
        .collect()
}

#[test]
fn every_field_rejects_or_round_trips() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (cases, failures) = run_cases();
    std::panic::set_hook(hook);

    // The matrix: per field, which strings were accepted.
    let mut by_field: BTreeMap<&str, Matrix> = BTreeMap::new();
    for c in &cases {
        let slot = by_field.entry(&c.field).or_default();
        match c.outcome {
            Outcome::Accepted => slot.0.push(c.label),
            Outcome::Rejected => slot.1.push(c.label),
            Outcome::RefusedAtRender => slot.2.push(c.label),
        }
    }
    let accepted = cases
        .iter()
        .filter(|c| c.outcome == Outcome::Accepted)
        .count();
    println!(
        "{} cases ({} fields x {} strings, entries and zones): {accepted} accepted and read back exactly, {} rejected",
        cases.len(),
        by_field.len(),
        strings().len(),
        cases.len() - accepted
    );
    for (field, (acc, _, refused)) in &by_field {
        println!("  {field}: accepts {acc:?}");
        if !refused.is_empty() {
            println!("  {field}: refused at rendering {refused:?}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );

    // What must be rejected everywhere: anything that ends or continues a
    // line, control characters; and where the string is the whole value,
    // whitespace systemd would trim.
    let everywhere = [
        "LF",
        "CR",
        "CRLF",
        "NUL",
        "TAB",
        "ESC",
        "DEL",
        "NEL",
        "line injection",
    ];
    let whole = [
        "trailing \\",
        "leading space",
        "trailing space",
        "spaces only",
    ];
    for c in &cases {
        if everywhere.contains(&c.label) || (!c.embedded && whole.contains(&c.label)) {
            assert_eq!(c.outcome, Outcome::Rejected, "{} <- {}", c.field, c.label);
        }
    }
    // Free text keeps every character that is not structure, exactly.
    for field in [
        "extraService.Unit.Description",
        "extraNspawn.Exec.Hostname",
        "network.host.Network.Domains",
        "zone netdev.NetDev.Description",
    ] {
        for label in [
            "%n",
            "%%",
            "100%",
            "%",
            "%%%",
            "backslash",
            "\\n",
            "\"",
            "'",
            "$VAR",
            "${X}",
            "$$",
            "space",
            ";",
            "; comment",
            "#",
            "[Section]",
            "key injection",
            "zero-width",
            "BOM",
            "U+2028",
            "unicode",
            "100 KiB",
            "empty",
        ] {
            let got = outcome_of(&cases, field, label);
            assert!(!got.is_empty(), "{field} <- {label}: no case");
            for c in got {
                assert_eq!(c.outcome, Outcome::Accepted, "{field} <- {label}");
            }
        }
    }
    // Credential paths end up on nspawn's command line: quoting must hold.
    for label in ["%n", "$VAR", "\"", "'", "space", "backslash", "; comment"] {
        for c in outcome_of(&cases, "credentials[0].path", label) {
            if c.outcome == Outcome::Accepted {
                return verify_with_systemd(&cases);
            }
        }
    }
    panic!("no adversarial credential path was accepted");
}

/// `systemd-analyze verify` of every accepted entry's drop-in, all at once,
/// against the host's real template: nothing may be reported about our
/// drop-ins (except about raw command lines and the like, whose content is
/// the writer's business: reported, not failed).
fn verify_with_systemd(cases: &[Case]) {
    let template = Path::new("/lib/systemd/system/systemd-nspawn@.service");
    let analyze = which("systemd-analyze");
    let nspawn = which("systemd-nspawn");
    let (Some(analyze), Some(nspawn), true) = (analyze, nspawn, template.exists()) else {
        println!("systemd-analyze, systemd-nspawn or {template:?} missing: verify skipped");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let units = d.path().join("units");
    let helpers = d.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    for exe in [render::BOOTSTRAP_EXE, render::ACTIVATE_EXE] {
        std::fs::copy("/bin/true", helpers.join(exe)).unwrap();
    }
    let ctx = Context {
        helper_dir: helpers,
        root_env: Some(d.path().join("root dir %n $x")),
        unit_dir: template.parent().unwrap().to_path_buf(),
        nspawn_exe: nspawn.display().to_string(),
        ..Context::default()
    };
    let mut unit_names = Vec::new();
    let mut owner: BTreeMap<String, (String, &str, bool)> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        let Some(entry) = &c.entry else { continue };
        let mut entry = entry.clone();
        if c.field != "name" {
            entry.name = format!("c{i}");
        }
        let files = render::container_files(&entry, &ctx).unwrap();
        for f in files {
            if let (Dest::Generator(rel), Contents::File(text)) = (&f.dest, &f.contents) {
                let path = units.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text).unwrap();
            }
        }
        let unit = nixos_nspawn_core::paths::unit_name(&entry.name);
        owner.insert(unit.clone(), (c.field.clone(), c.label, c.raw));
        unit_names.push(unit);
    }
    let mut failures = Vec::new();
    let mut raw_notes = 0;
    for chunk in unit_names.chunks(200) {
        let out = Command::new(&analyze)
            .arg("verify")
            .args(chunk)
            .env(
                "SYSTEMD_UNIT_PATH",
                format!(
                    "{}:{}",
                    units.display(),
                    template.parent().unwrap().display()
                ),
            )
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        for full in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: String = full.chars().take(300).collect();
            let line = line.as_str();
            let who = owner
                .iter()
                .find(|(u, _)| line.contains(&format!("/{u}.d/")) || line.contains(u.as_str()));
            match who {
                Some((_, (field, label, true))) => {
                    raw_notes += 1;
                    println!("  note ({field} <- {label}, raw setting): {line}");
                }
                Some((_, (field, label, false))) => {
                    failures.push(format!("{field} <- {label}: {line}"))
                }
                None if line.contains(&units.display().to_string()) => {
                    failures.push(format!("(unattributed) {line}"))
                }
                None => println!("  host template note: {line}"),
            }
        }
    }
    println!(
        "systemd-analyze verify: {} drop-ins, {} findings, {raw_notes} notes on raw settings",
        unit_names.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn which(exe: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(exe))
        .find(|p| p.is_file())
}

/// A valid entry whose escaped drop-in line would exceed systemd's
/// LONG_LINE_MAX is refused at rendering with an error naming the file,
/// through the whole-registry path the generator uses; other containers are
/// still rendered.
#[test]
fn lines_too_long_for_systemd_are_refused_not_dropped() {
    let percent = "%".repeat(600 << 10);
    let long_desc = json!({
        "version": 1, "name": "long", "system": "/nix/store/0000-x",
        "extraService": { "Unit": { "Description": percent } }
    });
    let creds: Vec<Value> = (0..200)
        .map(|i| json!({ "id": format!("c{i}"), "path": format!("/{}", "%".repeat(4000)) }))
        .collect();
    let many_creds = json!({
        "version": 1, "name": "creds", "system": "/nix/store/0000-x", "credentials": creds
    });
    let ok = json!({ "version": 1, "name": "ok", "system": "/nix/store/0000-x" });
    let mut reg = Registry::default();
    for v in [&long_desc, &many_creds, &ok] {
        let text = v.to_string();
        assert!(text.len() < registry::MAX_FILE_SIZE as usize);
        let name = v["name"].as_str().unwrap();
        let file = PathBuf::from(format!("/etc/nixos-nspawn/containers/{name}.json"));
        reg.containers
            .push(registry::parse_entry(&file, text.as_bytes()).expect("valid entry"));
    }
    for e in &reg.containers[..2] {
        props::check_entry(e);
    }
    let rendered = render::render_registry(&reg, &Context::default());
    assert_eq!(rendered.containers, ["ok"]);
    assert_eq!(rendered.errors.len(), 2, "{:?}", rendered.errors);
    for (e, name, key) in [
        (&rendered.errors[0], "long", "Description="),
        (&rendered.errors[1], "creds", "ExecStart="),
    ] {
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("/etc/nixos-nspawn/containers/{name}.json: cannot be rendered: {key} would be a line of")),
            "{msg}"
        );
        assert!(msg.len() < 300, "{msg}");
    }
}
