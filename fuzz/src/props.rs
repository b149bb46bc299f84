//! The properties the fuzz targets check, shared with
//! `crates/core/tests/fuzz_regressions.rs` (compiled in by `#[path]`), so a
//! checked-in reproducer fails `cargo test` exactly as it failed the fuzzer.
//!
//! Every function panics when a property does not hold:
//!
//! * parsing never panics; a rejection names the file, and every error is one
//!   bounded line without control or bidi-override characters (they go to
//!   kmsg and terminals);
//! * an accepted entry (zone) renders without error, and its canonical JSON
//!   parses back to the same entry (zone);
//! * every rendered file reads back with [`unit::parse`] (`Dialect::Unit` for
//!   the drop-in, `Plain` otherwise) with exactly the sections and keys the
//!   renderer intended, and every value reads back as exactly what was put in.
//!   "Intended" is computed by rendering a *skeleton*: the same entry with
//!   every registry string replaced by a unique marker (`ZQ<i>QZ`, with a
//!   leading `/` where the original had one). The skeleton's files must have the
//!   same sections and keys, in the same order, and each value of the real
//!   file must equal the skeleton's value with the markers replaced by the
//!   original strings — for command lines (`Exec*=`), argument by argument
//!   after [`unit::split_exec`]. So no registry value can add a line, a section,
//!   a key, a specifier or a command-line argument;
//! * no rendered line exceeds systemd's `LONG_LINE_MAX` (1 MiB), which would
//!   make systemd refuse the whole file.

use std::path::Path;

use nixos_nspawn_core::registry::{self, Entry, Registry, Zone};
use nixos_nspawn_core::render::{self, Contents, Context, Dest, OutputFile, Store};
use nixos_nspawn_core::settings::{Scalar, SectionBody, Settings};
use nixos_nspawn_core::unit::{self, Dialect, Parsed};
use nixos_nspawn_core::{EntryError, HEADER_PREFIX};
use serde_json::Value;

use crate::gen::{self, Src};

/// systemd's `LONG_LINE_MAX`: a longer line makes the whole file unreadable.
pub const LONG_LINE_MAX: usize = 1024 * 1024;
/// Longest error line we accept: values in messages are shortened to 80
/// characters and field paths to 200, but file names (up to NAME_MAX, 255
/// bytes) are not, and escaping a control character makes 6 bytes of 1.
pub const MAX_ERROR_LEN: usize = 4096;

/// Target `entry_bytes`: arbitrary bytes as a registry file.
pub fn entry_bytes(data: &[u8]) {
    // Name the file after the entry when it says a usable name, so that the
    // name check passes and the rest of the entry is reached.
    let stem = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
        .filter(|n| gen::usable_stem(n))
        .unwrap_or_else(|| "web".into());
    let file = format!("/etc/nixos-nspawn/containers/{stem}.json");
    check_entry_bytes(&file, data);
}

/// Target `entry_structured`: an adversarial entry decoded from the bytes.
pub fn entry_structured(data: &[u8]) {
    let mut src = Src::new(data);
    let (file, value) = gen::entry(&mut src);
    let text = if src.chance(32) {
        serde_json::to_string_pretty(&value).unwrap()
    } else {
        value.to_string()
    };
    check_entry_bytes(&file, text.as_bytes());
}

/// Target `zone`: raw bytes (first byte even) or a structured zone file.
pub fn zone(data: &[u8]) {
    match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => {
            let stem = serde_json::from_slice::<Value>(rest)
                .ok()
                .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
                .filter(|n| gen::usable_stem(n))
                .unwrap_or_else(|| "lan".into());
            check_zone_bytes(&format!("/etc/nixos-nspawn/zones/{stem}.json"), rest);
        }
        _ => {
            let mut src = Src::new(data.get(1..).unwrap_or_default());
            let (file, value) = gen::zone(&mut src);
            check_zone_bytes(&file, value.to_string().as_bytes());
        }
    }
}

