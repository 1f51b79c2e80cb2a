//! The mtls-gateway binary's library half: configuration, data directory, start-up wiring and
//! telemetry, so that tests can start the real application in-process on port 0.

pub mod backends;
pub mod config;
pub mod data_dir;
pub mod expiry;
pub mod listen;
mod renewal;
pub mod server;
pub mod telemetry;
pub mod tls;
