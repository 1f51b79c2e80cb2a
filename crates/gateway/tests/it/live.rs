//! The tester's live form (SPEC 8) against real TLS servers: one that accepts the certificate,
//! one that asks for certificates from another CA, one that requires a certificate the client
//! cannot send (it accepts only RSA signatures; the key is P-256), one whose server certificate
//! the gateway does not trust. Each report names the right stage and reason; the relayed form
//! answers like the target or 424.

use mtls_auth::Privilege;
use mtls_test_support::{P12Fixtures, p12_fixtures, random_account};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::support::{TestApp, client, spawn};
use crate::upstream::{self, Upstream};

fn form(fixtures: &P12Fixtures, file: &str, body: Option<&str>) -> Form {
    let case = fixtures.case(file);
    let mut form = Form::new()
        .part(
            "file",
            Part::bytes(fixtures.bytes(file)).file_name("client.p12"),
        )
        .text("password", case.password.clone());
    if let Some(body) = body {
        form = form.text("body", body.to_owned());
    }
    form
}

struct Tester<'a> {
    app: &'a TestApp,
    account: String,
    token: String,
}

impl Tester<'_> {
    fn new(app: &TestApp) -> Tester<'_> {
        let account = random_account();
        let token = app.token(&[&account], &[Privilege::ReadInternal]);
        Tester {
            app,
            account,
            token,
        }
    }

    fn request(&self, target: &str, report: bool) -> reqwest::RequestBuilder {
        let query = if report { "?report=true" } else { "" };
        client()
            .post(self.app.url(&format!(
                "/mtls/account/{}/p12-test/multipart{query}",
                self.account
            )))
            .bearer_auth(&self.token)
            .header("LP-forward-url", target)
    }

    async fn report(&self, fixtures: &P12Fixtures, file: &str, target: &str) -> Value {
        let response = self
            .request(target, true)
            .multipart(form(fixtures, file, None))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

fn stage<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} stage: {report}"))
}

fn advice(report: &Value) -> String {
    report["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn setup() -> Option<(P12Fixtures, std::path::PathBuf)> {
    Some((p12_fixtures()?, upstream::server_pki()?))
}

fn trusting(server: &Upstream) -> impl FnOnce(&mut mtls_gateway::config::Config) + '_ {
    move |config| {
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
    }
}

