#![no_main]
//! See `nixos_nspawn_fuzz::props::zone`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nixos_nspawn_fuzz::props::zone(data));
