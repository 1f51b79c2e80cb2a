//! The subcommands. They print to stdout by design.
#![allow(clippy::print_stdout)]

pub mod app_key;
pub mod cert;
pub mod migrate;
pub mod p12;
pub mod serve;
pub mod token;