/// Target `settings`: two settings values (raw JSON or structured) merged.
pub fn settings(data: &[u8]) {
    let mut src = Src::new(data);
    src.set_adversity();
    let raw = src.chance(48);
    let mut value = || {
        if raw {
            let n = src.byte() as usize;
            serde_json::from_slice::<Value>(src.bytes(n)).unwrap_or(Value::Null)
        } else {
            gen::settings(&mut src)
        }
    };
    let defaults_v = value();
    let over_v = value();
    let defaults = check_settings_json(&defaults_v, "defaults");
    let over = check_settings_json(&over_v, "extraNspawn");
    let (Some(defaults), Some(over)) = (defaults, over) else {
        return;
    };
    check_merge(&defaults, &over);
}

// ---------------------------------------------------------------- entries

pub fn check_entry_bytes(file: &str, bytes: &[u8]) {
    let path = Path::new(file);
    match registry::parse_entry(path, bytes) {
        Err(errors) => check_errors(path, &errors),
        Ok(entry) => check_entry(&entry),
    }
}

/// Errors: at least one, each naming `file`, one bounded line.
pub fn check_errors(file: &Path, errors: &[EntryError]) {
    assert!(!errors.is_empty(), "rejected without an error");
    for e in errors {
        assert_eq!(e.file, file, "error names another file: {e}");
        assert!(!e.message.is_empty(), "empty message: {e:?}");
        let line = e.to_string();
        assert!(
            line.len() <= MAX_ERROR_LEN,
            "error is {} bytes long: {:?}...",
            line.len(),
            &line[..line.char_indices().nth(300).map_or(line.len(), |(i, _)| i)]
        );
        if let Some(c) = line.chars().find(|c| unsafe_in_log(*c)) {
            panic!("error contains {c:?}: {line:?}");
        }
    }
}

