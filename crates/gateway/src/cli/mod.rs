//! The subcommands. They print to stdout by design.
#![allow(clippy::print_stdout)]

pub(crate) mod app_key;
pub(crate) mod cert;
pub(crate) mod migrate;
pub(crate) mod p12;
pub(crate) mod serve;
pub(crate) mod token;
