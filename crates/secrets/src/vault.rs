//! HashiCorp Vault (or OpenBao) KV version 2. Each certificate version's secret lives at its
//! own path, `<mount>/data/<prefix>/accounts/<accountId>/certificates/<id>/versions/<version>`,
//! written with check-and-set 0 (only if the path does not exist), so a version is written once,
//! by the writer that claimed it. The legacy layout, one path per certificate
//! (`.../certificates/<id>`, rewritten in place on each replacement), is read as the current
//! version until the first replacement removes it. Removal deletes a path's metadata, which
//! destroys all its KV versions. A version's re-sealed identity lives at
//! `.../certificates/<id>/identities/<version>` (check-and-set 0, removed with its version).
//! Authentication by a token or by AppRole (role id + secret id), renewing the token before
//! it expires.
//!
//! Error messages carry the HTTP status and Vault's own error text, never a token, a path's
//! secret value or the request body.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{
    Claim, KeyMaterial, LEGACY_VERSION, MaterialRef, Secret, SecretError, SecretKey,
    SecretMaterial, Versions, WriteId, Written,
};

/// How the gateway proves itself to Vault.
pub enum VaultAuth {
    Token(Zeroizing<String>),
    AppRole {
        role_id: String,
        secret_id: Zeroizing<String>,
        mount: String,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::AppRole { role_id, mount, .. } => {
                write!(
                    f,
                    "AppRole(role_id={role_id}, mount={mount}, secret_id=<redacted>)"
                )
            }
        }
    }
}

/// Connection settings.
#[derive(Debug)]
pub struct VaultOptions {
    /// `https://vault.example:8200` (or `http://` for a local dev server).
    pub address: String,
    /// KV v2 mount (default `secret`).
    pub mount: String,
    /// Path prefix inside the mount (default `mtls`).
    pub prefix: String,
    /// Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// PEM CA bundle trusted for Vault's TLS certificate, in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: VaultAuth,
    pub timeout: Duration,
    /// The largest answer read from Vault: past it a call fails while the answer is read (by
    /// its `Content-Length` at once, otherwise at the byte that passes it), so a broken or
    /// hostile server cannot make the gateway hold more. [`answer_cap`] gives what a stored
    /// file of the intake's largest size needs.
    pub max_answer_bytes: usize,
}

/// The answer cap for files of at most `max_file_bytes`: the file travels in base64 (4/3 of
/// its size) inside a JSON envelope with its password and metadata; twice the file plus
/// 256 KiB leaves room for all of it, a key form's chain included.
pub fn answer_cap(max_file_bytes: usize) -> usize {
    max_file_bytes.saturating_mul(2).saturating_add(256 * 1024)
}

