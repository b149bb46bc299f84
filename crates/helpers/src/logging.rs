//! Where the helpers' messages go: [`nixos_nspawn_core::logging`] — the journal
//! under systemd (`ExecStartPre=`, `ExecReload=`), `IDENT: warning: text` on
//! stderr when run by hand.

/// Install the logger for a helper named `ident` working for container
/// `name` (its records name `systemd-nspawn@NAME.service`, so `journalctl -u`
/// shows them even when the helper exited before journald looked it up).
/// Never fails: without the journal, stderr is used.
pub fn init(ident: &'static str, name: &str) {
    nixos_nspawn_core::logging::init_for_unit(
        ident,
        true,
        false,
        Some(nixos_nspawn_core::paths::unit_name(name)),
    );
}

/// Log an error with its whole chain (`a: b: c`), one line.
pub fn error_chain(e: &anyhow::Error) {
    log::error!("{e:#}");
}
