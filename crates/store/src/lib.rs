//! The metadata database: SQLite (the embedded default) or MySQL/MariaDB, chosen by URL. The
//! only crate that writes SQL. One set of portable statements runs on both through sqlx's `Any`
//! driver (both use `?` placeholders); migrations are per backend (`migrations/sqlite`,
//! `migrations/mysql`), applied at start and by `mtls-gateway migrate`.
//!
//! Times are Unix seconds; booleans are 0/1 integers; ids are random positive integers below
//! 2^53 (exact in JSON numbers for JavaScript clients, and still not guessable).

mod app_keys;
mod audit;
mod certificates;
mod expiry;
mod mappings;
mod sealed;

use std::fmt;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use app_keys::AppKeyRow;
pub use audit::AuditEntry;
pub use certificates::{
    CertificateRow, NewCertificate, NewRenewal, NewRequest, RenewalDetail, RenewalRow, Replacement,
    SecretState,
};
pub use mappings::{GLOBAL, MappingFields, MappingRow, MappingWrite, OverCap, RouteRow};

/// Which database the URL chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` or `mysql://user:password@host:port/database`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// A database failure; the message never holds the URL's password.
#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or failed the statement.
    Unavailable(String),
    /// A unique constraint refused the write (a name already in use).
    Conflict,
    /// The URL names no supported database.
    Configuration(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(detail) => write!(f, "database unavailable: {detail}"),
            StoreError::Conflict => f.write_str("a unique constraint refused the write"),
            StoreError::Configuration(detail) => write!(f, "database configuration: {detail}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(database) = &error
            && database.is_unique_violation()
        {
            return StoreError::Conflict;
        }
        // sqlx errors name the statement's problem, not the connection string.
        StoreError::Unavailable(error.to_string())
    }
}

/// The metadata store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating the SQLite file when missing). Does not migrate.
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url) = if let Some(rest) = options.url.strip_prefix("sqlite://") {
            let separator = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                options.url.clone()
            } else {
                format!("{}{separator}mode=rwc", options.url)
            };
            private_sqlite_file(rest)?;
            (Backend::Sqlite, url)
        } else if options.url.starts_with("mysql://") || options.url.starts_with("mariadb://") {
            (
                Backend::MySql,
                options.url.replacen("mariadb://", "mysql://", 1),
            )
        } else {
            return Err(StoreError::Configuration(
                "database.url must start with sqlite:// or mysql://".to_owned(),
            ));
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { options.max_connections.min(8) } else { options.max_connections })
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        connection.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|error| StoreError::Unavailable(redact(&error.to_string(), &options.url)))?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations of this backend that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::MySql => sqlx::migrate!("./migrations/mysql"),
        };
        let failed = |error: &dyn std::fmt::Display| StoreError::Unavailable(error.to_string());
        if self.backend == Backend::Sqlite {
            return migrator
                .run(&self.pool)
                .await
                .map_err(|error| failed(&error));
        }
        // Nodes starting together on an empty MySQL database take turns: one migrates, the
        // others wait on this named lock, then find nothing left to do.
        let mut connection = self.pool.acquire().await.map_err(|error| failed(&error))?;
        sqlx::query("SELECT GET_LOCK('mtls_gateway_migrations', 300)")
            .execute(&mut *connection)
            .await
            .map_err(|error| failed(&error))?;
        let result = migrator.run_direct(None, &mut *connection, false).await;
        let _ = sqlx::query("SELECT RELEASE_LOCK('mtls_gateway_migrations')")
            .execute(&mut *connection)
            .await;
        result.map_err(|error| failed(&error))
    }

    /// A round trip to the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        mtls_metrics::timed("database", "ping", async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Removes the URL's password from a message that might quote the URL.
/// Creates the SQLite file of `path` (the URL after `sqlite://`) with mode 0600 before SQLite
/// does (it would use 0644 under the usual umask), and takes group and others' access away from
/// an existing one and its `-wal` and `-shm` files. SQLite gives the WAL and shared-memory
/// files the main file's mode, so they are 0600 too. In-memory databases are left alone.
fn private_sqlite_file(path: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if path.is_empty() || path.starts_with(':') || query.contains("mode=memory") {
        return Ok(());
    }
    let failed = |error: std::io::Error| {
        StoreError::Configuration(format!("cannot create the SQLite file {path}: {error}"))
    };
    if !query.contains("mode=ro") {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(failed(error)),
        }
    }
    for file in [
        path.to_owned(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(failed)?;
            tracing::warn!(path = %file, "the database file was open to group or others; made it 0600");
        }
    }
    Ok(())
}

fn redact(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => message.replace(password, "<redacted>"),
        None => message.to_owned(),
    }
}

/// A random id in `1..2^53`.
pub fn new_id() -> Result<i64, StoreError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|error| StoreError::Unavailable(format!("no randomness: {error}")))?;
    let id = i64::from_be_bytes(bytes) & ((1_i64 << 53) - 1);
    Ok(if id == 0 { 1 } else { id })
}
