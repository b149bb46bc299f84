//! Classic NixOS containers (`nixos-container`, `containers.<name>`): their
//! `.conf` settings file ([`conf`]) and its conversion to a registry entry
//! ([`convert`]), as docs/migration.md's tables say. The one implementation of
//! that conversion; `import-classic` (crate::commands::classic) runs it.

pub mod conf;
pub mod convert;
mod flags;

#[cfg(test)]
mod tests;

pub use conf::Conf;
pub use convert::{convert, Converted};
