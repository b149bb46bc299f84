//! Fuzzing support for nixos-nspawn: input decoding ([`gen`]) and the
//! properties every target checks ([`props`]). Both files are also compiled
//! into `crates/core/tests/fuzz_regressions.rs`, which replays the corpus.

pub mod gen;
pub mod props;
