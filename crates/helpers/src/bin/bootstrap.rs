//! `nixos-nspawn-bootstrap NAME` (ExecStartPre=); see the library.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(nixos_nspawn_helpers::main_bootstrap(&args));
}
