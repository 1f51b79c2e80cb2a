//! The web console (issue 7): three static files embedded in the binary, served without
//! authentication (SPEC 3 exempts them) on the configuration surface. Everything the console
//! does goes through the public API with the token its user pastes; it has no route of its own.

use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/console/index.html");
const APP_JS: &str = include_str!("../assets/console/app.js");
const STYLE_CSS: &str = include_str!("../assets/console/style.css");

/// Only the gateway's own files and API: no inline script or style, no framing, no form posts
/// (the console submits with `fetch`).
pub const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// `GET /`: the page.
pub async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        INDEX_HTML,
        &[
            (CONTENT_SECURITY_POLICY, POLICY),
            (REFERRER_POLICY, "no-referrer"),
        ],
    )
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS, &[])
}

/// `GET /console/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS, &[])
}

/// `no-cache` (revalidate every time) so that a new gateway version's console is never mixed
/// with a cached older script.
fn asset(
    content_type: &'static str,
    body: &'static str,
    extra: &[(HeaderName, &'static str)],
) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    for (name, value) in extra {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_carries_its_policy_and_types() {
        let page = index().await;
        let headers = page.headers();
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[CONTENT_SECURITY_POLICY], POLICY);
        assert!(POLICY.contains("script-src 'self';"));
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        assert_eq!(
            script().await.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            style().await.headers()[CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_nothing_inline() {
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            for remote in [
                "src=\"http",
                "href=\"http",
                "src=\"//",
                "href=\"//",
                "url(",
                "@import",
            ] {
                assert!(!text.contains(remote), "{remote}");
            }
        }
        assert!(!INDEX_HTML.contains(" style="));
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!has_event_attribute(INDEX_HTML), "no inline event handlers");
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(INDEX_HTML.contains("<script src=\"/console/app.js\" defer></script>"));
    }

    /// ` onclick=` and the like: ` on`, letters, `=`.
    fn has_event_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            letters > 0 && rest[letters..].starts_with('=')
        })
    }
}
