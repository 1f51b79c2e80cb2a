//! Bodies the certificate-request and renewal routes read themselves (SPEC 4.6): capped while
//! they stream in, and the chain uploads' PEM content type.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;

/// The body, refused (413 `payload_too_large`) at once when its `Content-Length` is past `cap`,
/// else at the first byte past `cap` while it is read; 400 `invalid_request_body` when the
/// body cannot be read.
pub(super) async fn read_capped(
    body: Body,
    headers: &HeaderMap,
    cap: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("the request body is larger than {cap} bytes"));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    match Box::pin(axum::body::to_bytes(body, cap)).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(error) => {
            // `to_bytes` stops at the first byte past `cap` with a `LengthLimitError`; any
            // other error is the body's own.
            let past_cap = error
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            Err(if past_cap {
                too_large()
            } else {
                ApiError::bad_request("invalid_request_body", "the request body could not be read")
            })
        }
    }
}

/// A chain upload's `Content-Type` must be PEM text (or absent): else 415.
pub(super) fn require_pem(headers: &HeaderMap) -> Result<(), ApiError> {
    let pem = match headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str())
    {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(value)) => {
            let essence = value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            matches!(
                essence.as_str(),
                "application/x-pem-file" | "text/plain" | "application/pem-certificate-chain"
            )
        }
    };
    if pem {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the chain as PEM text: Content-Type application/x-pem-file or text/plain",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_announced_or_not() {
        let body = || Body::from(vec![b'a'; 11]);
        // Refused by its announced length alone, before a byte is read: this body would fit.
        let announced = headers(&[(header::CONTENT_LENGTH, "11")]);
        let error = read_capped(Body::from(vec![b'a'; 3]), &announced, 10)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        let error = read_capped(body(), &HeaderMap::new(), 10)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        let read = read_capped(body(), &HeaderMap::new(), 11).await.unwrap();
        assert_eq!(read.len(), 11);
    }

    #[test]
    fn only_pem_text_is_a_chain() {
        assert!(require_pem(&HeaderMap::new()).is_ok());
        for fine in ["text/plain; charset=utf-8", "Application/X-PEM-File"] {
            assert!(require_pem(&headers(&[(header::CONTENT_TYPE, fine)])).is_ok());
        }
        let error =
            require_pem(&headers(&[(header::CONTENT_TYPE, "application/json")])).unwrap_err();
        assert_eq!(error.code(), "unsupported_media_type");
    }
}
