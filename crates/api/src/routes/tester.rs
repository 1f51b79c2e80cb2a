//! The PKCS#12 tester (SPEC 8): `POST /mtls/account/{accountId}/p12-test/multipart` with parts
//! `file`, `password` and optional `body`.
//!
//! * Without `LP-forward-url`: the file is checked and described (validate-only form).
//! * With it: the same checks, then a real call to that URL through the egress policy,
//!   presenting the certificate (`runtime::probe`), with `LP-method-override` (default GET),
//!   `LP-content-type-override`, `LP-authorization-override` and the `body` part. The target's
//!   answer is relayed once its body has been read whole (within `forward.max_body_bytes` and
//!   the response timeout); a transport failure, a body that breaks included, is 424 naming the
//!   stage and, for TLS, the alert. With `?report=true` (additive) the answer is the
//!   stage-by-stage report instead.
//!
//! Nothing of the file or the password is stored, cached or logged: the TLS configuration is
//! built for the one call, without session resumption, and dropped with the key.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use mtls_runtime::identity::ClientIdentity;
use mtls_runtime::probe::{self, Call};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::AppState;
use crate::audit::audited;
use crate::dto::{TesterReport, live_report};
use crate::error::ApiError;
use crate::extract::{Authorized, Query, RunTester, query_flag};
use crate::multipart;

#[derive(Debug, Default, Deserialize)]
pub(super) struct TesterQuery {
    #[serde(default)]
    report: Option<String>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid_header", format!("{name} is not text")))
        })
        .transpose()
}

/// The call the live form makes, from the request's `LP-*` headers (the `body` part is added
/// once read).
fn live_call(headers: &HeaderMap, target: &str) -> Result<Call, ApiError> {
    mtls_runtime::normalize(target)
        .map_err(|error| ApiError::bad_request("invalid_forward_url", error.to_string()))?;
    let url: axum::http::Uri = target.parse().map_err(|_| {
        ApiError::bad_request("invalid_forward_url", "LP-forward-url is not a valid URL")
    })?;
    let method = match header_text(headers, "lp-method-override")? {
        None => Method::GET,
        Some(name) => Method::from_bytes(name.trim().to_ascii_uppercase().as_bytes())
            .ok()
            .filter(|method| super::forward::METHODS.contains(method))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_method_override",
                    "LP-method-override must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
                )
            })?,
    };
    let mut upstream = HeaderMap::new();
    for (from, to) in [
        ("lp-content-type-override", header::CONTENT_TYPE),
        ("lp-authorization-override", header::AUTHORIZATION),
    ] {
        if let Some(value) = headers.get(from) {
            upstream.insert(to, value.clone());
        }
    }
    Ok(Call {
        url,
        method,
        headers: upstream,
        body: Default::default(),
    })
}

pub(super) async fn test_multipart(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<RunTester>,
    Query(query): Query<TesterQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let report = query_flag(query.report.as_deref())?;
    let headers = request.headers().clone();
    let target = header_text(&headers, "lp-forward-url")?.map(str::to_owned);
    let ids: Vec<i64> = Vec::new();
    let result: Result<Response, ApiError> = async {
        let call = match &target {
            Some(target) => Some(live_call(&headers, target)?),
            None => None,
        };
        let mut parts = multipart::read(request, &state, "invalid_password").await?;
        let file = parts.take("file").ok_or_else(|| {
            ApiError::bad_request("missing_file", "the multipart part 'file' is missing")
        })?;
        // No password part is the empty password, as a file written without one expects.
        let password = parts
            .text("password", "invalid_password")?
            .unwrap_or_default();
        let body = parts
            .take("body")
            .map(|body| body.to_vec())
            .unwrap_or_default();

        let inspection = state.control().inspect(file, password).await??;
        let file_report = TesterReport::from(&inspection.report);
        let Some(mut call) = call else {
            return Ok(Json(file_report).into_response());
        };
        if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&call.method) {
            call.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        call.body = body.into();
        let host = call.url.host().unwrap_or_default().to_owned();
        let identity = ClientIdentity {
            chain: inspection.identity.certificate_chain.clone(),
            pkcs8_key: Zeroizing::new(inspection.identity.key.pkcs8_der().to_vec()),
        };
        let forwarder = &state.control().forwarder();
        let settings = probe::Settings {
            policy: forwarder.policy(),
            roots: forwarder.roots(),
            timeouts: forwarder.timeouts,
            max_response_bytes: state.forward().max_body_bytes,
        };
        let seen = probe::probe(&settings, &identity, call).await;
        drop(identity);
        if report {
            return Ok(Json(live_report(
                file_report,
                &seen,
                &inspection.identity.certificate_chain,
                &host,
            ))
            .into_response());
        }
        if let Some(failure) = &seen.failure {
            let stage = seen.failed_stage().unwrap_or("http");
            let message = format!("{stage} stage: {}", failure.message);
            return Err(if failure.status == 403 {
                ApiError::new(axum::http::StatusCode::FORBIDDEN, failure.code, message)
            } else {
                ApiError::transport(failure.code, message)
            });
        }
        let Some(answer) = seen.answer else {
            return Err(ApiError::transport(
                "connection_reset",
                "the target closed the connection before answering",
            ));
        };
        let mut relayed = Response::new(Body::from(answer.body));
        *relayed.status_mut() = answer.status;
        // As the forward path relays, without a Content-Length the body now sets itself.
        let mut headers = answer.headers;
        super::forward::strip(&mut headers, |name| {
            name == axum::http::header::CONTENT_LENGTH
        });
        *relayed.headers_mut() = headers;
        Ok(relayed)
    }
    .await;
    let action = if target.is_some() {
        "tester.live"
    } else {
        "tester.run"
    };
    audited(&state, &caller, &account, action, ids, result).await
}
