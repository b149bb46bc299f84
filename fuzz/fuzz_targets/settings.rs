#![no_main]
//! See `nixos_nspawn_fuzz::props::settings`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nixos_nspawn_fuzz::props::settings(data));
