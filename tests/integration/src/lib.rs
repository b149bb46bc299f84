//! The suite's machinery (test hosts, fixtures, the guardian that cleans up
//! after a killed run) as a library, for the benchmarks in `bench/` that boot
//! test hosts (`bench-boot`, `bench-start`, `bench-cli --running`). The suite
//! binary compiles the same modules itself.

pub mod cmd;
pub mod debian;
pub mod fixtures;
pub mod guard;
pub mod host;
pub mod suite;
pub mod watch;
