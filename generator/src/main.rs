//! `nixos-nspawn-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`; see the library.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(nixos_nspawn_generator::main_with(&args));
}
