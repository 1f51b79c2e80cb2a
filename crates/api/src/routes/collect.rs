//! Collect (SPEC 4.5): `GET /api/account/{accountId}/certificate/{id}` answers a ZIP archive,
//! AES-256 encrypted (WinZip AE-2) with the password given at upload, holding the stored
//! PKCS#12 file. Requires `MTLS_WRITE_INTERNAL`: it hands out the key.
//!
//! A key the gateway made (SPEC 4.6) is never handed out: its ZIP holds the certificate, the
//! chain and the CSR as PEM files, not encrypted (there is no upload password, and nothing in
//! it is secret; docs/certificate-requests.md). A pending request has nothing to collect yet.

use std::io::{Cursor, Write};

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use zeroize::Zeroizing;
use zip::write::SimpleFileOptions;

use mtls_control::{certificates, requests};
use mtls_secrets::Secret;

use crate::AppState;
use crate::audit::audited;
use crate::error::ApiError;
use crate::extract::{Authorized, WriteConfiguration, path_id};

pub(super) async fn collect(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Response, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let backends = state.control().backends().require()?;
        let row = certificates::live(&backends, account.as_str(), id).await?;
        let material = certificates::material(&backends, account.as_str(), id, row.version)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "secret_missing",
                    "the secret store holds no file for this certificate; upload it again with PUT",
                )
            })?;
        let archive = match material {
            Secret::P12(material) => tokio::task::spawn_blocking(move || {
                zip_encrypted(&material.p12, &material.password, id)
            })
            .await
            .map_err(|error| ApiError::internal(&error))?
            .map_err(|error| ApiError::internal(&error))?,
            Secret::Key(material) => {
                let Some(chain) = material.chain_pem.as_deref() else {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "certificate_pending",
                        "the signed chain has not been uploaded yet; GET .../csr gives the request",
                    ));
                };
                let csr = backends.store.certificate_csr(account.as_str(), id).await?;
                let files = requests::collect_files(id, chain, csr.as_deref());
                drop(material);
                zip_plain(&files).map_err(|error| ApiError::internal(&error))?
            }
        };
        tracing::info!(
            account = account.as_str(),
            certificate_id = id,
            "certificate collected"
        );
        Ok((
            [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"certificate-{id}.zip\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            archive.to_vec(),
        )
            .into_response())
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.collect",
        ids,
        result,
    )
    .await
}

/// A ZIP holding `<id>.p12`, AES-256 encrypted with `password`.
fn zip_encrypted(
    p12: &[u8],
    password: &str,
    id: i64,
) -> Result<Zeroizing<Vec<u8>>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_aes_encryption(zip::AesMode::Aes256, password);
    writer.start_file(format!("{id}.p12"), options)?;
    writer.write_all(p12)?;
    Ok(Zeroizing::new(writer.finish()?.into_inner()))
}

/// A ZIP holding `files` (name, PEM text) as they are: public material, not encrypted.
fn zip_plain(files: &[(String, String)]) -> Result<Zeroizing<Vec<u8>>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, text) in files {
        writer.start_file(name.as_str(), options)?;
        writer.write_all(text.as_bytes())?;
    }
    Ok(Zeroizing::new(writer.finish()?.into_inner()))
}
