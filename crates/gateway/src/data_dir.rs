//! The data directory and what the gateway generates in it on first start: created with mode
//! 0700; secret files are created with mode 0600, atomically, and refused when group or others
//! can read them.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::config::ConfigError;

/// The HS256 signing secret's file name inside the data directory.
pub const SIGNING_KEY_FILE: &str = "token-signing.key";

/// Creates `dir` (mode 0700) when it does not exist; warns when an existing one is open to others.
pub fn ensure(dir: &Path) -> Result<(), ConfigError> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| {
                ConfigError(format!(
                    "cannot create data directory {}: {error}",
                    dir.display()
                ))
            })?;
        tracing::info!(path = %dir.display(), "created data directory");
        return Ok(());
    }
    let mode = fs::metadata(dir)
        .map_err(|error| {
            ConfigError(format!(
                "cannot read data directory {}: {error}",
                dir.display()
            ))
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory is accessible to group or others; chmod 700 it");
    }
    Ok(())
}

/// Reads the secret in `dir/name`, generating 32 random bytes (as 64 hex characters) with mode
/// 0600 when the file does not exist.
pub fn secret_file(dir: &Path, name: &str) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let path = dir.join(name);
    if !path.exists() {
        generate(&path)?;
    }
    read_secret(&path)
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    let metadata = fs::metadata(path)
        .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))?;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError(format!(
            "{} is readable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let bytes = Zeroizing::new(
        fs::read(path)
            .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))?,
    );
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(ConfigError(format!("{} is empty", path.display())));
    }
    Ok(Zeroizing::new(trimmed.to_vec()))
}

/// Writes a fresh random secret to a temporary file and links it into place, so that two
/// processes starting at once agree on one secret and nobody reads a half-written file.
fn generate(path: &Path) -> Result<(), ConfigError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    random(raw.as_mut())?;
    let mut text = Zeroizing::new(String::with_capacity(65));
    for byte in raw.iter() {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\n');
    let temporary: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        match fs::hard_link(&temporary, path) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(error),
            _ => Ok(()),
        }
    })();
    let _ = fs::remove_file(&temporary);
    result.map_err(|error| ConfigError(format!("cannot create {}: {error}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new secret file");
    Ok(())
}

/// Fills `buffer` from the operating system's random source.
pub fn random(buffer: &mut [u8]) -> Result<(), ConfigError> {
    getrandom::fill(buffer).map_err(|error| ConfigError(format!("no randomness: {error}")))
}
