//! Failure codes of the forward path (SPEC 7.4) that need a server misbehaving on purpose,
//! beside the ones `forward.rs` checks.

use reqwest::StatusCode;

use crate::forward::{Tenant, answer, trusting};
use crate::support::spawn;
use crate::upstream;

/// A TLS 1.3 server refuses the client certificate after the client's handshake is over, on a
/// connection the gateway already speaks HTTP/2 on: h2 hands the TLS alert on as text only, and
/// the code still comes from the alert's type (`runtime::failure::TlsWatch`), every time.
#[tokio::test]
async fn an_alert_after_the_handshake_on_http2_is_a_rejected_certificate() {
    let (Some(fixtures), Some(pki)) = (mtls_test_support::p12_fixtures(), upstream::server_pki())
    else {
        return;
    };
    let server = upstream::start_refusing_after_handshake(&pki, &fixtures.path("root.pem")).await;
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    // Unmapped: out without a client certificate, which this server requires.
    let target = format!("https://localhost:{}/", server.port);
    for _ in 0..5 {
        let (status, headers, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
        assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
        assert_eq!(
            body["error"]["code"], "client_certificate_rejected",
            "{body}"
        );
        assert_eq!(
            headers["lp-error-from-transport"],
            "client_certificate_rejected"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("CertificateRequired"), "{message}");
    }
    app.running.stop().await.unwrap();
}
