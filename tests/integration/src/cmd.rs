//! Running commands with a deadline and captured output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rustix::process::{kill_process_group, Pid, Signal};

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit status; `None` when killed by a signal (or by the deadline).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub argv: Vec<String>,
    pub elapsed: Duration,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The command line, for messages.
    pub fn cmdline(&self) -> String {
        shell_words(&self.argv)
    }

    /// `Ok(stdout)` when it exited 0, else an error quoting the command and its output.
    pub fn ok(self) -> Result<String> {
        if self.success() {
            return Ok(self.stdout);
        }
        bail!("{}", self.describe_failure())
    }

    pub fn describe_failure(&self) -> String {
        let how = if self.timed_out {
            format!("timed out after {:.1} s", self.elapsed.as_secs_f64())
        } else {
            match self.code {
                Some(c) => format!("exited {c}"),
                None => "was killed by a signal".into(),
            }
        };
        let mut s = format!("`{}` {how}", self.cmdline());
        for (label, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let t = text.trim_end();
            if !t.is_empty() {
                s.push_str(&format!("\n  {label}: {}", indent(&tail(t, 40), "    ")));
            }
        }
        s
    }
}

pub fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("[… {skip} lines]\n"));
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

pub fn shell_words<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref();
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `argv` (in its own process group, stdin from /dev/null) and wait at most
/// `timeout`; on the deadline the whole process group is killed.
pub fn run<S: AsRef<str>>(argv: &[S], timeout: Duration) -> Result<Out> {
    run_env(argv, &[], timeout)
}

pub fn run_env<S: AsRef<str>>(argv: &[S], env: &[(&str, &str)], timeout: Duration) -> Result<Out> {
    let argv: Vec<String> = argv.iter().map(|a| a.as_ref().to_string()).collect();
    let (prog, args) = argv.split_first().context("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("SYSTEMD_PAGER", "cat")
        .env("SYSTEMD_COLORS", "0")
        .env("LC_ALL", "C.UTF-8")
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{}`", shell_words(&argv)))?;
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let pgid = Pid::from_child(&child);
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = kill_process_group(pgid, Signal::Kill);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A grandchild that escaped the group could keep the pipes open; do not
    // wait for it forever.
    let stdout = join_with_deadline(t_out, Duration::from_secs(5));
    let stderr = join_with_deadline(t_err, Duration::from_secs(5));
    Ok(Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
        argv,
        elapsed: start.elapsed(),
    })
}

fn join_with_deadline(h: std::thread::JoinHandle<Vec<u8>>, d: Duration) -> Vec<u8> {
    let start = Instant::now();
    while !h.is_finished() {
        if start.elapsed() > d {
            return b"[output still open after the command exited; not waited for]".to_vec();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().unwrap_or_default()
}

/// Poll `f` every `every` until it returns `Ok(Some(v))` or `timeout` passes;
/// the error names `what` and the last observation (`Ok(None)` carries none,
/// `Err` carries its message).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last: Option<String> = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(format!("{e:#}")),
        }
        if start.elapsed() > timeout {
            match last {
                Some(l) => bail!(
                    "timed out after {:.1} s waiting for {what}; last error: {l}",
                    timeout.as_secs_f64()
                ),
                None => bail!(
                    "timed out after {:.1} s waiting for {what}",
                    timeout.as_secs_f64()
                ),
            }
        }
        std::thread::sleep(every);
    }
}