/// Reads `response`'s body into zeroized memory, refusing it past `cap` bytes while it is
/// read. The buffer is reserved once from the announced length (within the cap), so that a
/// secret is not left behind in freed buffers as it grows.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let too_large =
        || SecretError::Unavailable(format!("Vault's answer is larger than {cap} bytes"));
    let announced = response.content_length();
    if announced.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        announced.map_or(0, |length| usize::try_from(length).unwrap_or(cap)),
    ));
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if bytes.len().saturating_add(chunk.len()) > cap {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

struct Token {
    value: Zeroizing<String>,
    /// When to renew (AppRole tokens): two thirds into the lease.
    renew_at: Option<Instant>,
}

/// A KV v2 client.
pub struct VaultStore {
    client: reqwest::Client,
    options: VaultOptions,
    token: Mutex<Option<Token>>,
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthResponse {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    client_token: String,
    lease_duration: u64,
    renewable: bool,
}

#[derive(Deserialize)]
struct ReadResponse {
    data: ReadData,
}

#[derive(Deserialize)]
struct ReadData {
    data: Option<StoredValue>,
    metadata: Option<ReadMetadata>,
}

#[derive(Deserialize)]
struct ReadMetadata {
    version: u64,
}

/// A stored secret. The PKCS#12 form is `{p12, password}` (no `format`: every secret written
/// before gateway-made keys); a gateway-made key is `{format: "pkcs8", key, chain?}`; a
/// version's re-sealed identity, at its own path, is `{format: "identity", for, key, chain}`
/// (a format the version reader refuses, so it never stands in for a version's secret).
#[derive(Deserialize, zeroize::ZeroizeOnDrop)]
struct StoredValue {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    p12: String,
    #[serde(default)]
    password: String,
    /// The PKCS#8 key, base64.
    #[serde(default)]
    key: Option<String>,
    /// The chain, PEM, once uploaded.
    #[serde(default)]
    chain: Option<String>,
    /// Unix seconds; absent in the legacy layout.
    #[serde(default, rename = "writtenAt")]
    written_at: i64,
    /// A re-sealed identity's binding (`format: "identity"`): `<account>/<id>/<version>`,
    /// checked on read, so that a value copied to another path does not load.
    #[serde(default, rename = "for")]
    bound_to: Option<String>,
}

#[derive(Deserialize)]
struct ListResponse {
    data: ListData,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    keys: Vec<String>,
}

impl VaultStore {
    pub fn new(options: VaultOptions) -> Result<Self, SecretError> {
        let client = client(options.ca_pem.as_deref(), options.timeout)?;
        Ok(Self {
            client,
            options,
            token: Mutex::new(None),
        })
    }

    /// The path of `key`'s secrets under `kind` (`data` or `metadata`): the legacy layout's
    /// path, under which `versions/<version>` holds each version.
    fn path(&self, kind: &str, key: SecretKey<'_>) -> String {
        if key.account == crate::APP_KEYS {
            return format!(
                "{}/v1/{}/{kind}/{}/app-keys/{}",
                self.options.address.trim_end_matches('/'),
                self.options.mount,
                self.options.prefix,
                key.certificate_id
            );
        }
        format!(
            "{}/v1/{}/{kind}/{}/accounts/{}/certificates/{}",
            self.options.address.trim_end_matches('/'),
            self.options.mount,
            self.options.prefix,
            key.account,
            key.certificate_id
        )
    }

    /// The path of one version ([`LEGACY_VERSION`]: the legacy layout's path).
    fn version_path(&self, kind: &str, key: SecretKey<'_>, version: i64) -> String {
        let base = self.path(kind, key);
        if version == LEGACY_VERSION {
            return base;
        }
        format!("{base}/versions/{version}")
    }

    pub async fn put<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        // cas 0: written only if the path holds nothing, so two writers never share a version.
        self.write(key, version, 0, material.into()).await
    }

    /// The path of a version's re-sealed identity: `.../certificates/<id>/identities/<version>`.
    fn identity_path(&self, kind: &str, key: SecretKey<'_>, version: i64) -> String {
        format!("{}/identities/{version}", self.path(kind, key))
    }

    /// What a re-sealed identity's value must name: its account, certificate and version.
    fn binding(key: SecretKey<'_>, version: i64) -> String {
        format!("{}/{}/{version}", key.account, key.certificate_id)
    }

    /// Writes the re-sealed identity of `version` with check-and-set 0: once.
    pub async fn put_identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
        identity: &KeyMaterial,
    ) -> Result<Written, SecretError> {
        let data = json!({
            "format": "identity",
            "for": Self::binding(key, version),
            "key": STANDARD.encode(identity.pkcs8.as_slice()),
            "chain": identity.chain_pem.as_deref(),
            "writtenAt": crate::local::unix_now(),
        });
        self.write_at(
            &self.identity_path("data", key, version),
            &self.identity_path("metadata", key, version),
            0,
            data,
        )
        .await
    }

    /// The re-sealed identity of exactly `version`, refused unless its value says it is one
    /// and names this very account, certificate and version.
    pub async fn identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<KeyMaterial>, SecretError> {
        let Some((value, _)) = self
            .read_at(&self.identity_path("data", key, version))
            .await?
        else {
            return Ok(None);
        };
        if value.format.as_deref() != Some("identity")
            || value.bound_to.as_deref() != Some(Self::binding(key, version).as_str())
        {
            return Err(SecretError::Corrupt(
                "the value at an identity's path is not this version's identity".to_owned(),
            ));
        }
        let pkcs8 = value
            .key
            .as_deref()
            .and_then(|key| STANDARD.decode(key.as_bytes()).ok())
            .ok_or_else(|| SecretError::Corrupt("stored key is not base64".to_owned()))?;
        let chain_pem = value.chain.clone().ok_or_else(|| {
            SecretError::Corrupt("a re-sealed identity without its chain".to_owned())
        })?;
        Ok(Some(KeyMaterial {
            pkcs8: Zeroizing::new(pkcs8),
            chain_pem: Some(chain_pem),
        }))
    }

    pub async fn remove_identities(
        &self,
        key: SecretKey<'_>,
        versions: Versions,
    ) -> Result<(), SecretError> {
        let doomed: Vec<i64> = match versions {
            Versions::One(version) => vec![version],
            Versions::Below(bound) => self
                .listed(&format!("{}/identities", self.path("metadata", key)))
                .await?
                .into_iter()
                .filter(|version| *version < bound)
                .collect(),
            Versions::All => {
                self.listed(&format!("{}/identities", self.path("metadata", key)))
                    .await?
            }
        };
        for version in doomed {
            self.delete_url(&self.identity_path("metadata", key, version))
                .await?;
        }
        Ok(())
    }

    /// Writes `version` with check-and-set `cas`: only if the path's current KV version is
    /// `cas` (0: the path holds nothing).
    async fn write(
        &self,
        key: SecretKey<'_>,
        version: i64,
        cas: u64,
        material: MaterialRef<'_>,
    ) -> Result<Written, SecretError> {
        let data = match material {
            MaterialRef::P12(material) => json!({
                "p12": STANDARD.encode(material.p12.as_slice()),
                "password": material.password.as_str(),
                "writtenAt": crate::local::unix_now(),
            }),
            MaterialRef::Key(material) => json!({
                "format": "pkcs8",
                "key": STANDARD.encode(material.pkcs8.as_slice()),
                "chain": material.chain_pem.as_deref(),
                "writtenAt": crate::local::unix_now(),
            }),
        };
        self.write_at(
            &self.version_path("data", key, version),
            &self.version_path("metadata", key, version),
            cas,
            data,
        )
        .await
    }

    /// Writes `data` at the `data` URL `url` (whose metadata is at `metadata`) with
    /// check-and-set `cas`.
    async fn write_at(
        &self,
        url: &str,
        metadata: &str,
        cas: u64,
        data: Value,
    ) -> Result<Written, SecretError> {
        let body = Zeroizing::new(json!({ "options": { "cas": cas }, "data": data }).to_string());
        drop(data);
        let (status, bytes) = self.send(Method::POST, url, Some(body)).await?;
        if status.is_success() {
            return Ok(Written::Stored);
        }
        // A check-and-set refusal is a 400; it means "taken" only if the path exists (asking
        // is sturdier than reading Vault's wording).
        if status == StatusCode::BAD_REQUEST && self.metadata_exists(metadata).await? {
            return Ok(Written::Taken);
        }
        Err(SecretError::Unavailable(format!(
            "Vault write answered {status}{}",
            vault_errors(&bytes)
        )))
    }

    /// Replaces the claim seen as KV version `claim` of the path, with check-and-set.
    pub async fn take_over<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        claim: &Claim,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        match claim.write {
            WriteId::KvVersion(seen) if seen > 0 => {
                self.write(key, version, seen, material.into()).await
            }
            _ => Ok(Written::Taken),
        }
    }

    /// Exactly one version's stored value, with the path's KV version number.
    async fn read(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<(StoredValue, u64)>, SecretError> {
        self.read_at(&self.version_path("data", key, version)).await
    }

    /// The stored value at the `data` URL `url`, with the path's KV version number.
    async fn read_at(&self, url: &str) -> Result<Option<(StoredValue, u64)>, SecretError> {
        let (status, body) = self.call(Method::GET, url, None).await?;
        let body = Zeroizing::new(body);
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_success(status, "read")?;
        let response: ReadResponse = serde_json::from_slice(&body)
            .map_err(|_| SecretError::Corrupt("unexpected KV v2 answer".to_owned()))?;
        let kv_version = response
            .data
            .metadata
            .map_or(0, |metadata| metadata.version);
        Ok(response.data.data.map(|value| (value, kv_version)))
    }

    pub async fn get(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Secret>, SecretError> {
        let mut value = self.read(key, version).await?;
        if value.is_none() && crate::legacy_stands_in(version) {
            value = self.read(key, LEGACY_VERSION).await?;
        }
        let Some((value, _)) = value else {
            return Ok(None);
        };
        match value.format.as_deref() {
            None | Some("pkcs12") => {
                let p12 = STANDARD
                    .decode(value.p12.as_bytes())
                    .map_err(|_| SecretError::Corrupt("stored p12 is not base64".to_owned()))?;
                Ok(Some(Secret::P12(SecretMaterial {
                    p12: Zeroizing::new(p12),
                    password: Zeroizing::new(value.password.clone()),
                })))
            }
            Some("pkcs8") => {
                let pkcs8 = value
                    .key
                    .as_deref()
                    .and_then(|key| STANDARD.decode(key.as_bytes()).ok())
                    .ok_or_else(|| SecretError::Corrupt("stored key is not base64".to_owned()))?;
                Ok(Some(Secret::Key(KeyMaterial {
                    pkcs8: Zeroizing::new(pkcs8),
                    chain_pem: value.chain.clone(),
                })))
            }
            Some(_) => Err(SecretError::Corrupt(
                "stored secret of an unknown format".to_owned(),
            )),
        }
    }

    async fn metadata_exists(&self, url: &str) -> Result<bool, SecretError> {
        let (status, _) = self.call(Method::GET, url, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect_success(status, "metadata read").map(|()| true)
    }

    pub async fn exists(&self, key: SecretKey<'_>, version: i64) -> Result<bool, SecretError> {
        if self
            .metadata_exists(&self.version_path("metadata", key, version))
            .await?
        {
            return Ok(true);
        }
        if !crate::legacy_stands_in(version) {
            return Ok(false);
        }
        self.metadata_exists(&self.version_path("metadata", key, LEGACY_VERSION))
            .await
    }

    pub async fn claim(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Claim>, SecretError> {
        Ok(self
            .read(key, version)
            .await?
            .map(|(value, kv_version)| Claim {
                written_at: value.written_at,
                write: WriteId::KvVersion(kv_version),
            }))
    }

    /// The versions stored under `key` (the legacy layout not included).
    async fn versions(&self, key: SecretKey<'_>) -> Result<Vec<i64>, SecretError> {
        self.listed(&format!("{}/versions", self.path("metadata", key)))
            .await
    }

    /// The numbered names under the `metadata` URL `folder`.
    async fn listed(&self, folder: &str) -> Result<Vec<i64>, SecretError> {
        let url = format!("{folder}?list=true");
        let (status, body) = self.call(Method::GET, &url, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        expect_success(status, "list")?;
        let response: ListResponse = serde_json::from_slice(&body)
            .map_err(|_| SecretError::Corrupt("unexpected KV v2 list answer".to_owned()))?;
        // Folders (`x/`) and names that are not numbers are not ours: left alone.
        Ok(response
            .data
            .keys
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    async fn delete_metadata(&self, key: SecretKey<'_>, version: i64) -> Result<(), SecretError> {
        self.delete_url(&self.version_path("metadata", key, version))
            .await
    }

    /// Deletes the `metadata` URL `url` (every KV version of the path).
    async fn delete_url(&self, url: &str) -> Result<(), SecretError> {
        let (status, _) = self.call(Method::DELETE, url, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect_success(status, "destroy")
    }

    /// Removes the versions and their re-sealed identities (the identities first).
    pub async fn remove(&self, key: SecretKey<'_>, versions: Versions) -> Result<(), SecretError> {
        self.remove_identities(key, versions).await?;
        let doomed: Vec<i64> = match versions {
            Versions::One(version) => vec![version],
            Versions::Below(bound) => {
                let mut doomed: Vec<i64> = self
                    .versions(key)
                    .await?
                    .into_iter()
                    .filter(|version| *version < bound)
                    .collect();
                doomed.push(LEGACY_VERSION);
                doomed
            }
            Versions::All => {
                let mut doomed = self.versions(key).await?;
                doomed.push(LEGACY_VERSION);
                doomed
            }
        };
        for version in doomed {
            self.delete_metadata(key, version).await?;
        }
        Ok(())
    }

    /// Vault answers, is unsealed, and accepts our token (a token lookup).
    pub async fn check(&self) -> Result<(), SecretError> {
        let url = format!(
            "{}/v1/auth/token/lookup-self",
            self.options.address.trim_end_matches('/')
        );
        let (status, _) = self.call(Method::GET, &url, None).await?;
        expect_success(status, "token lookup")
    }

    /// A call whose status the caller judges (only transport failures are errors).
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Zeroizing<String>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), SecretError> {
        let token = self.token().await?;
        let mut request = self
            .client
            .request(method, url)
            .header("X-Vault-Token", token.as_str());
        if let Some(namespace) = &self.options.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.as_bytes().to_vec());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status == StatusCode::FORBIDDEN {
            // A revoked or expired token: forget it so that the next call logs in again.
            *self.token.lock().await = None;
        }
        let bytes = read_capped(response, self.options.max_answer_bytes).await?;
        Ok((status, bytes))
    }

    /// A call where anything but success or 404 is an error.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Zeroizing<String>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), SecretError> {
        let (status, bytes) = self.send(method, url, body).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            return Err(SecretError::Unavailable(format!(
                "Vault answered {status}{}",
                vault_errors(&bytes)
            )));
        }
        Ok((status, bytes))
    }

    /// The token to use now: the configured one, or an AppRole token, logged in or renewed.
    async fn token(&self) -> Result<Zeroizing<String>, SecretError> {
        let mut slot = self.token.lock().await;
        match &self.options.auth {
            VaultAuth::Token(token) => Ok(token.clone()),
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => {
                if let Some(current) = slot.as_ref() {
                    match current.renew_at {
                        Some(at) if Instant::now() >= at => {
                            if let Ok(renewed) = self.renew(&current.value).await {
                                *slot = Some(renewed);
                            } else {
                                *slot = None;
                            }
                        }
                        _ => {}
                    }
                }
                if slot.is_none() {
                    *slot = Some(self.login(role_id, secret_id, mount).await?);
                }
                slot.as_ref()
                    .map(|token| token.value.clone())
                    .ok_or_else(|| SecretError::Unavailable("no Vault token".to_owned()))
            }
        }
    }

    async fn login(
        &self,
        role_id: &str,
        secret_id: &str,
        mount: &str,
    ) -> Result<Token, SecretError> {
        let url = format!(
            "{}/v1/auth/{mount}/login",
            self.options.address.trim_end_matches('/')
        );
        let body =
            Zeroizing::new(json!({ "role_id": role_id, "secret_id": secret_id }).to_string());
        self.auth_call(&url, None, body).await
    }

    async fn renew(&self, token: &str) -> Result<Token, SecretError> {
        let url = format!(
            "{}/v1/auth/token/renew-self",
            self.options.address.trim_end_matches('/')
        );
        self.auth_call(&url, Some(token), Zeroizing::new("{}".to_owned()))
            .await
    }

    async fn auth_call(
        &self,
        url: &str,
        token: Option<&str>,
        body: Zeroizing<String>,
    ) -> Result<Token, SecretError> {
        let mut request = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.as_bytes().to_vec());
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(namespace) = &self.options.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = read_capped(response, self.options.max_answer_bytes).await?;
        if !status.is_success() {
            return Err(SecretError::Unavailable(format!(
                "Vault login answered {status}{}",
                vault_errors(&bytes)
            )));
        }
        let answer: AuthResponse = serde_json::from_slice(&bytes)
            .map_err(|_| SecretError::Unavailable("unexpected login answer".to_owned()))?;
        let renew_at = (answer.auth.renewable || answer.auth.lease_duration > 0).then(|| {
            Instant::now() + Duration::from_secs(answer.auth.lease_duration.saturating_mul(2) / 3)
        });
        Ok(Token {
            value: Zeroizing::new(answer.auth.client_token),
            renew_at,
        })
    }
}

fn expect_success(status: StatusCode, what: &str) -> Result<(), SecretError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(SecretError::Unavailable(format!(
            "Vault {what} answered {status}"
        )))
    }
}

