//! A command's one printable result and the one place it is rendered: the
//! value as pretty JSON with `--json`, else its text.

use anyhow::Result;
use serde::Serialize;

use crate::Ctx;

/// What a command prints on stdout (data; messages go to stderr).
pub trait Printable: Serialize {
    /// The text form, without the final line break; empty: nothing.
    fn text(&self) -> String;
}

impl Ctx<'_> {
    /// Print `result`: JSON with `json`, else its text.
    pub fn print(&mut self, json: bool, result: &impl Printable) -> Result<()> {
        if json {
            return self.json(result);
        }
        let text = result.text();
        if !text.is_empty() {
            self.println(text)?;
        }
        Ok(())
    }

    /// A plan shown before it is carried out (`apply`): its text now, unless
    /// `json`; [`Ctx::outcome`] prints the JSON, with the outcome, after.
    pub fn preview(&mut self, json: bool, plan: &impl Printable) -> Result<()> {
        if json {
            return Ok(());
        }
        self.print(false, plan)?;
        self.flush()
    }

    /// The carried-out plan of a [`Ctx::preview`]: JSON with `json` (its
    /// text was shown already).
    pub fn outcome(&mut self, json: bool, done: &impl Printable) -> Result<()> {
        if json {
            self.json(done)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;

    #[derive(Serialize)]
    struct Two {
        a: u32,
        b: &'static str,
    }

    impl Printable for Two {
        fn text(&self) -> String {
            if self.a == 0 {
                return String::new();
            }
            format!("{}: {}\nsecond line", self.a, self.b)
        }
    }

    #[test]
    fn json_or_text_one_line_break_at_the_end() {
        let mut env = Env::new();
        let two = Two { a: 1, b: "x" };
        env.ctx().print(false, &two).unwrap();
        assert_eq!(env.output(), "1: x\nsecond line\n");
        env.ctx().print(true, &two).unwrap();
        assert_eq!(env.output(), "{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n");
        env.ctx().print(false, &Two { a: 0, b: "" }).unwrap();
        assert_eq!(env.output(), "", "empty text prints nothing");
        for json in [false, true] {
            let mut ctx = env.ctx();
            ctx.preview(json, &two).unwrap();
            ctx.outcome(json, &two).unwrap();
            drop(ctx);
            let want = if json {
                "{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n"
            } else {
                "1: x\nsecond line\n"
            };
            assert_eq!(env.output(), want, "once, json: {json}");
        }
    }
}
