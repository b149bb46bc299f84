//! Where the CLI's messages go. Data (lists, plans, JSON) goes to stdout;
//! progress, warnings and errors are log records, sent as
//! [`nixos_nspawn::logging`] says: the journal when run by systemd (the apply
//! unit), plain `warning: …` lines on stderr when run by a person. `-v` shows
//! debug records.

pub use nixos_nspawn::logging::to_journal;

/// Install the logger (once; later calls do nothing).
pub fn init(verbose: bool) {
    nixos_nspawn::logging::init("nixos-nspawn", false, verbose);
}

/// Print an error as a chain: `error: top` then `  caused by: …` per cause.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = format!("error: {e}");
    for cause in e.chain().skip(1) {
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
}
