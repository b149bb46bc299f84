fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(nixos_nspawn_cli::main_with_args(&args));
}
