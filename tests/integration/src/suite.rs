//! The runner: test hosts per test, PASS/FAIL with durations, diagnostics on
//! failure.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::fixtures::Fixtures;
use crate::host::{HostOpts, TestHost};
use serde_json::Value;

pub enum Outcome {
    Pass,
    #[allow(dead_code)]
    Skip(String),
}

pub type TestFn = fn(&Suite) -> Result<Outcome>;

pub struct Test {
    pub name: &'static str,
    pub about: &'static str,
    pub f: TestFn,
}

/// The OS tree test hosts boot from, i.e. the systemd release under test.
#[derive(Clone, Debug)]
pub struct Os {
    /// `host` (this machine's `/usr`) or `debian13`, `debian12`.
    pub label: String,
    pub root: PathBuf,
    /// First line of `systemctl --version` in that tree; every test host must
    /// report it (so a run really tests the release it names).
    pub systemd_version: String,
}

impl Os {
    /// The major version ("252" of "systemd 252 (252.39-1~deb12u2)").
    #[allow(dead_code)]
    pub fn major(&self) -> u32 {
        self.systemd_version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

pub struct Suite {
    /// Private copies of the built binaries, bound into every test host.
    pub bin_dir: PathBuf,
    pub os: Os,
    pub fx: Fixtures,
    pub keep: bool,
    seq: Cell<u32>,
    /// Measurements printed in the summary.
    pub metrics: RefCell<Vec<String>>,
    /// The current test's hosts, kept for diagnostics until the test ends.
    hosts: RefCell<Vec<Rc<TestHost>>>,
}

impl Suite {
    pub fn new(bin_dir: PathBuf, os: Os, fx: Fixtures, keep: bool) -> Suite {
        Suite {
            bin_dir,
            os,
            fx,
            keep,
            seq: Cell::new(0),
            metrics: RefCell::new(Vec::new()),
            hosts: RefCell::new(Vec::new()),
        }
    }

    /// Boot a fresh test host with these registry entries and nothing else
    /// ([`Suite::host`] with `HostOpts { containers, ..Default::default() }`).
    pub fn host_with(&self, label: &str, containers: Vec<Value>) -> Result<Rc<TestHost>> {
        self.host(
            label,
            HostOpts {
                containers,
                ..Default::default()
            },
        )
    }

    /// Boot a fresh test host for the current test.
    pub fn host(&self, label: &str, opts: HostOpts) -> Result<Rc<TestHost>> {
        let h = self.host_on(label, &self.os.root.clone(), opts)?;
        if h.systemd_version != self.os.systemd_version {
            anyhow::bail!(
                "the test host {} runs {:?}, not {:?} of {}",
                h.machine,
                h.systemd_version,
                self.os.systemd_version,
                self.os.root.display()
            );
        }
        Ok(h)
    }

    /// Boot a fresh test host for the current test from another OS tree than
    /// the run's (the install test's clean Debian root).
    pub fn host_on(
        &self,
        label: &str,
        os_root: &std::path::Path,
        opts: HostOpts,
    ) -> Result<Rc<TestHost>> {
        self.seq.set(self.seq.get() + 1);
        let mut machine = format!("it{}-{}-{label}", std::process::id(), self.seq.get());
        machine.truncate(60);
        let machine = machine.trim_end_matches('-').to_string();
        let h = Rc::new(TestHost::boot(
            &machine,
            os_root,
            &self.bin_dir,
            &opts,
            self.keep,
        )?);
        println!(
            "    test host {} booted in {:.1} s (nspawn PID {}, systemd PID {}, {})",
            h.machine,
            h.boot_time.as_secs_f64(),
            h.nspawn_pid,
            h.leader,
            h.systemd_version
        );
        self.hosts.borrow_mut().push(h.clone());
        Ok(h)
    }

    /// The fixtures (their cache of built systems), for the next release's run.
    pub fn into_fixtures(self) -> Fixtures {
        self.hosts.borrow_mut().clear();
        self.fx
    }

    pub fn metric(&self, m: String) {
        println!("    {m}");
        self.metrics.borrow_mut().push(m);
    }

    /// Run the tests; returns (passed, failed, skipped) and one
    /// (name, verdict, duration) per test.
    pub fn run(
        &self,
        tests: &[&Test],
    ) -> (usize, usize, usize, Vec<(String, &'static str, Duration)>) {
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        let mut results: Vec<(String, &'static str, Duration)> = Vec::new();
        for t in tests {
            println!("RUN  {} [{}] — {}", t.name, self.os.label, t.about);
            let start = Instant::now();
            let res = (t.f)(self);
            let verdict = match &res {
                Ok(Outcome::Pass) => "PASS",
                Ok(Outcome::Skip(_)) => "SKIP",
                Err(_) => "FAIL",
            };
            match &res {
                Ok(Outcome::Skip(why)) => println!("    skipped: {why}"),
                Err(e) => {
                    println!(
                        "    error: {}",
                        crate::cmd::indent(&format!("{e:#}"), "      ")
                    );
                    for h in self.hosts.borrow().iter() {
                        println!("{}", h.diagnostics());
                    }
                }
                _ => {}
            }
            // Tear the hosts down (the test's own references are gone by now).
            self.hosts.borrow_mut().clear();
            let d = start.elapsed();
            println!(
                "{verdict} {} [{}] ({:.1} s)",
                t.name,
                self.os.label,
                d.as_secs_f64()
            );
            match verdict {
                "PASS" => passed += 1,
                "SKIP" => skipped += 1,
                _ => failed += 1,
            }
            results.push((t.name.to_string(), verdict, d));
        }
        println!();
        println!(
            "Summary [{}: {}, {}]:",
            self.os.label,
            self.os.systemd_version,
            self.os.root.display()
        );
        for (name, v, d) in &results {
            println!("  {v} {name:<28} {:>6.1} s", d.as_secs_f64());
        }
        for m in self.metrics.borrow().iter() {
            println!("  {m}");
        }
        (passed, failed, skipped, results)
    }
}
