//! Where the helpers' messages go: [`nixos_nspawn::logging`] — the journal
//! under systemd (`ExecStartPre=`, `ExecReload=`), `IDENT: warning: text` on
//! stderr when run by hand.

/// Install the logger for a helper named `ident`. Never fails: without the
/// journal, stderr is used.
pub fn init(ident: &'static str) {
    nixos_nspawn::logging::init(ident, true, false);
}

/// Log an error with its whole chain (`a: b: c`), one line.
pub fn error_chain(e: &anyhow::Error) {
    log::error!("{e:#}");
}
