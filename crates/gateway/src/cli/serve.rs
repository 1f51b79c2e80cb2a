//! `mtls-gateway serve`.

use std::process::ExitCode;

use mtls_gateway::config::Config;
use mtls_gateway::{server, telemetry};

pub(crate) fn run(config: &Config) -> ExitCode {
    telemetry::init(&config.log);
    // This runtime runs start-up, the background tasks and the database and secret store
    // connections; connections are served by the worker threads (`listen`), each on its own.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let running = match server::start(config).await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        };
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "server failed");
                ExitCode::from(1)
            }
        }
    })
}
