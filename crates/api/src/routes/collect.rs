//! Collect (SPEC 4.5): `GET /api/account/{accountId}/certificate/{id}` answers a ZIP archive,
//! AES-256 encrypted (WinZip AE-2) with the password given at upload, holding the stored
//! PKCS#12 file. Requires `MTLS_WRITE_INTERNAL`: it hands out the key.

use std::io::{Cursor, Write};

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use zeroize::Zeroizing;
use zip::write::SimpleFileOptions;

use mtls_control::certificates;

use crate::AppState;
use crate::audit::audited;
use crate::error::ApiError;
use crate::extract::{Authorized, WriteConfiguration, path_id};

pub async fn collect(
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
        // A key the gateway made is never handed out (SPEC 4.6; its collect is the requests
        // branch's).
        let mtls_secrets::Secret::P12(material) = material else {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "certificate_key_form",
                "this certificate's key was made by the gateway and cannot be collected",
            ));
        };
        let archive = tokio::task::spawn_blocking(move || {
            zip_encrypted(&material.p12, &material.password, id)
        })
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| ApiError::internal(&error))?;
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