#[tokio::test]
async fn a_server_that_accepts_the_certificate() {
    let Some((fixtures, pki)) = setup().await else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let app = spawn(trusting(&server)).await;
    let tester = Tester::new(&app);
    let target = format!("https://localhost:{}/hello?x=1", server.port);

    let report = tester
        .report(&fixtures, "openssl-default-rsa2048.p12", &target)
        .await;
    assert_eq!(report["outcome"], "ok", "{report}");
    assert_eq!(report["failedStage"], Value::Null);
    assert_eq!(stage(&report, "dns")["addresses"][0], "127.0.0.1");
    assert_eq!(stage(&report, "connect")["ok"], true);
    let tls = stage(&report, "tls");
    assert_eq!(tls["ok"], true, "{tls}");
    assert!(tls["version"].as_str().unwrap().starts_with("TLSv1_"));
    assert!(tls["cipherSuite"].as_str().is_some());
    assert_eq!(tls["serverCertificateVerified"], true);
    assert_eq!(tls["serverChain"][0]["subject"], "CN=localhost");
    assert_eq!(tls["clientCertificateRequested"], true);
    assert_eq!(tls["clientCertificateOffered"], true);
    assert_eq!(tls["clientCertificateIssuerAccepted"], true);
    assert!(
        tls["acceptableIssuers"][0]
            .as_str()
            .unwrap()
            .contains("Fixture Root"),
        "{tls}"
    );
    assert_eq!(stage(&report, "http")["status"], 200);
    assert!(
        report["file"]["subject"]
            .as_str()
            .unwrap()
            .contains("client-rsa2048")
    );
    assert!(advice(&report).contains("answered HTTP 200"));

    // The relayed form: the target's answer, with the overrides applied.
    let response = tester
        .request(&target, false)
        .header("LP-method-override", "put")
        .header("LP-content-type-override", "text/plain")
        .header("LP-authorization-override", "Bearer for-the-target")
        .multipart(form(
            &fixtures,
            "openssl-default-rsa2048.p12",
            Some("hello target"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/hello?x=1");
    assert_eq!(seen["body"], "hello target");
    assert_eq!(seen["headers"]["content-type"], "text/plain");
    assert_eq!(seen["headers"]["authorization"], "Bearer for-the-target");
    assert!(seen["fingerprint"].as_str().is_some());
    let response = tester
        .request(&target, false)
        .header("LP-method-override", "BREW")
        .multipart(form(&fixtures, "openssl-default-rsa2048.p12", None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_accepts_another_ca() {
    let Some((fixtures, pki)) = setup().await else {
        return;
    };
    let other = upstream::server_pki().unwrap();
    let server = upstream::start(&pki, Some(&other.join("ca.pem"))).await;
    let app = spawn(trusting(&server)).await;
    let tester = Tester::new(&app);
    let target = format!("https://localhost:{}/", server.port);

    let report = tester
        .report(&fixtures, "openssl-default-rsa2048.p12", &target)
        .await;
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["failedStage"], "tls");
    let tls = stage(&report, "tls");
    assert_eq!(tls["ok"], false);
    assert_eq!(tls["clientCertificateRequested"], true);
    assert_eq!(tls["clientCertificateOffered"], true);
    assert_eq!(tls["clientCertificateIssuerAccepted"], false);
    assert_eq!(tls["acceptableIssuers"][0], "CN=Upstream Test CA");
    assert!(
        tls["alert"].as_str().is_some(),
        "the server's alert is named: {tls}"
    );
    let advice = advice(&report);
    assert!(
        advice.contains("does not trust your certificate's issuer")
            && advice.contains("it accepts certificates from: CN=Upstream Test CA"),
        "{advice}"
    );

    // The relayed form: 424 naming the stage and the alert.
    let response = tester
        .request(&target, false)
        .multipart(form(&fixtures, "openssl-default-rsa2048.p12", None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FAILED_DEPENDENCY);
    assert_eq!(
        response.headers()["lp-error-from-transport"],
        "client_certificate_rejected"
    );
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("tls stage:") && message.contains("alert"),
        "{message}"
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_requiring_a_certificate_the_client_cannot_send() {
    let Some((fixtures, pki)) = setup().await else {
        return;
    };
    let server = upstream::start_rsa_signatures_only(&pki, &fixtures.path("root.pem")).await;
    let app = spawn(trusting(&server)).await;
    let tester = Tester::new(&app);
    let target = format!("https://localhost:{}/", server.port);

    let report = tester
        .report(&fixtures, "openssl-default-p256.p12", &target)
        .await;
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["failedStage"], "tls");
    let tls = stage(&report, "tls");
    assert_eq!(tls["clientCertificateRequested"], true);
    assert_eq!(tls["clientCertificateOffered"], false, "{tls}");
    assert!(
        tls["serverSignatureSchemes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|scheme| scheme.as_str().unwrap().starts_with("RSA_")),
        "{tls}"
    );
    assert!(tls["alert"].as_str().is_some(), "{tls}");
    let advice = advice(&report);
    assert!(advice.contains("none was sent"), "{advice}");
    assert!(advice.contains("ECDSA-P256"), "{advice}");
    // The same server takes an RSA key.
    let report = tester
        .report(&fixtures, "openssl-default-rsa2048.p12", &target)
        .await;
    assert_eq!(report["outcome"], "ok", "{report}");
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_trusted() {
    let Some((fixtures, pki)) = setup().await else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    // The gateway is not told about the server's CA.
    let app =
        spawn(|config| config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let tester = Tester::new(&app);
    let target = format!("https://localhost:{}/", server.port);

    let report = tester
        .report(&fixtures, "openssl-default-rsa2048.p12", &target)
        .await;
    assert_eq!(report["failedStage"], "tls", "{report}");
    let tls = stage(&report, "tls");
    assert_eq!(tls["serverCertificateVerified"], false);
    assert!(
        tls["serverCertificateError"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{tls}"
    );
    assert_eq!(tls["serverChain"][0]["issuer"], "CN=Upstream Test CA");
    assert!(advice(&report).contains("tls.trust_roots"));
    assert_eq!(report["failure"]["code"], "server_certificate_invalid");

    // The egress policy applies to the tester too, and a refused name is a DNS stage failure.
    let strict = spawn(|_| {}).await;
    let tester = Tester::new(&strict);
    let report = tester
        .report(&fixtures, "openssl-default-rsa2048.p12", &target)
        .await;
    assert_eq!(report["failedStage"], "dns", "{report}");
    assert_eq!(report["failure"]["code"], "egress_denied");
    let response = tester
        .request(&target, false)
        .multipart(form(&fixtures, "openssl-default-rsa2048.p12", None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.running.stop().await.unwrap();
    strict.running.stop().await.unwrap();
}

/// Defect 9: an answer whose head is sound and whose body breaks (cut short, over
/// `forward.max_body_bytes`, stalled) fails the HTTP stage, with the status the head gave; the
/// relayed form is 424, never the status with an empty body.
#[tokio::test]
async fn a_broken_answer_fails_the_http_stage() {
    let Some((fixtures, pki)) = setup().await else {
        return;
    };
    let server = upstream::start_broken(&pki, &fixtures.path("root.pem")).await;
    let app = spawn(|config| {
        trusting(&server)(config);
        config.forward.max_body_bytes = 1024;
        config.forward.response_timeout_seconds = std::time::Duration::from_secs_f64(1.0);
    })
    .await;
    let tester = Tester::new(&app);
    let file = "openssl-default-rsa2048.p12";
    let url = |path: &str| format!("https://localhost:{}{path}", server.port);

    // The same server answers whole when it does.
    let response = tester
        .request(&url("/fine"), false)
        .multipart(form(&fixtures, file, None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);

    for (path, code) in [
        ("/truncated", "connection_reset"),
        ("/truncated-chunked", "connection_reset"),
        ("/large", "response_too_large"),
        ("/stall", "response_timeout"),
    ] {
        let report = tester.report(&fixtures, file, &url(path)).await;
        assert_eq!(report["outcome"], "failed", "{path}: {report}");
        assert_eq!(report["failedStage"], "http", "{path}: {report}");
        assert_eq!(report["failure"]["code"], code, "{path}: {report}");
        assert_eq!(stage(&report, "tls")["ok"], true, "{path}: {report}");
        let http = stage(&report, "http");
        assert_eq!(http["ok"], false, "{path}: {http}");
        assert_eq!(http["status"], 200, "{path}: {http}");
        assert!(http["error"].as_str().is_some(), "{path}: {http}");
        assert!(
            advice(&report).contains("could not be read whole"),
            "{path}: {report}"
        );

        let response = tester
            .request(&url(path), false)
            .multipart(form(&fixtures, file, None))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FAILED_DEPENDENCY, "{path}");
        assert_eq!(
            response.headers()["lp-error-from-transport"],
            code,
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("http stage:"), "{path}: {message}");
    }
    app.running.stop().await.unwrap();
}

/// Item 11: an `egress_denied` message names the host the caller gave, never the address the
/// name resolves to, in the relayed form and in the report alike.
#[tokio::test]
async fn an_egress_refusal_names_the_host_not_the_address() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = spawn(|_| {}).await;
    let tester = Tester::new(&app);
    let file = "openssl-default-rsa2048.p12";
    // `localhost` resolves to loopback, which the default policy refuses.
    let target = "https://localhost:9/";
    let response = tester
        .request(target, false)
        .multipart(form(&fixtures, file, None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "egress_denied", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("localhost"), "{message}");
    let report = tester.report(&fixtures, file, target).await;
    assert_eq!(report["failure"]["code"], "egress_denied", "{report}");
    for text in [message.to_owned(), report.to_string()] {
        for address in ["127.0.0.1", "::1", "(loopback)"] {
            assert!(!text.contains(address), "{address} in {text}");
        }
    }
    app.running.stop().await.unwrap();
}
