//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it finds,
//! and cargo does not otherwise notice a new file in `migrations/` (a build would then run
//! without it, silently).

#[allow(clippy::print_stdout)] // the build script's one way to talk to cargo
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
