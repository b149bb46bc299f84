//! Replays the fuzzers' crash reproducers (`fuzz/artifacts-regressions/TARGET/`)
//! and their committed seed corpus (`fuzz/corpus/TARGET/`, a small spread of
//! the minimised corpus; the fuzzers regenerate the rest) through exactly the
//! properties the fuzz targets check (`fuzz/src/props.rs`, compiled in here),
//! so a fixed bug stays fixed in a plain `cargo test` without cargo-fuzz or a
//! nightly toolchain.

#[path = "../../../fuzz/src/gen.rs"]
#[allow(dead_code)]
mod gen;
#[path = "../../../fuzz/src/props.rs"]
#[allow(dead_code)]
mod props;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tests swap the panic hook; one at a time.
static HOOK: Mutex<()> = Mutex::new(());

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("entry_bytes", props::entry_bytes),
    ("entry_structured", props::entry_structured),
    ("zone", props::zone),
    ("settings", props::settings),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(r) => r
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn replay(sub: &str) -> usize {
    // Keep the output readable: one line per failing input, not a backtrace each.
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut n = 0;
    for (target, check) in TARGETS {
        for file in files(&fuzz_dir().join(sub).join(target)) {
            let data = std::fs::read(&file).unwrap();
            n += 1;
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let short: String = msg.chars().take(2000).collect();
                failures.push(format!("{target}: {}: {short}", file.display()));
            }
        }
    }
    std::panic::set_hook(hook);
    assert!(
        failures.is_empty(),
        "{} of {n} inputs fail:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    n
}

#[test]
fn crash_reproducers_stay_fixed() {
    let n = replay("artifacts-regressions");
    assert!(
        n > 0,
        "no reproducers found under fuzz/artifacts-regressions"
    );
}

#[test]
fn seed_corpus_holds() {
    let n = replay("corpus");
    assert!(n > 0, "no corpus found under fuzz/corpus");
}

/// The properties themselves catch what they should (a property that
/// accepts everything would make the fuzzing figures meaningless).
#[test]
fn properties_are_not_vacuous() {
    use nixos_nspawn_core::render::{Contents, Dest, OutputFile};
    let file = |text: &str| OutputFile {
        dest: Dest::Generator("x.conf".into()),
        contents: Contents::File(format!("{}x\n{text}", nixos_nspawn_core::HEADER_PREFIX)),
    };
    let originals = vec!["a\nb".to_string(), "100%".to_string()];
    let ok = |real: &str, skel: &str| {
        catch_unwind(|| props::compare_files(&[file(real)], &[file(skel)], &originals)).is_ok()
    };
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // A value written unescaped adds a specifier, a line or a section.
    let results = [
        ok("[Unit]\nDescription=100%%\n", "[Unit]\nDescription=ZQ1QZ\n"),
        ok("[Unit]\nDescription=100%\n", "[Unit]\nDescription=ZQ1QZ\n"),
        ok("[Unit]\nDescription=a\nb\n", "[Unit]\nDescription=ZQ0QZ\n"),
        ok(
            "[Unit]\nDescription=x\n[Service]\nExecStartPre=/bin/evil\n",
            "[Unit]\nDescription=ZQ1QZ\n",
        ),
        ok(
            "[Service]\nExecStart=/bin/x \"100%%\"\n",
            "[Service]\nExecStart=/bin/x ZQ1QZ\n",
        ),
        ok(
            "[Service]\nExecStart=/bin/x 100%% y\n",
            "[Service]\nExecStart=/bin/x ZQ1QZ\n",
        ),
    ];
    std::panic::set_hook(hook);
    assert_eq!(results, [true, false, false, false, true, false]);
}
