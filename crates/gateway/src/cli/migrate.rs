//! `mtls-gateway migrate`: applies the database migrations (also done at every start).

use std::process::ExitCode;

use mtls_gateway::backends;
use mtls_gateway::config::Config;
use mtls_store::Store;

pub(crate) fn run(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
        if let Err(error) = mtls_gateway::data_dir::ensure(&config.data_dir) {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
        let store = match Store::connect(&backends::store_options(config)).await {
            Ok(store) => store,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        };
        match store.migrate().await {
            Ok(()) => {
                println!("migrations applied ({:?})", store.backend());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(1)
            }
        }
    })
}
