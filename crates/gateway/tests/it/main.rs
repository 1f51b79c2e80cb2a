//! The gateway's integration tests, one binary: the real application on port 0 (in-process),
//! and the real `mtls-gateway` binary for the command line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod audit;
mod auth;
mod ca;
mod certificates;
mod cli;
mod failures;
mod forward;
mod forward_resealed;
mod limits;
mod listener;
mod live;
mod mappings;
mod oauth;
mod observability;
mod openapi;
mod operations;
mod renewal;
mod requests;
mod storage;
mod support;
mod tester;
mod token;
mod tracing;
mod upstream;