fn transport_error(error: reqwest::Error) -> SecretError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    SecretError::Unavailable(format!("Vault {kind}"))
}

/// Vault's `errors` array, which names problems (permission denied, sealed) without secrets.
fn vault_errors(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    match value.get("errors").and_then(Value::as_array) {
        Some(errors) if !errors.is_empty() => {
            let texts: Vec<String> = errors
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            format!(": {}", texts.join("; "))
        }
        _ => String::new(),
    }
}

/// An HTTP client that trusts the system roots plus `ca_pem`, ignores proxy variables and
/// follows no redirects (a token must not be replayed to another host).
/// An HTTPS client for the gateway's own dependencies (Vault, the expiry webhook): system roots
/// plus `ca_pem`, TLS 1.2+, no proxy, no redirects, `timeout` per call.
pub fn client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, SecretError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate
                .map_err(|_| SecretError::Unavailable("the Vault CA file is not PEM".to_owned()))?;
            roots.add(certificate).map_err(|_| {
                SecretError::Unavailable(
                    "the Vault CA file holds an unusable certificate".to_owned(),
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(SecretError::Unavailable(
                "the Vault CA file holds no certificate".to_owned(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| SecretError::Unavailable("TLS configuration".to_owned()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|_| SecretError::Unavailable("cannot build the Vault HTTP client".to_owned()))
}

#[cfg(test)]
mod tests {
    //! Answers no real Vault gives: a peer that lies about its length or never ends its body.
    //! OpenBao cannot be made to misbehave, so a socket plays the server.
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::SecretKey;

    const CAP: usize = 64 * 1024;

    /// One chunk of 0x400 = 1024 spaces, in chunked framing.
    const CHUNK: &[u8] = concat!("400\r\n", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "                                                                                                                                ", "\r\n").as_bytes();

    /// A server answering every connection with `head`, then `body` over and over until the
    /// client goes away, or once when `repeat` is false.
    async fn server(head: &'static str, body: &'static [u8], repeat: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    socket.write_all(head.as_bytes()).await?;
                    loop {
                        socket.write_all(body).await?;
                        if !repeat {
                            return Ok::<_, std::io::Error>(());
                        }
                    }
                });
            }
        });
        address
    }

    fn store(address: String) -> VaultStore {
        VaultStore::new(VaultOptions {
            address,
            mount: "secret".to_owned(),
            prefix: "mtls".to_owned(),
            namespace: None,
            ca_pem: None,
            auth: VaultAuth::Token(Zeroizing::new("token".to_owned())),
            timeout: Duration::from_secs(10),
            max_answer_bytes: CAP,
        })
        .unwrap()
    }

    const KEY: SecretKey<'static> = SecretKey {
        account: "acme",
        certificate_id: 1,
    };

    #[tokio::test]
    async fn an_answer_announced_past_the_cap_is_refused_before_its_body() {
        // Announces a gigabyte and sends a few bytes: refused by the header alone.
        let address = server(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n",
            b"{}",
            false,
        )
        .await;
        let error = store(address).get(KEY, 1).await.unwrap_err();
        assert!(
            error.to_string().contains("larger than 65536 bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_cap_while_it_is_read() {
        // Chunked, never ending: refused at the chunk that passes the cap, not at its end.
        let address = server(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            CHUNK,
            true,
        )
        .await;
        let error = tokio::time::timeout(Duration::from_secs(10), store(address).get(KEY, 1))
            .await
            .expect("cut while read, not read to an end that never comes")
            .unwrap_err();
        assert!(
            error.to_string().contains("larger than 65536 bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_answer_within_the_cap_is_read() {
        let address = server(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n",
            b"{\"errors\":[]}",
            false,
        )
        .await;
        assert!(store(address).get(KEY, 1).await.unwrap().is_none());
    }
}