/// Characters that must not reach a log line or terminal raw: control
/// characters and bidirectional overrides ("Trojan Source").
pub fn unsafe_in_log(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn contexts() -> [Context; 2] {
    [
        Context::default(),
        Context {
            helper_dir: "/opt/nixos nspawn/100%/$x".into(),
            root_env: Some("/tmp/test root/%n$HOME\"'\\".into()),
            unit_dir: "/etc/systemd/system".into(),
            nspawn_exe: "/run/current-system/sw/bin/systemd-nspawn".into(),
            ..Context::default()
        },
    ]
}

const CLOSURE: &[&str] = &["/nix/store/0000-a", "/nix/store/1111-b c%"];

/// Everything an accepted entry must satisfy.
pub fn check_entry(entry: &Entry) {
    let file = entry.file();
    // What the CLI writes reads back as the same entry.
    let json = entry.to_json();
    match registry::parse_entry(&file, json.as_bytes()) {
        Ok(back) => assert_eq!(&back, entry, "canonical JSON changes the entry:\n{json}"),
        Err(e) => panic!("canonical JSON of an accepted entry is rejected: {e:?}\n{json}"),
    }

    // A line systemd cannot read (LONG_LINE_MAX) is refused at rendering,
    // naming the file, and nothing is rendered for the container.
    if let Err(e) = render::container_files(entry, &Context::default()) {
        assert!(
            e.contains("systemd reads lines of at most"),
            "accepted entry does not render: {e}\n{json}"
        );
        let reg = Registry {
            containers: vec![entry.clone()],
            ..Registry::default()
        };
        let rendered = render::render_registry(&reg, &Context::default());
        assert!(rendered.containers.is_empty());
        assert!(!rendered.files.iter().any(
            |f| matches!(&f.dest, Dest::Generator(p) if p.to_string_lossy().contains(&entry.name))
        ));
        check_errors(&file, &rendered.errors);
        assert!(rendered.errors[0].message.contains("cannot be rendered"));
        return;
    }

    let (skel, originals) = skeleton(entry);
    // The addresses derived from the real name, for the skeleton too (its
    // marker name would derive others).
    let assignment = |ctx: &Context| {
        ctx.assignment(entry, &ctx.claims([entry.name.as_str()]))
            .unwrap_or_else(|e| panic!("accepted entry gets no addresses: {e}\n{json}"))
    };
    for ctx in contexts() {
        let real = match render::container_files(entry, &ctx) {
            Ok(files) => files,
            // The other context's longer paths can make the difference.
            Err(e) if e.contains("systemd reads lines of at most") => continue,
            Err(e) => panic!("accepted entry does not render: {e}\n{json}"),
        };
        let expected = render::container_files_with_closure(&skel, &ctx, None, &assignment(&ctx))
            .unwrap_or_else(|e| panic!("skeleton does not render: {e}"));
        compare_files(&real, &expected, &originals);
    }
    let closure: Vec<String> = CLOSURE.iter().map(|s| s.to_string()).collect();
    let a = assignment(&Context::default());
    for store in [Store::Shared, Store::Closure(&closure), Store::Closure(&[])] {
        let real = match render::run_files(entry, store, &a) {
            Ok(files) => files,
            Err(e) if e.contains("systemd reads lines of at most") => continue,
            Err(e) => panic!("accepted entry does not render: {e}\n{json}"),
        };
        let expected = render::run_files(&skel, store, &a).expect("skeleton renders");
        compare_files(&real, &expected, &originals);
    }
    // The whole-registry path: the entry and the zone it uses, no errors.
    let reg = Registry {
        containers: vec![entry.clone()],
        ..Registry::default()
    };
    let rendered = render::render_registry(&reg, &Context::default());
    assert!(rendered.errors.is_empty(), "{:?}", rendered.errors);
    assert_eq!(rendered.containers, vec![entry.name.clone()]);
    for f in &rendered.files {
        check_text_file(f);
    }
}

/// Markers replace registry strings in the skeleton.
#[derive(Default)]
struct Marks {
    originals: Vec<String>,
}

impl Marks {
    fn mark(&mut self, s: &mut String) {
        if s.is_empty() {
            // An empty value has a meaning of its own (it resets a list:
            // a leading "" in an accumulating extraNspawn key replaces our
            // values), so the skeleton keeps it.
            return;
        }
        let i = self.originals.len();
        let marker = if s.starts_with('/') {
            format!("/ZQ{i}QZ")
        } else {
            format!("ZQ{i}QZ")
        };
        self.originals.push(std::mem::replace(s, marker));
    }

    fn mark_opt(&mut self, s: &mut Option<String>) {
        if let Some(s) = s {
            self.mark(s);
        }
    }

    fn mark_settings(&mut self, s: &mut Option<Settings>) {
        let Some(s) = s else { return };
        let mut scalar = |v: &mut Scalar| {
            if let Scalar::Str(s) = v {
                self.mark(s);
            }
        };
        for (_, body) in &mut s.sections {
            match body {
                SectionBody::Single(entries) => {
                    for (_, vals) in entries {
                        vals.iter_mut().flatten().for_each(&mut scalar);
                    }
                }
                SectionBody::Repeated(list) => {
                    for entries in list {
                        for (_, vals) in entries {
                            vals.iter_mut().for_each(&mut scalar);
                        }
                    }
                }
            }
        }
    }
}

/// The entry with every string replaced by a marker, and the originals.
fn skeleton(entry: &Entry) -> (Entry, Vec<String>) {
    let mut e = entry.clone();
    let mut m = Marks::default();
    m.mark(&mut e.name);
    m.mark(&mut e.system);
    m.mark(&mut e.timeout_start_sec);
    m.mark_opt(&mut e.system_call_filter);
    for b in &mut e.bind_mounts {
        m.mark(&mut b.host);
        m.mark(&mut b.container);
    }
    for c in &mut e.credentials {
        m.mark(&mut c.id);
        m.mark(&mut c.path);
    }
    m.mark_opt(&mut e.network.zone);
    m.mark_opt(&mut e.network.bridge);
    m.mark_settings(&mut e.network.host);
    m.mark_opt(&mut e.activation.reload_script);
    m.mark_settings(&mut e.extra_nspawn);
    m.mark_settings(&mut e.extra_service);
    (e, m.originals)
}

/// Replace the markers in a skeleton value by the original strings (one pass
/// over the template, so originals that look like markers stay as they are).
fn unmark(template: &str, originals: &[String]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("ZQ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match (
            after[..digits].parse::<usize>(),
            after[digits..].starts_with("QZ"),
        ) {
            (Ok(i), true) if i < originals.len() => {
                if originals[i].starts_with('/') {
                    // The marker kept the original's leading '/'.
                    let slash = out.pop();
                    assert_eq!(slash, Some('/'), "marker {i} lost its '/' in {template:?}");
                }
                out.push_str(&originals[i]);
                rest = &after[digits + 2..];
            }
            _ => {
                out.push_str("ZQ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn dialect_of(f: &OutputFile) -> Dialect {
    match &f.dest {
        Dest::Generator(_) => Dialect::Unit,
        Dest::Run(_) => Dialect::Plain,
    }
}

/// A rendered file on its own: our header first (only files with it are ever
/// replaced or pruned), no control characters but line feeds, no line longer
/// than systemd reads, and it parses.
pub fn check_text_file(f: &OutputFile) -> Option<Parsed> {
    let Contents::File(text) = &f.contents else {
        return None;
    };
    assert!(
        text.starts_with(HEADER_PREFIX),
        "{:?} lacks the header:\n{text}",
        f.dest
    );
    assert!(
        text.ends_with('\n'),
        "{:?} does not end with a newline",
        f.dest
    );
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("{:?} contains {c:?}:\n{text}", f.dest);
    }
    for line in text.lines() {
        assert!(
            line.len() < LONG_LINE_MAX,
            "{:?} has a line of {} bytes, which systemd refuses",
            f.dest,
            line.len()
        );
    }
    match unit::parse(text, dialect_of(f)) {
        Ok(p) => Some(p),
        Err(e) => panic!("{:?} does not parse back: {e}\n{text}", f.dest),
    }
}

/// The real files against the skeleton's, see the module docs.
pub fn compare_files(real: &[OutputFile], skel: &[OutputFile], originals: &[String]) {
    assert_eq!(
        real.len(),
        skel.len(),
        "a value changed the number of files"
    );
    for (r, s) in real.iter().zip(skel) {
        let same_kind = matches!(
            (&r.dest, &s.dest),
            (Dest::Generator(_), Dest::Generator(_)) | (Dest::Run(_), Dest::Run(_))
        );
        assert!(same_kind, "{:?} vs {:?}", r.dest, s.dest);
        match (&r.contents, &s.contents) {
            (Contents::Symlink(a), Contents::Symlink(b)) => assert_eq!(a, b),
            (Contents::File(text), Contents::File(_)) => {
                let rp = check_text_file(r).unwrap();
                let sp = check_text_file(s).unwrap();
                compare_parsed(&rp, &sp, originals, text);
            }
            _ => panic!("{:?}: a value changed a file into a link", r.dest),
        }
    }
}

fn compare_parsed(real: &Parsed, skel: &Parsed, originals: &[String], text: &str) {
    let names = |p: &Parsed| -> Vec<(String, Vec<String>)> {
        p.iter()
            .map(|(s, kv)| (s.clone(), kv.iter().map(|(k, _)| k.clone()).collect()))
            .collect()
    };
    assert_eq!(
        names(real),
        names(skel),
        "a value changed the sections or keys:\n{text}"
    );
    for ((section, rkv), (_, skv)) in real.iter().zip(skel) {
        for ((key, rv), (_, sv)) in rkv.iter().zip(skv) {
            let expected = unmark(sv, originals);
            if *rv == expected {
                continue;
            }
            // Command lines are quoted: compare argument by argument.
            let argv_ok = key.starts_with("Exec")
                && match (unit::split_exec(rv), unit::split_exec(sv)) {
                    (Ok(ra), Ok(sa)) => {
                        ra == sa.iter().map(|a| unmark(a, originals)).collect::<Vec<_>>()
                    }
                    _ => false,
                };
            assert!(
                argv_ok,
                "[{section}] {key}= reads back as {rv:?}, expected {expected:?}:\n{text}"
            );
        }
    }
}

// ---------------------------------------------------------------- zones

pub fn check_zone_bytes(file: &str, bytes: &[u8]) {
    let path = Path::new(file);
    match registry::parse_zone(path, bytes) {
        Err(errors) => check_errors(path, &errors),
        Ok(zone) => check_zone(&zone),
    }
}

pub fn check_zone(zone: &Zone) {
    let file = nixos_nspawn_core::paths::zone_file(&zone.name);
    let json = serde_json::to_string(zone).unwrap();
    match registry::parse_zone(&file, json.as_bytes()) {
        Ok(back) => assert_eq!(&back, zone, "zone JSON changes the zone: {json}"),
        Err(e) => panic!("JSON of an accepted zone is rejected: {e:?}\n{json}"),
    }
    let mut skel = zone.clone();
    let mut m = Marks::default();
    m.mark(&mut skel.name);
    m.mark_settings(&mut skel.network);
    m.mark_settings(&mut skel.netdev);
    let fixed = nixos_nspawn_core::addressing::ZoneAssignment::Static(
        nixos_nspawn_core::addressing::ZoneNet {
            ipv4: "10.112.16.0/20".parse().unwrap(),
            ipv6: Some("fd00:1:2:8001::/64".parse().unwrap()),
        },
    );
    for declared in [true, false] {
        for a in [&nixos_nspawn_core::addressing::ZoneAssignment::Pool, &fixed] {
            let real = render::zone_files(zone, declared, a)
                .unwrap_or_else(|e| panic!("accepted zone does not render: {e}\n{json}"));
            let expected = render::zone_files(&skel, declared, a).expect("skeleton renders");
            compare_files(&real, &expected, &m.originals);
        }
    }
    let mut reg = Registry::default();
    reg.zones.insert(zone.name.clone(), zone.clone());
    let rendered = render::render_registry(&reg, &Context::default());
    assert!(rendered.errors.is_empty(), "{:?}", rendered.errors);
}

// ---------------------------------------------------------------- settings

/// Parse a settings value; accepted settings round-trip through JSON and
/// render; errors name a field below `path` in one bounded line.
pub fn check_settings_json(v: &Value, path: &str) -> Option<Settings> {
    match Settings::from_json(v, path) {
        Ok(s) => {
            let back = serde_json::to_value(&s).unwrap();
            assert_eq!(
                Settings::from_json(&back, path).as_ref(),
                Ok(&s),
                "settings JSON round trip: {back}"
            );
            Some(s)
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for (field, message) in &errors {
                assert!(field.starts_with(path), "{field:?} not below {path:?}");
                // As the registry reports it.
                let line = EntryError::field(Path::new("/x.json"), field, message).to_string();
                assert!(line.len() <= MAX_ERROR_LEN, "error is {} bytes", line.len());
                if let Some(c) = line.chars().find(|c| unsafe_in_log(*c)) {
                    panic!("settings error contains {c:?}: {line:?}");
                }
            }
            None
        }
    }
}

/// A straightforward model of the documented merge: a section object merges
/// key by key into the first section of that name (a value replaces, `null`
/// removes, a list is one line per element, new keys and sections are
/// appended); a list of objects appends repeated sections; sections whose
/// keys are all removed are not written.
fn model(defaults: &Settings, over: &Settings, accumulating: &[(&str, &str)]) -> Parsed {
    type Sec = (String, bool, Vec<(String, Option<Vec<String>>)>);
    let conv = |vals: &Option<Vec<Scalar>>| {
        vals.as_ref()
            .map(|v| v.iter().map(Scalar::to_unit_string).collect::<Vec<_>>())
    };
    let mut secs: Vec<Sec> = Vec::new();
    let add = |secs: &mut Vec<Sec>, name: &str, body: &SectionBody, merge: bool| match body {
        SectionBody::Single(entries) => {
            let idx = if merge {
                secs.iter().position(|(n, single, _)| n == name && *single)
            } else {
                None
            };
            let idx = idx.unwrap_or_else(|| {
                secs.push((name.to_owned(), true, Vec::new()));
                secs.len() - 1
            });
            for (k, v) in entries {
                let v = conv(v);
                let keys = &mut secs[idx].2;
                let accumulates = merge
                    && accumulating
                        .iter()
                        .any(|(s, kk)| *s == name && *kk == k.as_str());
                match keys.iter_mut().find(|(kk, _)| kk == k) {
                    // An accumulating key adds to the defaults, unless its
                    // first value is "" (then it replaces them).
                    Some((_, Some(old))) if accumulates && v.is_some() => {
                        let new = v.unwrap();
                        if new.first().is_some_and(|f| f.is_empty()) {
                            *old = new[1..].to_vec();
                        } else {
                            old.extend(new);
                        }
                    }
                    Some(slot) => slot.1 = v,
                    None => keys.push((k.clone(), v)),
                }
            }
        }
        SectionBody::Repeated(list) => {
            for entries in list {
                let keys = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), conv(&Some(v.clone()))))
                    .collect();
                secs.push((name.to_owned(), false, keys));
            }
        }
    };
    for (name, body) in &defaults.sections {
        // Defaults are taken as they are (no merging among themselves).
        add(&mut secs, name, body, false);
    }
    for (name, body) in &over.sections {
        add(&mut secs, name, body, true);
    }
    secs.into_iter()
        .filter(|(_, single, keys)| !*single || keys.iter().any(|(_, v)| v.is_some()))
        .map(|(name, _, keys)| {
            let lines = keys
                .into_iter()
                .flat_map(|(k, v)| {
                    v.unwrap_or_default()
                        .into_iter()
                        .map(move |v| (k.clone(), v))
                })
                .collect();
            (name, lines)
        })
        .collect()
}

