//! The one transaction type for the CLI's state changes (create, update,
//! rollback, import-classic): steps are done in order, each records its undo,
//! and when a later step fails the undos run in reverse order. The failure
//! and every undo that failed are both reported.
//!
//! The commands keep one order of steps: the profile, the state directory,
//! the registry entry (under the registry lock; the generator sees an entry
//! only once its system is a profile generation), daemon-reload, start.

use anyhow::Result;

use crate::Ctx;

type UndoFn<'a> = Box<dyn FnOnce(&Ctx) -> Result<()> + 'a>;

/// Steps done so far, with their undos.
#[derive(Default)]
pub struct Transaction<'a> {
    undo: Vec<(String, UndoFn<'a>)>,
}

/// A failed transaction: the step's error and what undoing left behind.
#[derive(Debug)]
pub struct Failed {
    pub error: anyhow::Error,
    /// `"WHAT: ERROR"` for every undo that failed, in the order they ran.
    pub undo_problems: Vec<String>,
}

impl Failed {
    /// The error with a summary of the rollback, `"{head}; {done}"` when
    /// everything was undone, else `"{head}; {left}: P1; P2"`.
    pub fn report(self, head: &str, done: &str, left: &str) -> anyhow::Error {
        let what = if self.undo_problems.is_empty() {
            done.to_owned()
        } else {
            format!("{left}: {}", self.undo_problems.join("; "))
        };
        self.error.context(format!("{head}; {what}"))
    }
}

impl<'a> Transaction<'a> {
    pub fn new() -> Transaction<'a> {
        Transaction::default()
    }

    /// A step was done: record its undo (`what` names it in a report:
    /// "restoring its profile"). A step that may leave something behind
    /// when it fails half-way (a start, a copy) records its undo first.
    pub fn done(&mut self, what: &str, undo: impl FnOnce(&Ctx) -> Result<()> + 'a) {
        self.undo.push((what.to_owned(), Box::new(undo)));
    }

    /// Undo every step done, last first; returns what could not be undone.
    pub fn rollback(&mut self, ctx: &Ctx) -> Vec<String> {
        let mut problems = Vec::new();
        while let Some((what, undo)) = self.undo.pop() {
            if let Err(e) = undo(ctx) {
                problems.push(format!("{what}: {e:#}"));
            }
        }
        problems
    }

    /// `result` (of the steps done since the last `finish`) kept, or, when
    /// it is an error, every step undone and both reported. The steps done
    /// so far stay recorded on success: a later failure undoes them too.
    pub fn finish<T>(&mut self, ctx: &Ctx, result: Result<T>) -> Result<T, Failed> {
        result.map_err(|error| Failed {
            error,
            undo_problems: self.rollback(ctx),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use std::cell::RefCell;

    /// Steps 0..N, step `fail_at` failing (odd steps record their undo
    /// first, so it runs even when they fail), undo `undo_fails` failing.
    fn run(n: usize, fail_at: Option<usize>, undo_fails: Option<usize>) -> (Vec<String>, String) {
        let mut env = Env::new();
        let ctx = env.ctx();
        let log = RefCell::new(Vec::new());
        let mut tx = Transaction::new();
        let result = (|| -> Result<()> {
            for i in 0..n {
                let log = &log;
                let step = move |_: &Ctx| -> Result<()> {
                    log.borrow_mut().push(format!("do {i}"));
                    if fail_at == Some(i) {
                        anyhow::bail!("step {i} failed");
                    }
                    Ok(())
                };
                let undo = move |_: &Ctx| -> Result<()> {
                    log.borrow_mut().push(format!("undo {i}"));
                    if undo_fails == Some(i) {
                        anyhow::bail!("undo {i} failed");
                    }
                    Ok(())
                };
                let what = format!("undoing {i}");
                if i % 2 == 1 {
                    tx.done(&what, undo);
                    step(&ctx)?;
                } else {
                    step(&ctx)?;
                    tx.done(&what, undo);
                }
            }
            Ok(())
        })();
        let report = match tx.finish(&ctx, result) {
            Ok(()) => String::new(),
            Err(f) => format!("{:#}", f.report("it failed", "all undone", "undo left")),
        };
        drop(tx);
        (log.into_inner(), report)
    }

    #[test]
    fn a_failure_at_every_step_undoes_the_steps_before_in_reverse() {
        let n = 4;
        let (log, report) = run(n, None, None);
        assert_eq!(log, ["do 0", "do 1", "do 2", "do 3"]);
        assert_eq!(report, "", "committed: nothing undone");
        for k in 0..n {
            let (log, report) = run(n, Some(k), None);
            let mut want: Vec<String> = (0..=k).map(|i| format!("do {i}")).collect();
            // A failed odd step is undone too (its undo came first); an even one is not.
            let last_undone = if k % 2 == 1 {
                Some(k)
            } else {
                k.checked_sub(1)
            };
            if let Some(top) = last_undone {
                want.extend((0..=top).rev().map(|i| format!("undo {i}")));
            }
            assert_eq!(log, want, "failing at {k}");
            assert_eq!(report, format!("it failed; all undone: step {k} failed"));
        }
    }

    #[test]
    fn a_failed_undo_is_reported_with_the_failure_and_the_others_still_run() {
        let n = 4;
        for k in 1..n {
            for u in 0..k {
                let (log, report) = run(n, Some(k), Some(u));
                let undone: Vec<&String> = log.iter().filter(|l| l.starts_with("undo")).collect();
                let top = if k % 2 == 1 { k } else { k - 1 };
                assert_eq!(undone.len(), top + 1, "failing at {k}, undo {u}: {log:?}");
                assert_eq!(
                    report,
                    format!("it failed; undo left: undoing {u}: undo {u} failed: step {k} failed"),
                    "failing at {k}, undo {u}"
                );
            }
        }
    }
}
