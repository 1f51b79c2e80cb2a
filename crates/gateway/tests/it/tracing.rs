//! Trace context and the OTLP export (SPEC 6.2, docs/operations.md "Tracing"): calls forwarded
//! through the real gateway to a real TLS server, spans received by a collector this test
//! starts, which decodes the OTLP protobuf payloads with the `opentelemetry-proto` package
//! (an implementation independent of the gateway's hand-written encoder).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mtls_test_support::{p12_fixtures, python, skip};
use reqwest::StatusCode;
use serde_json::Value;

use crate::forward::{Tenant, answer, trusting};
use crate::support::spawn;
use crate::upstream;

/// The collector: answers every POST with an empty `ExportTraceServiceResponse` and prints,
/// one JSON line per export call, its content type, the raw body (hex) and the spans decoded.
const RECEIVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

def value(any):
    kind = any.WhichOneof("value")
    return getattr(any, kind) if kind else None

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        resources = []
        for rs in request.resource_spans:
            resources.append({kv.key: value(kv.value) for kv in rs.resource.attributes})
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append({
                        "traceId": span.trace_id.hex(),
                        "spanId": span.span_id.hex(),
                        "parentSpanId": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "status": span.status.code,
                        "attributes": {kv.key: value(kv.value) for kv in span.attributes},
                    })
        print(json.dumps({"path": self.path, "contentType": self.headers.get("content-type"),
                          "raw": body.hex(), "resources": resources, "spans": spans}), flush=True)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Handler)
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Receiver {
    port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    child: Child,
    exports: Vec<Value>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// The collector, or `None` (skipped) when Python lacks `opentelemetry-proto`.
    async fn start() -> Option<Receiver> {
        let mut child = Command::new(python())
            .args(["-c", RECEIVER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take().unwrap();
        let (sender, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(20), lines.recv()).await;
        match first {
            Ok(Some(line)) if line.starts_with("PORT ") => Some(Receiver {
                port: line.trim_start_matches("PORT ").parse().unwrap(),
                lines,
                child,
                exports: Vec::new(),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                skip(
                    "OTLP export tests",
                    "Python's opentelemetry-proto package is missing (scripts/requirements-test.txt)",
                );
                None
            }
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// The spans received so far, waiting (up to 20 s) until `done` holds of them.
    async fn spans_until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Value> = self
                .exports
                .iter()
                .flat_map(|export| export["spans"].as_array().unwrap().clone())
                .collect();
            if done(&spans) {
                return spans;
            }
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("the collector received the expected spans in time")
                .expect("the collector is running");
            self.exports.push(serde_json::from_str(&line).unwrap());
        }
    }
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn caller_traceparent(trace: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-01")
}

/// The `traceparent` the target saw, split into (trace id, parent id, flags).
fn seen_traceparent(body: &Value) -> (String, String, String) {
    let value = body["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the target saw a traceparent: {body}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

fn of_kind<'a>(spans: &'a [Value], trace: &str, kind: i64) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|span| span["traceId"] == trace && span["kind"] == kind)
        .collect()
}

/// Without export the gateway is not a trace participant: `traceparent` and `tracestate`
/// reach the target exactly as the caller sent them, valid or not.
#[tokio::test]
async fn trace_context_reaches_the_target_unchanged_without_export() {
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    // No client certificate asked: the calls go out unmapped.
    let server = upstream::start(&pki, None).await;
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let target = format!("https://localhost:{}/echo/plain", server.port);
    for traceparent in [
        caller_traceparent(CALLER_TRACE),
        "not-a-traceparent".to_owned(),
    ] {
        let (status, _, body) = answer(
            tenant
                .forward(reqwest::Method::GET, &target)
                .header("traceparent", &traceparent)
                .header("tracestate", "vendor=opaque"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["headers"]["traceparent"], traceparent.as_str());
        assert_eq!(body["headers"]["tracestate"], "vendor=opaque");
    }
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn spans_are_exported_and_the_gateway_span_is_the_targets_parent() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let (Some(fixtures), Some(pki)) = (p12_fixtures(), upstream::server_pki()) else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let endpoint = receiver.endpoint();
    let app = spawn(|config| {
        trusting(&server)(config);
        config.tracing.otlp_endpoint = Some(endpoint.parse().unwrap());
        config.tracing.service_name = "gateway-under-test".to_owned();
        // Pools are per worker thread: one worker, so the second call reuses the connection.
        config.server.workers = 1;
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!(
        "https://localhost:{}/echo/private-path?token=query-secret",
        server.port
    );
    tenant.map(id, "1", &target).await;
    let secrets = [
        "query-secret",
        "private-path",
        "header-secret-value",
        "override-secret-token",
        "opaque-state-value",
        tenant.token.as_str(),
        tenant.account.as_str(),
    ];

    // A mapped call with the caller's trace context.
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &target)
            .header("LP-service-name", "IDP")
            .header("LP-authorization-override", "Bearer override-secret-token")
            .header("X-Private", "header-secret-value")
            .header("traceparent", caller_traceparent(CALLER_TRACE))
            .header("tracestate", "vendor=opaque-state-value"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (trace, parent, flags) = seen_traceparent(&body);
    assert_eq!(trace, CALLER_TRACE, "the caller's trace goes on");
    assert_ne!(parent, CALLER_SPAN, "with the gateway's span as the parent");
    assert_eq!(flags, "01");
    assert_eq!(body["headers"]["tracestate"], "vendor=opaque-state-value");

    // An invalid caller traceparent (upper case): dropped with its tracestate, a new trace.
    let invalid = caller_traceparent(&CALLER_TRACE.to_uppercase());
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &target)
            .header("LP-service-name", "IDP")
            .header("traceparent", &invalid)
            .header("tracestate", "vendor=opaque-state-value"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (new_trace, new_parent, _) = seen_traceparent(&body);
    assert_ne!(new_trace.to_uppercase(), CALLER_TRACE.to_uppercase());
    assert_ne!(new_trace, "0".repeat(32));
    assert!(body["headers"].get("tracestate").is_none(), "{body}");

    // A caller's trace that is not sampled: continued (flags 00), and nothing exported.
    let unsampled_trace = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &target)
            .header("LP-service-name", "IDP")
            .header(
                "traceparent",
                format!("00-{unsampled_trace}-{CALLER_SPAN}-00"),
            ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (seen_trace, seen_parent, seen_flags) = seen_traceparent(&body);
    assert_eq!(
        (seen_trace.as_str(), seen_flags.as_str()),
        (unsampled_trace, "00")
    );
    assert_ne!(seen_parent, CALLER_SPAN);

    // An HTTP/1.1 target (the pool's other connection kind), unmapped.
    let h1 = upstream::start_with(&pki, None, false, false).await;
    let h1_trace = "1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f";
    let (status, _, body) = answer(
        tenant
            .forward(
                reqwest::Method::GET,
                &format!("https://localhost:{}/echo/h1", h1.port),
            )
            .header("traceparent", caller_traceparent(h1_trace)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], "HTTP/1.1");
    assert_eq!(seen_traceparent(&body).0, h1_trace);

    let probe = crate::support::client()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);

    // A call that fails: nothing listens on the port (424 connect_failed).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let failing_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, _, body) = answer(
        tenant
            .forward(
                reqwest::Method::POST,
                &format!("https://localhost:{closed}/private-path?token=query-secret"),
            )
            .header("traceparent", caller_traceparent(failing_trace))
            .body("payload"),
    )
    .await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
    assert_eq!(body["error"]["code"], "connect_failed");

    let spans = receiver
        .spans_until(|spans| {
            [CALLER_TRACE, new_trace.as_str(), h1_trace, failing_trace]
                .iter()
                .all(|trace| {
                    of_kind(spans, trace, 2).len() == 1 && of_kind(spans, trace, 3).len() == 1
                })
        })
        .await;

    // Spans leave in order through one queue: the unsampled call's would be in by now, and so
    // would the span of the `/healthz` probe made before the failing call (probes get none).
    assert!(
        spans
            .iter()
            .all(|span| span["attributes"]["http.route"] != "/healthz")
    );
    assert!(spans.iter().all(|span| span["traceId"] != unsampled_trace));

    // The mapped call: a server span (child of the caller's), a client span (its child, and
    // the target's parent) with the stage timings and the status.
    let server_span = of_kind(&spans, CALLER_TRACE, 2)[0];
    let client_span = of_kind(&spans, CALLER_TRACE, 3)[0];
    assert_eq!(server_span["name"], "GET /mtls/account/{account_id}");
    assert_eq!(server_span["parentSpanId"], CALLER_SPAN);
    assert_eq!(
        server_span["attributes"]["http.route"],
        "/mtls/account/{account_id}"
    );
    assert_eq!(server_span["attributes"]["http.response.status_code"], 200);
    assert_eq!(client_span["parentSpanId"], server_span["spanId"]);
    assert_eq!(
        client_span["spanId"],
        parent.as_str(),
        "the target's parent"
    );
    assert_eq!(client_span["name"], "GET");
    let attributes = &client_span["attributes"];
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["server.address"], "localhost");
    assert_eq!(attributes["server.port"], i64::from(server.port));
    assert_eq!(attributes["mtls.connection.reused"], false);
    for stage in [
        "mtls.stage.connect_us",
        "mtls.stage.tls_us",
        "mtls.stage.first_byte_us",
    ] {
        assert!(
            attributes[stage].as_i64().unwrap() > 0,
            "{stage}: {client_span}"
        );
    }
    assert!(client_span["start"].as_u64().unwrap() >= server_span["start"].as_u64().unwrap());
    assert!(client_span["end"].as_u64().unwrap() <= server_span["end"].as_u64().unwrap());

    // The invalid traceparent's call: a new trace whose server span has no parent.
    let restarted = of_kind(&spans, &new_trace, 2)[0];
    assert_eq!(restarted["parentSpanId"], "");
    assert_eq!(
        of_kind(&spans, &new_trace, 3)[0]["spanId"],
        new_parent.as_str()
    );
    assert_eq!(
        of_kind(&spans, &new_trace, 3)[0]["attributes"]["mtls.connection.reused"],
        true,
        "the second call to the target reused the connection"
    );

    let h1_attributes = &of_kind(&spans, h1_trace, 3)[0]["attributes"];
    assert_eq!(h1_attributes["http.response.status_code"], 200);
    assert_eq!(h1_attributes["server.port"], i64::from(h1.port));
    for stage in [
        "mtls.stage.connect_us",
        "mtls.stage.tls_us",
        "mtls.stage.first_byte_us",
    ] {
        assert!(
            h1_attributes[stage].as_i64().unwrap() > 0,
            "{stage}: {h1_attributes}"
        );
    }

    // The failure: the client span carries the code, with status ERROR (2).
    let failed = of_kind(&spans, failing_trace, 3)[0];
    assert_eq!(failed["attributes"]["error.type"], "connect_failed");
    assert_eq!(failed["attributes"]["mtls.answer.status_code"], 424);
    assert_eq!(failed["status"], 2);
    assert!(
        failed["attributes"]
            .get("http.response.status_code")
            .is_none()
    );
    assert_eq!(
        of_kind(&spans, failing_trace, 2)[0]["attributes"]["http.response.status_code"],
        424
    );

    // Every export: protobuf, the service name, and nothing from a header, path or query.
    for export in &receiver.exports {
        assert_eq!(export["path"], "/v1/traces");
        assert_eq!(export["contentType"], "application/x-protobuf");
        assert_eq!(export["resources"][0]["service.name"], "gateway-under-test");
        let raw = hex_decode(export["raw"].as_str().unwrap());
        for secret in secrets {
            assert!(
                !raw.windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "the payload holds {secret:?}"
            );
        }
    }

    // The export is counted.
    let metrics = crate::support::client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mtls_tracing_spans_total{outcome=\"exported\"}"),
        "{metrics}"
    );
    app.running.stop().await.unwrap();
}

/// A collector that takes connections and never answers: spans past the queue are dropped
/// and counted, and every request still succeeds.
#[tokio::test]
async fn a_stalled_collector_drops_spans_and_fails_no_request() {
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let server = upstream::start(&pki, None).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let app = spawn(|config| {
        trusting(&server)(config);
        config.tracing.otlp_endpoint = Some(
            format!("http://127.0.0.1:{port}/v1/traces")
                .parse()
                .unwrap(),
        );
        config.tracing.batch_size = 1;
        config.tracing.queue_capacity = 1;
        config.tracing.export_timeout_seconds = std::time::Duration::from_secs_f64(60.0);
    })
    .await;
    let tenant = Tenant::new(&app);
    let target = format!("https://localhost:{}/echo/x", server.port);
    // Each call makes two spans; the exporter holds at most one being sent and one queued.
    for _ in 0..4 {
        let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let metrics = crate::support::client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("mtls_tracing_spans_total{outcome=\"dropped\"} "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(dropped >= 8 - 2, "dropped {dropped}");
    app.running.stop().await.unwrap();
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}