pub fn check_merge(defaults: &Settings, over: &Settings) {
    let merged = defaults.merged(Some(over));
    assert_eq!(&defaults.merged(None), defaults);
    // Keys set in `over` win; `null` removes.
    for (name, body) in &over.sections {
        if let SectionBody::Single(entries) = body {
            for (k, v) in entries {
                if defaults
                    .sections
                    .iter()
                    .filter(|(n, b)| n == name && matches!(b, SectionBody::Single(_)))
                    .count()
                    <= 1
                {
                    assert_eq!(merged.get(name, k), v.as_deref(), "[{name}] {k}");
                }
            }
        }
    }
    // The appending merge of extraNspawn, with nspawn's accumulating keys
    // and some the generator produces often.
    let mut accumulating: Vec<(&str, &str)> = render::NSPAWN_ACCUMULATING.to_vec();
    accumulating.extend([("Network", "Address"), ("Service", "ExecStartPre")]);
    let appended = defaults.merged_appending(Some(over), &accumulating);
    assert_eq!(&defaults.merged_appending(None, &accumulating), defaults);
    for (settings, acc) in [(&merged, &[][..]), (&appended, &accumulating[..])] {
        for dialect in [Dialect::Plain, Dialect::Unit] {
            let mut f = unit::IniFile::new(dialect);
            f.comment("generated by the fuzzer").unwrap();
            settings
                .write_to(&mut f)
                .unwrap_or_else(|e| panic!("accepted settings do not render: {e}"));
            let text = f.render();
            let parsed = unit::parse(&text, dialect)
                .unwrap_or_else(|e| panic!("rendered settings do not parse: {e}\n{text}"));
            assert_eq!(
                parsed,
                model(defaults, over, acc),
                "merge differs from the model (accumulating {acc:?}):\n{text}"
            );
        }
    }
}
