//! Mapping validation (SPEC 5.2): every rule checked for every item before anything is stored.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Control;
use crate::backends::Backends;
use crate::certificates::{NAME_RULE, parse_id};
use crate::error::{ControlError, ItemError};
use mtls_store::{MappingFields, MappingRow, MappingWrite};

/// A mapping object as it arrives.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub certification_id: Option<Value>,
    #[serde(default, deserialize_with = "scalar")]
    pub service_id: Option<Value>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub site_id: Option<Value>,
    #[serde(default)]
    pub enable: Option<bool>,
    #[serde(default)]
    pub upstream_ca_pem: Option<String>,
}

/// An id-like JSON value (`certificationId`, `serviceId`, `siteId`): a number, a string or a
/// boolean is kept, `null` is absent, and an array or object is read and dropped as `false`
/// (never a valid id), so that no id field can hold a large value.
pub fn scalar<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    struct ScalarVisitor;
    impl<'de> Visitor<'de> for ScalarVisitor {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an id")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(Some(Value::Bool(value)))
        }
        fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(number)))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(Value::String(text.to_owned())))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Some(Value::Bool(false)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Some(Value::Bool(false)))
        }
    }
    deserializer.deserialize_any(ScalarVisitor)
}

/// The duplicate-triplet key: (serviceId, normalized URL) hashed to fit an index.
pub fn url_key(service_id: &str, url: &str) -> String {
    let digest = Sha256::digest(format!("{service_id}\n{url}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text_id(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Validates one item; `Err((code, message))` names the first rule it breaks.
async fn check(
    control: &Control,
    backends: &Backends,
    account: &str,
    input: MappingInput,
) -> Result<Result<MappingFields, (&'static str, String)>, ControlError> {
    let name = input.name.unwrap_or_default();
    if !crate::certificates::valid_name(&name) {
        return Ok(Err(("invalid_name", NAME_RULE.to_owned())));
    }
    if let Some(site) = &input.site_id
        && text_id(site).as_deref() != Some(account)
    {
        return Ok(Err((
            "site_id_mismatch",
            "siteId must equal the account in the path".to_owned(),
        )));
    }
    let Some(service_id) = input.service_id.as_ref().and_then(text_id) else {
        return Ok(Err(("unknown_service", "serviceId is missing".to_owned())));
    };
    if control.services().name(&service_id).is_none() {
        return Ok(Err((
            "unknown_service",
            format!("serviceId \"{service_id}\" is not a known service"),
        )));
    }
    let Some(certificate_id) = input.certification_id.as_ref().and_then(parse_id) else {
        return Ok(Err((
            "unknown_certificate",
            "certificationId must name a certificate of this account".to_owned(),
        )));
    };
    match backends.store.certificate(account, certificate_id).await? {
        Some(row) if !row.deleted => {}
        _ => {
            return Ok(Err((
                "unknown_certificate",
                "certificationId must name a certificate of this account that is not deleted"
                    .to_owned(),
            )));
        }
    }
    let raw_url = input.url.unwrap_or_default();
    let url = match mtls_runtime::normalize(&raw_url) {
        Ok((mtls_runtime::Scheme::Http, _)) if !control.allow_http() => {
            return Ok(Err((
                "invalid_url",
                "plain http targets are not allowed (egress.allow_http)".to_owned(),
            )));
        }
        Ok((_, url)) => url.into_owned(),
        Err(error) => return Ok(Err(("invalid_url", error.to_string()))),
    };
    if let Some(pem) = &input.upstream_ca_pem
        && let Err(error) = check_ca_bundle(pem)
    {
        return Ok(Err((
            "invalid_upstream_ca",
            format!("upstreamCaPem must be a PEM bundle of CA certificates: {error}"),
        )));
    }
    Ok(Ok(MappingFields {
        name,
        certificate_id,
        url_key: url_key(&service_id, &url),
        service_id,
        url,
        enabled: input.enable.unwrap_or(true),
        upstream_ca: input.upstream_ca_pem,
    }))
}

/// Largest `upstreamCaPem` accepted.
const CA_BUNDLE_LIMIT: usize = 256 * 1024;

/// `upstreamCaPem` as the forward path will load it (`runtime::identity::trust_bundle`), every
/// certificate also a whole X.509 structure: what is stored is what every forward can use, so a
/// broken bundle is this 400 and never a 500 at each forward.
fn check_ca_bundle(pem: &str) -> Result<(), String> {
    if pem.len() > CA_BUNDLE_LIMIT {
        return Err(format!("longer than {CA_BUNDLE_LIMIT} bytes"));
    }
    let certificates = mtls_runtime::identity::trust_bundle(pem)?;
    for (index, der) in certificates.iter().enumerate() {
        if mtls_pki::read_certificate(der).is_none() {
            return Err(format!("certificate {} is not X.509", index + 1));
        }
    }
    Ok(())
}

/// Validates every item; either all are usable or the 400 lists every bad one. Then the
/// duplicate rules: 409 for a name or a triplet used twice, in the request or in the account.
pub async fn check_all(
    control: &Control,
    backends: &Backends,
    account: &str,
    inputs: Vec<MappingInput>,
    except: Option<i64>,
) -> Result<Vec<MappingFields>, ControlError> {
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        match check(control, backends, account, input).await? {
            Ok(fields) => checked.push(fields),
            Err((code, message)) => errors.push(ItemError {
                index,
                code,
                message,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ControlError::Items(errors));
    }
    let existing = backends.store.mappings(account, false).await?;
    let live: Vec<_> = existing
        .iter()
        .filter(|row| Some(row.id) != except)
        .collect();
    for (index, fields) in checked.iter().enumerate() {
        let earlier = checked.iter().take(index);
        if live.iter().any(|row| row.name == fields.name)
            || earlier.clone().any(|other| other.name == fields.name)
        {
            return Err(conflict(
                "name_conflict",
                format!("the mapping name \"{}\" is already used", fields.name),
            ));
        }
        let same_triplet =
            |service: &str, url: &str| service == fields.service_id && url == fields.url;
        if live
            .iter()
            .any(|row| same_triplet(&row.service_id, &row.url))
            || earlier
                .clone()
                .any(|other| same_triplet(&other.service_id, &other.url))
        {
            return Err(conflict(
                "mapping_conflict",
                format!(
                    "a mapping for service {} and {} already exists",
                    fields.service_id, fields.url
                ),
            ));
        }
    }
    Ok(checked)
}

pub fn conflict(code: &'static str, message: String) -> ControlError {
    ControlError::conflict(code, message)
}

/// Validates `inputs` ([`check_all`]) and gives each a new id: the rows a create inserts.
pub async fn prepare(
    control: &Control,
    backends: &Backends,
    account: &str,
    inputs: Vec<MappingInput>,
) -> Result<Vec<(i64, MappingFields)>, ControlError> {
    let fields = check_all(control, backends, account, inputs, None).await?;
    let mut rows = Vec::with_capacity(fields.len());
    for field in fields {
        rows.push((mtls_store::new_id()?, field));
    }
    Ok(rows)
}

/// Inserts `rows` in one transaction within the account's cap (409
/// `mapping_limit_reached`), a duplicate answered 409 `mapping_conflict` with
/// `conflict_message`; then rebuilds the routing table. Answers the new revision and the rows.
pub async fn insert(
    control: &Control,
    backends: &Backends,
    account: &str,
    rows: &[(i64, MappingFields)],
    conflict_message: &str,
) -> Result<(i64, Vec<MappingRow>), ControlError> {
    let cap = control.limits().max_mappings_per_account;
    let revision = match backends
        .store
        .insert_mappings(account, rows, control.now(), cap)
        .await
    {
        Ok(Ok(revision)) => revision,
        Ok(Err(_)) => {
            return Err(crate::certificates::over_cap(
                "mapping_limit_reached",
                "mappings",
                cap,
            ));
        }
        Err(mtls_store::StoreError::Conflict) => {
            return Err(conflict("mapping_conflict", conflict_message.to_owned()));
        }
        Err(other) => return Err(other.into()),
    };
    crate::routing::refresh(control, backends).await?;
    let mut created = Vec::with_capacity(rows.len());
    for (id, _) in rows {
        if let Some(row) = backends.store.mapping(account, *id).await? {
            created.push(row);
        }
    }
    Ok((revision, created))
}

/// Replaces mapping `id` of `account` with `input` (validated as a create's, its own name and
/// triplet excepted) when `if_match` is absent or the account's revision; then rebuilds the
/// routing table. Answers the new revision and the row.
pub async fn update(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    input: MappingInput,
    if_match: Option<i64>,
) -> Result<(i64, MappingRow), ControlError> {
    match backends.store.mapping(account, id).await? {
        Some(row) if !row.deleted => {}
        _ => return Err(ControlError::NotFound("mapping")),
    }
    let mut fields = check_all(control, backends, account, vec![input], Some(id)).await?;
    let fields = fields
        .pop()
        .ok_or_else(|| ControlError::internal(&"no checked mapping"))?;
    let write = backends
        .store
        .update_mapping(account, id, &fields, if_match, control.now())
        .await;
    let revision = finish(write)?;
    written(control, backends, account, id, revision).await
}

/// Soft-deletes mapping `id` of `account` when `if_match` is absent or the account's
/// revision; then rebuilds the routing table. Answers the new revision and the row.
pub async fn delete(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    if_match: Option<i64>,
) -> Result<(i64, MappingRow), ControlError> {
    let write = backends
        .store
        .delete_mapping(account, id, if_match, control.now())
        .await;
    let revision = finish(write)?;
    written(control, backends, account, id, revision).await
}

async fn written(
    control: &Control,
    backends: &Backends,
    account: &str,
    id: i64,
    revision: i64,
) -> Result<(i64, MappingRow), ControlError> {
    crate::routing::refresh(control, backends).await?;
    let row = backends
        .store
        .mapping(account, id)
        .await?
        .ok_or(ControlError::NotFound("mapping"))?;
    Ok((revision, row))
}

fn finish(write: Result<MappingWrite, mtls_store::StoreError>) -> Result<i64, ControlError> {
    match write {
        Ok(MappingWrite::Done { revision }) => Ok(revision),
        Ok(MappingWrite::NotFound) => Err(ControlError::NotFound("mapping")),
        Ok(MappingWrite::StaleRevision { current }) => Err(ControlError::Precondition {
            code: "revision_mismatch",
            message: format!("If-Match names a stale revision; the current revision is {current}"),
        }),
        Err(mtls_store::StoreError::Conflict) => Err(conflict(
            "mapping_conflict",
            "a mapping with this name or triplet already exists".to_owned(),
        )),
        Err(other) => Err(other.into()),
    }
}
