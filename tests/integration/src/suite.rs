//! The runner: test hosts per test, PASS/FAIL with durations, diagnostics on
//! failure.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::fixtures::Fixtures;
use crate::host::{HostOpts, TestHost};

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

pub struct Suite {
    /// Private copies of the built binaries, bound into every test host.
    pub bin_dir: PathBuf,
    pub fx: Fixtures,
    pub keep: bool,
    seq: Cell<u32>,
    /// Measurements printed in the summary.
    pub metrics: RefCell<Vec<String>>,
    /// The current test's hosts, kept for diagnostics until the test ends.
    hosts: RefCell<Vec<Rc<TestHost>>>,
}

impl Suite {
    pub fn new(bin_dir: PathBuf, fx: Fixtures, keep: bool) -> Suite {
        Suite {
            bin_dir,
            fx,
            keep,
            seq: Cell::new(0),
            metrics: RefCell::new(Vec::new()),
            hosts: RefCell::new(Vec::new()),
        }
    }

    /// Boot a fresh test host for the current test.
    pub fn host(&self, label: &str, opts: HostOpts) -> Result<Rc<TestHost>> {
        self.seq.set(self.seq.get() + 1);
        let mut machine = format!("it{}-{}-{label}", std::process::id(), self.seq.get());
        machine.truncate(60);
        let machine = machine.trim_end_matches('-').to_string();
        let h = Rc::new(TestHost::boot(&machine, &self.bin_dir, &opts, self.keep)?);
        println!(
            "    test host {} booted in {:.1} s (nspawn PID {}, systemd PID {})",
            h.machine,
            h.boot_time.as_secs_f64(),
            h.nspawn_pid,
            h.leader
        );
        self.hosts.borrow_mut().push(h.clone());
        Ok(h)
    }

    pub fn metric(&self, m: String) {
        println!("    {m}");
        self.metrics.borrow_mut().push(m);
    }

    /// Run the tests; returns (passed, failed, skipped).
    pub fn run(&self, tests: &[&Test]) -> (usize, usize, usize) {
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        let mut results: Vec<(String, &str, Duration)> = Vec::new();
        for t in tests {
            println!("RUN  {} — {}", t.name, t.about);
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
            println!("{verdict} {} ({:.1} s)", t.name, d.as_secs_f64());
            match verdict {
                "PASS" => passed += 1,
                "SKIP" => skipped += 1,
                _ => failed += 1,
            }
            results.push((t.name.to_string(), verdict, d));
        }
        println!();
        println!("Summary:");
        for (name, v, d) in &results {
            println!("  {v} {name:<28} {:>6.1} s", d.as_secs_f64());
        }
        for m in self.metrics.borrow().iter() {
            println!("  {m}");
        }
        (passed, failed, skipped)
    }
}
