//! Where the CLI's messages go. Data (lists, plans, JSON) goes to stdout;
//! progress, warnings and errors are log records, sent as
//! [`nixos_nspawn_core::logging`] says: the journal when run by systemd (the apply
//! unit), plain `warning: …` lines on stderr when run by a person. `-v` shows
//! debug records.

pub use nixos_nspawn_core::logging::to_journal;

/// Install the logger (once; later calls do nothing).
pub fn init(verbose: bool) {
    nixos_nspawn_core::logging::init("nixos-nspawn", false, verbose);
}

/// Print an error as a chain: `error: top` then `  caused by: …` per cause.
/// A cause whose text an earlier line already contains (a message that
/// quotes its cause) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut lines = vec![e.to_string()];
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if cause.trim().is_empty() || lines.iter().any(|l| l.contains(cause.trim())) {
            continue;
        }
        lines.push(cause);
    }
    let mut text = format!("error: {}", lines[0]);
    for cause in &lines[1..] {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain() {
        let e = anyhow::anyhow!("disk full")
            .context("writing web.json")
            .context("creating web");
        assert_eq!(
            error_text(&e),
            "error: creating web\n  caused by: writing web.json\n  caused by: disk full"
        );
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let e = anyhow::anyhow!("systemctl start x failed (exit status: 1)")
            .context("starting web failed: systemctl start x failed (exit status: 1)")
            .context("creating web failed; everything was rolled back");
        assert_eq!(
            error_text(&e),
            "error: creating web failed; everything was rolled back\n  caused by: starting web failed: systemctl start x failed (exit status: 1)"
        );
        let e = anyhow::anyhow!("disk full").context("disk full");
        assert_eq!(error_text(&e), "error: disk full");
    }
}
