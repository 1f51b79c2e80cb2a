//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint of SPEC, built here from
//! the code. Response bodies come from the DTO types themselves (`schemars` reads the same
//! serde attributes the handlers serialize with, so the schema cannot drift from the wire);
//! request bodies and the JSON-built answers (checks, audit, health) are described beside the
//! operations. Every error is the one `ErrorBody` of `api::error`.
//!
//! Checked in CI by `openapi-spec-validator` and fuzzed by `schemathesis` against the live
//! gateway (`scripts/api-fuzz`); `tests/it/openapi.rs` calls every documented operation and
//! checks that the router serves it, and asks the router, for every path it was built with
//! ([`crate::routed_paths`], recorded as `routes::routes` builds it), which methods it answers, each of which must be
//! documented: the document cannot drift from the routes in either direction.

use axum::Json;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::dto::{Certificate, Mapping, SaveResult, TesterReport};

/// One operation: method, path, and how it is described.
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// `MTLS_READ_INTERNAL`, ...; `None`: no credential needed.
    privilege: Option<&'static str>,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Vec<(&'static str, Value)>,
}

/// `value` with `key` set (`value` is always an object here).
fn set(mut value: Value, key: &str, extra: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.insert(key.to_owned(), extra);
    }
    value
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_response(description: &str, body: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": body } } })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn header(name: &str, description: &str, required: bool) -> Value {
    json!({ "name": name, "in": "header", "required": required, "description": description, "schema": { "type": "string" } })
}

fn account() -> Value {
    json!({ "name": "accountId", "in": "path", "required": true,
            "description": "The account (SPEC 2): 1 to 64 characters of letters, digits, '-', '_' and '.'.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$" } })
}

fn id(description: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

fn flag(name: &str, description: &str) -> Value {
    query(
        name,
        description,
        json!({ "type": "string", "enum": ["true", "false", "1", "0"] }),
    )
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn multipart(properties: Value, required: &[&str]) -> Value {
    json!({ "required": true, "content": { "multipart/form-data": { "schema": {
        "type": "object", "properties": properties, "required": required } } } })
}

fn revision_headers() -> Value {
    json!({
        "ETag": { "description": "The account's mapping revision, quoted.", "schema": { "type": "string" } },
        "ac-revision": { "description": "The account's mapping revision.", "schema": { "type": "string" } }
    })
}

fn operations() -> Vec<Operation> {
    let certificates = "/mtls/account/{accountId}/certificates";
    let mappings = "/api/account/{accountId}/configuration/ac-common/mtls";
    let item_upload = multipart(
        json!({
            "file": { "type": "string", "format": "binary", "description": "The PKCS#12 file." },
            "certificate": { "type": "string", "description": "JSON text: {\"name\", \"password\"} (and \"id\" on PUT)." }
        }),
        &["file", "certificate"],
    );
    let saved = |status: &str| {
        json_response(
            &format!("{status}: the save result (SPEC 4.3)."),
            schema("SaveResult"),
        )
    };
    let v3 = query(
        "v",
        "API version; must be 3.0.",
        json!({ "type": "string", "enum": ["3.0"] }),
    );
    let mut list = vec![
        Operation {
            method: "get",
            path: "/healthz",
            id: "healthz",
            summary: "The process answers.",
            tag: "health",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json_response(
                    "Alive.",
                    json!({ "type": "object", "properties": { "status": { "type": "string" } }, "required": ["status"] }),
                ),
            )],
        },
        Operation {
            method: "get",
            path: "/readyz",
            id: "readyz",
            summary: "Ready to serve: database and secret store reachable, not shutting down.",
            tag: "health",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![
                ("200", json_response("Ready.", schema("Readiness"))),
                (
                    "503",
                    json_response(
                        "Not ready (a dependency is missing, or shutting down).",
                        schema("Readiness"),
                    ),
                ),
            ],
        },
        Operation {
            method: "get",
            path: "/metrics",
            id: "metrics",
            summary: "Prometheus metrics (text format 0.0.4); a bearer token when `metrics.bearer_token` is set.",
            tag: "health",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "Metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } }),
            )],
        },
        Operation {
            method: "get",
            path: "/openapi.json",
            id: "openapi",
            summary: "This document.",
            tag: "health",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json_response("OpenAPI 3.1.", json!({ "type": "object" })),
            )],
        },
        Operation {
            method: "get",
            path: "/",
            id: "console",
            summary: "The operator console (docs/console.md): a page calling this API with the operator's token.",
            tag: "console",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The page.", "content": { "text/html": { "schema": { "type": "string" } } } }),
            )],
        },
        Operation {
            method: "get",
            path: "/console/app.js",
            id: "consoleScript",
            summary: "The console's script.",
            tag: "console",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The script.", "content": { "text/javascript": { "schema": { "type": "string" } } } }),
            )],
        },
        Operation {
            method: "get",
            path: "/console/style.css",
            id: "consoleStyle",
            summary: "The console's style sheet.",
            tag: "console",
            privilege: None,
            parameters: vec![],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The style sheet.", "content": { "text/css": { "schema": { "type": "string" } } } }),
            )],
        },
        Operation {
            method: "post",
            path: "/oauth2/token",
            id: "oauth2Token",
            summary: "RFC 6749 client credentials (SPEC 3): an app key's consumer key and secret, by HTTP Basic (client_secret_basic) or in the form (client_secret_post), for a short-lived Bearer token. Errors are RFC 6749 5.2 JSON (OAuthError), not ErrorBody; 429 (rate limited) is ErrorBody.",
            tag: "auth",
            privilege: None,
            parameters: vec![],
            body: Some(
                json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": {
                "type": "object",
                "properties": {
                    "grant_type": { "type": "string", "enum": ["client_credentials"] },
                    "client_id": { "type": "string", "description": "client_secret_post: the consumer key." },
                    "client_secret": { "type": "string", "description": "client_secret_post: the consumer secret." },
                    "scope": { "type": "string", "description": "Optional: space-separated privileges, a subset of the key's." }
                },
                "required": ["grant_type"] } } } }),
            ),
            responses: vec![
                (
                    "200",
                    json_response(
                        "The token (Cache-Control: no-store).",
                        schema("TokenResponse"),
                    ),
                ),
                (
                    "400",
                    json_response(
                        "invalid_request, unsupported_grant_type, invalid_scope, or invalid_client after client_secret_post.",
                        schema("OAuthError"),
                    ),
                ),
                (
                    "401",
                    json_response(
                        "invalid_client after HTTP Basic (or without client authentication), with WWW-Authenticate: Basic.",
                        schema("OAuthError"),
                    ),
                ),
            ],
        },
        Operation {
            method: "post",
            path: "/mtls/account/{accountId}/p12-test/multipart",
            id: "testP12",
            summary: "Test a PKCS#12 file and its password (SPEC 8); nothing is stored.",
            tag: "tester",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![
                account(),
                header(
                    "LP-forward-url",
                    "Live form: call this URL presenting the certificate.",
                    false,
                ),
                header("LP-method-override", "Live form: the method (GET).", false),
                header(
                    "LP-content-type-override",
                    "Live form: the Content-Type sent.",
                    false,
                ),
                header(
                    "LP-authorization-override",
                    "Live form: the Authorization sent.",
                    false,
                ),
                flag(
                    "report",
                    "Live form: answer the stage-by-stage report instead of the target's answer.",
                ),
            ],
            body: Some(multipart(
                json!({
                    "file": { "type": "string", "format": "binary" },
                    "password": { "type": "string" },
                    "body": { "type": "string", "format": "binary", "description": "Live form: the request body sent." }
                }),
                &["file"],
            )),
            responses: vec![
                (
                    "200",
                    json_response(
                        "Validate-only: the file is usable. Live form with report=true: the report. Live form without it: the target's answer, relayed.",
                        json!({ "oneOf": [schema("TesterReport"), schema("LiveReport")] }),
                    ),
                ),
                (
                    "424",
                    json_response(
                        "Live form: the call failed at a stage (SPEC 7.4).",
                        schema("ErrorBody"),
                    ),
                ),
            ],
        },
        Operation {
            method: "get",
            path: certificates,
            id: "listCertificates",
            summary: "The account's certificates (SPEC 4.1).",
            tag: "certificates",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![
                account(),
                flag("include_deleted", "Include deleted certificates."),
                query(
                    "expiringWithinDays",
                    "Additive: only live certificates whose notAfter is at most this many days away.",
                    json!({ "type": "integer", "minimum": 0, "maximum": 36500 }),
                ),
            ],
            body: None,
            responses: vec![(
                "200",
                json_response(
                    "The certificates.",
                    json!({ "type": "array", "items": schema("Certificate") }),
                ),
            )],
        },
        Operation {
            method: "post",
            path: certificates,
            id: "createCertificates",
            summary: "Upload certificates (JSON, SPEC 4.3).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account()],
            body: Some(json_body(
                json!({ "type": "array", "items": schema("CertificateItem"), "minItems": 1, "maxItems": mtls_control::certificates::MAX_ITEMS }),
            )),
            responses: vec![
                ("201", saved("201")),
                (
                    "503",
                    saved("503: every item failed to reach the secret store"),
                ),
            ],
        },
        Operation {
            method: "put",
            path: certificates,
            id: "updateCertificates",
            summary: "Replace certificates by id (JSON, SPEC 4.3).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account()],
            body: Some(json_body(
                json!({ "type": "array", "items": schema("CertificateItem"), "minItems": 1, "maxItems": mtls_control::certificates::MAX_ITEMS }),
            )),
            responses: vec![
                ("200", saved("200")),
                (
                    "503",
                    saved("503: every item failed to reach the secret store"),
                ),
            ],
        },
    ];
    for (path, create, update) in [
        (
            "/mtls/account/{accountId}/certificates/by-file",
            "createCertificateByFile",
            "updateCertificateByFile",
        ),
        (
            "/mtls/account/{accountId}/certificates/byFile",
            "createCertificateByFileLegacy",
            "updateCertificateByFileLegacy",
        ),
    ] {
        list.push(Operation {
            method: "post",
            path,
            id: create,
            summary: "Upload one certificate (multipart, SPEC 4.3).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account()],
            body: Some(item_upload.clone()),
            responses: vec![
                ("201", saved("201")),
                ("503", saved("503: the secret store failed")),
            ],
        });
        list.push(Operation {
            method: "put",
            path,
            id: update,
            summary: "Replace one certificate (multipart, SPEC 4.3).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account()],
            body: Some(item_upload.clone()),
            responses: vec![
                ("200", saved("200")),
                ("503", saved("503: the secret store failed")),
            ],
        });
    }
    list.extend([
        Operation {
            method: "get",
            path: "/mtls/account/{accountId}/certificates/{id}",
            id: "getCertificate",
            summary: "One certificate.",
            tag: "certificates",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: None,
            responses: vec![("200", json_response("The certificate.", schema("Certificate")))],
        },
        Operation {
            method: "delete",
            path: "/mtls/account/{accountId}/certificates/{id}",
            id: "deleteCertificate",
            summary: "Delete a certificate (its secret is destroyed first; SPEC 4.5).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id."), flag("force", "Disable the mappings that use it instead of refusing (409).")],
            body: None,
            responses: vec![("200", json_response("The deleted certificate.", schema("Certificate")))],
        },
        Operation {
            method: "get",
            path: "/api/account/{accountId}/certificate/{id}",
            id: "collectCertificate",
            summary: "Collect: the stored PKCS#12 in an AES-256 ZIP encrypted with its upload password; for a key the gateway made (SPEC 4.6), an unencrypted ZIP of the certificate, chain and CSR (never the key).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The ZIP.", "content": { "application/zip": { "schema": { "type": "string", "format": "binary" } } } }),
            )],
        },
        Operation {
            method: "post",
            path: "/mtls/account/{accountId}/certificates/activate/{id}",
            id: "activateCertificate",
            summary: "Map a certificate to a service and URL, optionally validating the URL with it (SPEC 4.4).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id."), flag("isValidateUrlEnabled", "Call the URL with the certificate first.")],
            body: Some(json!({ "required": false, "content": { "application/json": { "schema": schema("ActivateBody") } } })),
            responses: vec![("201", json_response("The mapping made.", schema("Mapping")))],
        },
        // SPEC 4.6: certificate requests (request, CSR, chain)
        Operation {
            method: "post",
            path: "/mtls/account/{accountId}/certificates/requests",
            id: "requestCertificate",
            summary: "Have the gateway make a key and answer its CSR (SPEC 4.6); the certificate is Pending until its chain is uploaded. The key never leaves the gateway.",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account()],
            body: Some(json_body(schema("CertificateRequest"))),
            responses: vec![("201", json_response("The pending certificate and its CSR.", schema("CertificateRequested")))],
        },
        Operation {
            method: "get",
            path: "/mtls/account/{accountId}/certificates/{id}/csr",
            id: "getCertificateCsr",
            summary: "The CSR of a certificate whose key the gateway made (SPEC 4.6); 404 for a certificate from a PKCS#12 file.",
            tag: "certificates",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The PKCS#10 request, PEM.", "content": { "application/pkcs10": { "schema": { "type": "string" } } } }),
            )],
        },
        Operation {
            method: "put",
            path: "/mtls/account/{accountId}/certificates/{id}/chain",
            id: "uploadCertificateChain",
            summary: "Complete a pending request with its signed certificate and chain, PEM, leaf first (SPEC 4.6); at most 64 KiB (413 past it). 409 not_pending when the certificate is not waiting for one.",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: Some(json!({ "required": true, "content": {
                "application/x-pem-file": { "schema": { "type": "string" } },
                "text/plain": { "schema": { "type": "string" } }
            } })),
            responses: vec![("200", json_response("The certificate, now Available.", schema("Certificate")))],
        },
        Operation {
            method: "get",
            path: "/mtls/account/{accountId}/audit",
            id: "audit",
            summary: "The account's audit trail, newest first.",
            tag: "audit",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![
                account(),
                query("since", "RFC 3339 time or Unix seconds.", json!({ "type": "string" })),
                query("limit", "1 to 500 (100).", json!({ "type": "integer", "minimum": 1, "maximum": 500 })),
                query("before", "The `next` cursor of the previous page.", json!({ "type": "string" })),
            ],
            body: None,
            responses: vec![("200", json_response("A page of entries.", schema("AuditPage")))],
        },
        Operation {
            method: "get",
            path: mappings,
            id: "listMappings",
            summary: "The account's mappings (SPEC 5).",
            tag: "mappings",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account(), v3.clone(), flag("include_deleted", "Include deleted mappings.")],
            body: None,
            responses: vec![("200", set(json_response("The mappings.", json!({ "type": "array", "items": schema("Mapping") })), "headers", revision_headers()))],
        },
        Operation {
            method: "post",
            path: mappings,
            id: "createMappings",
            summary: "Create mappings (SPEC 5.2).",
            tag: "mappings",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), v3.clone(), header("If-Match", "The revision the change is based on (412 when stale).", false)],
            body: Some(json_body(json!({ "type": "array", "items": schema("MappingInput"), "minItems": 1 }))),
            responses: vec![("201", set(json_response("The mappings made.", json!({ "type": "array", "items": schema("Mapping") })), "headers", revision_headers()))],
        },
        Operation {
            method: "get",
            path: "/api/account/{accountId}/configuration/ac-common/mtls/{id}",
            id: "getMapping",
            summary: "One mapping.",
            tag: "mappings",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account(), id("The mapping id."), v3.clone()],
            body: None,
            responses: vec![("200", set(json_response("The mapping.", schema("Mapping")), "headers", revision_headers()))],
        },
        Operation {
            method: "put",
            path: "/api/account/{accountId}/configuration/ac-common/mtls/{id}",
            id: "updateMapping",
            summary: "Replace a mapping.",
            tag: "mappings",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The mapping id."), v3.clone(), header("If-Match", "The revision the change is based on (412 when stale).", false)],
            body: Some(json_body(schema("MappingInput"))),
            responses: vec![("200", set(json_response("The mapping.", schema("Mapping")), "headers", revision_headers()))],
        },
        Operation {
            method: "delete",
            path: "/api/account/{accountId}/configuration/ac-common/mtls/{id}",
            id: "deleteMapping",
            summary: "Delete a mapping.",
            tag: "mappings",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The mapping id."), v3, header("If-Match", "The revision the change is based on (412 when stale).", false)],
            body: None,
            responses: vec![("200", set(json_response("The deleted mapping.", schema("Mapping")), "headers", revision_headers()))],
        },
        Operation {
            method: "post",
            path: "/mtls/mapping",
            id: "checkMappings",
            summary: "Runtime check: is a certificate configured for each (account, service, URL)? (SPEC 6.1)",
            tag: "runtime",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![query("v", "1 (one object keyed by the triplet) or 2 (the items with doExist).", json!({ "type": "string", "enum": ["1", "2"] }))],
            body: Some(json_body(json!({ "type": "array", "items": schema("CheckItem"), "maxItems": 1000 }))),
            responses: vec![(
                "200",
                json_response("v=1: an object of booleans; v=2: the items with doExist.", json!({
                    "oneOf": [
                        { "type": "array", "items": schema("CheckAnswer") },
                        { "type": "object", "additionalProperties": { "type": "boolean" } }
                    ]
                })),
            )],
        },
        Operation {
            method: "post",
            path: "/api/account/{accountId}/checks/serviceUrlMappings",
            id: "checkAccountMappings",
            summary: "Runtime check within one account (SPEC 6.1).",
            tag: "runtime",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account()],
            body: Some(json_body(json!({ "type": "array", "items": schema("AccountCheckItem"), "maxItems": 1000 }))),
            responses: vec![(
                "200",
                json_response("The items with doExist.", json!({ "type": "array", "items": schema("AccountCheckAnswer") })),
            )],
        },
    ]);
    for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
        list.push(Operation {
            method,
            path: "/mtls/account/{accountId}",
            id: match method {
                "get" => "forwardGet",
                "post" => "forwardPost",
                "put" => "forwardPut",
                "patch" => "forwardPatch",
                "delete" => "forwardDelete",
                "head" => "forwardHead",
                _ => "forwardOptions",
            },
            summary: "Forward the request to LP-forward-url in mutual TLS with the mapped certificate (SPEC 6.2); the target's answer is relayed.",
            tag: "runtime",
            privilege: Some("MTLS_FORWARD"),
            parameters: vec![
                account(),
                header("LP-forward-url", "The target URL (https).", true),
                header("LP-service-name", "The service of the mapping; without it the URL alone must be unambiguous.", false),
                header("LP-authorization-override", "Sent to the target as Authorization.", false),
                header("LP-stop-if-certificate-not-found", "true: 400 instead of an unmapped call.", false),
            ],
            body: None,
            responses: vec![
                ("2XX", json!({ "description": "The target's answer, relayed as is." })),
                ("3XX", json!({ "description": "A redirect the gateway does not follow, relayed as is: to another origin, past 5 hops, a 307/308 after a body over 64 KiB, or any with forward.follow_redirects = never (same-origin ones are followed with the same certificate)." })),
                ("408", json_response("The caller's request body stalled past forward.body_idle_timeout_seconds (request_body_timeout).", schema("ErrorBody"))),
                ("424", set(json_response("The transport to the target failed (SPEC 7.4).", schema("ErrorBody")), "headers", json!({
                        "LP-error-from-transport": { "schema": { "type": "string" }, "description": "The failure code." },
                        "LP-message-from-transport": { "schema": { "type": "string" }, "description": "The failure, for people." }
                    }))),
            ],
        });
    }
    // SPEC 4.6: renewal
    let renewal = "/mtls/account/{accountId}/certificates/{id}/renewal";
    let pem_text = json!({ "type": "string", "description": "PEM text." });
    list.extend([
        Operation {
            method: "post",
            path: renewal,
            id: "startRenewal",
            summary: "Renew a certificate without a gap: a new key made inside the gateway and its CSR; the current key stays live (SPEC 4.6).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: Some(json!({ "required": false, "content": { "application/json": { "schema": {
                "type": "object",
                "properties": {
                    "keyType": { "type": "string", "enum": ["P-256", "P-384", "RSA-2048", "RSA-3072"], "description": "The new key's type; the current key's by default." },
                    "subject": { "type": "string", "description": "RFC 4514; the current certificate's subject by default." }
                }
            } } } })),
            responses: vec![(
                "201",
                json_response("The renewal's CSR (PKCS#10, PEM).", json!({ "type": "object", "properties": { "csr": pem_text }, "required": ["csr"] })),
            )],
        },
        Operation {
            method: "delete",
            path: renewal,
            id: "cancelRenewal",
            summary: "Cancel the renewal in progress; its key is destroyed (404 no_renewal when there is none).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: None,
            responses: vec![("200", json_response("The certificate.", schema("Certificate")))],
        },
        Operation {
            method: "get",
            path: "/mtls/account/{accountId}/certificates/{id}/renewal/csr",
            id: "getRenewalCsr",
            summary: "The renewal's CSR again.",
            tag: "certificates",
            privilege: Some("MTLS_READ_INTERNAL"),
            parameters: vec![account(), id("The certificate id.")],
            body: None,
            responses: vec![(
                "200",
                json!({ "description": "The CSR.", "content": { "application/pkcs10": { "schema": pem_text } } }),
            )],
        },
        Operation {
            method: "put",
            path: "/mtls/account/{accountId}/certificates/{id}/renewal/chain",
            id: "uploadRenewalChain",
            summary: "The renewal's signed certificate and its chain (PEM, leaf first): the certificate switches to the new key and the next version at once or at activateAt (SPEC 4.6).",
            tag: "certificates",
            privilege: Some("MTLS_WRITE_INTERNAL"),
            parameters: vec![
                account(),
                id("The certificate id."),
                query("activateAt", "RFC 3339; when to switch (at most a year ahead). Absent or past: at once.", json!({ "type": "string" })),
            ],
            body: Some(json!({ "required": true, "content": {
                "application/x-pem-file": { "schema": { "type": "string", "maxLength": mtls_pki::MAX_CHAIN_PEM_BYTES } },
                "text/plain": { "schema": { "type": "string", "maxLength": mtls_pki::MAX_CHAIN_PEM_BYTES } },
                "application/pem-certificate-chain": { "schema": { "type": "string", "maxLength": mtls_pki::MAX_CHAIN_PEM_BYTES } }
            } })),
            responses: vec![("200", json_response("The certificate: switched (version + 1), or its renewal Scheduled.", schema("Certificate")))],
        },
    ]);
    list
}

/// Schemas written here: request bodies and the answers built as JSON values.
fn handwritten_schemas() -> Map<String, Value> {
    let string = json!({ "type": "string" });
    let mut schemas = Map::new();
    schemas.insert("ErrorBody".into(), json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["code", "message", "requestId"],
            "properties": {
                "code": { "type": "string", "description": "Stable code (docs/errors.md)." },
                "message": { "type": "string" },
                "requestId": { "type": "string" },
                "items": { "type": "array", "items": {
                    "type": "object", "required": ["index", "code", "message"],
                    "properties": { "index": { "type": "integer", "minimum": 0 }, "code": string, "message": string } } }
            }
        } }
    }));
    schemas.insert("TokenResponse".into(), json!({
        "type": "object",
        "description": "RFC 6749 5.1.",
        "properties": {
            "access_token": string,
            "token_type": { "type": "string", "enum": ["Bearer"] },
            "expires_in": { "type": "integer", "minimum": 1 },
            "scope": { "type": "string", "description": "The privileges granted, space-separated." }
        },
        "required": ["access_token", "token_type", "expires_in"]
    }));
    schemas.insert("OAuthError".into(), json!({
        "type": "object",
        "description": "RFC 6749 5.2.",
        "properties": {
            "error": { "type": "string", "enum": ["invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope", "server_error"] },
            "error_description": string
        },
        "required": ["error"]
    }));
    schemas.insert("LiveReport".into(), json!({
        "type": "object",
        "description": "The live tester's report: each stage (dns, connect, tls, http) with its duration and outcome, and advice.",
        "properties": {
            "outcome": { "type": "string", "enum": ["ok", "failed"] },
            "failedStage": { "type": ["string", "null"], "enum": ["dns", "connect", "tls", "http", null] },
            "failure": { "type": ["object", "null"] },
            "advice": { "type": "array", "items": { "type": "string" } },
            "file": schema("TesterReport"),
            "stages": { "type": "array", "items": {
                "type": "object",
                "properties": { "stage": string, "ok": { "type": "boolean" }, "durationMs": { "type": "number" } },
                "required": ["stage", "ok", "durationMs"]
            } }
        },
        "required": ["outcome", "advice", "file", "stages"]
    }));
    schemas.insert("CertificateItem".into(), json!({
        "type": "object",
        "description": "One PKCS#12 upload: the file as base64 text or as an array of byte values (signed or unsigned).",
        "properties": {
            "id": { "type": ["integer", "string"], "description": "PUT: the certificate to replace." },
            "name": { "type": "string", "minLength": 1 },
            "p12": { "oneOf": [
                { "type": "string", "contentEncoding": "base64" },
                { "type": "array", "items": { "type": "integer", "minimum": -128, "maximum": 255 } }
            ] },
            "password": { "type": "string" }
        },
        "required": ["name", "p12", "password"]
    }));
    schemas.insert("CertificateRequest".into(), json!({
        "type": "object",
        "description": "A key made by the gateway (SPEC 4.6, docs/certificate-requests.md).",
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": 128 },
            "subject": { "type": "string", "description": "RFC 4514, most specific first: CN=brand-a,O=Brand A." },
            "keyType": { "type": "string", "enum": ["P-256", "P-384", "RSA-2048", "RSA-3072"], "description": "P-256 when absent." },
            "subjectAltNames": { "type": "array", "maxItems": mtls_pki::MAX_ALT_NAMES, "items": { "type": "string" } }
        },
        "required": ["name", "subject"]
    }));
    schemas.insert("MappingInput".into(), json!({
        "type": "object",
        "properties": {
            "name": string,
            "certificationId": { "type": ["integer", "string"] },
            "serviceId": { "type": ["integer", "string"] },
            "url": { "type": "string", "format": "uri" },
            "siteId": { "type": ["integer", "string"] },
            "enable": { "type": "boolean" },
            "upstreamCaPem": { "type": "string", "description": "Additive: PEM CAs trusted for this target's server certificate." }
        },
        "required": ["name", "certificationId", "serviceId", "url"]
    }));
    schemas.insert(
        "ActivateBody".into(),
        json!({
            "type": "object",
            "properties": { "serviceName": string, "url": { "type": "string", "format": "uri" } }
        }),
    );
    schemas.insert(
        "CheckItem".into(),
        json!({
            "type": "object",
            "properties": { "serviceName": string, "accountId": string, "url": string },
            "required": ["serviceName", "accountId", "url"]
        }),
    );
    schemas.insert("CheckAnswer".into(), json!({
        "type": "object",
        "properties": { "serviceName": string, "accountId": string, "url": string, "doExist": { "type": "boolean" } },
        "required": ["doExist"]
    }));
    schemas.insert(
        "AccountCheckItem".into(),
        json!({
            "type": "object",
            "properties": { "serviceName": string, "url": string },
            "required": ["serviceName", "url"]
        }),
    );
    schemas.insert(
        "AccountCheckAnswer".into(),
        json!({
            "type": "object",
            "properties": { "serviceName": string, "url": string, "exist": { "type": "boolean" } },
            "required": ["exist"]
        }),
    );
    schemas.insert(
        "AuditPage".into(),
        json!({
            "type": "object",
            "properties": {
                "entries": { "type": "array", "items": { "type": "object" } },
                "next": { "type": ["string", "null"] }
            },
            "required": ["entries"]
        }),
    );
    schemas.insert(
        "Readiness".into(),
        json!({
            "type": "object",
            "properties": {
                "status": { "type": "string", "enum": ["ready", "not_ready", "draining"] },
                "checks": { "type": "object", "additionalProperties": { "type": "string" } },
                "certificatesWithoutSecret": { "type": "array", "items": { "type": "object" } }
            },
            "required": ["status"]
        }),
    );
    schemas
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.contract = Contract::Serialize;
    let mut generator = settings.into_generator();
    // Registers each type (and what it refers to) among the definitions.
    generator.subschema_for::<Certificate>();
    generator.subschema_for::<SaveResult>();
    generator.subschema_for::<Mapping>();
    generator.subschema_for::<TesterReport>();
    generator.subschema_for::<crate::dto::CertificateRequested>();
    let mut schemas = generator.take_definitions(true);
    schemas.extend(handwritten_schemas());

    let error = json_response("An error (docs/errors.md).", schema("ErrorBody"));
    let mut paths = Map::new();
    for operation in operations() {
        let mut responses = Map::new();
        for (status, response) in operation.responses {
            responses.insert(status.to_owned(), response);
        }
        responses.insert("default".to_owned(), error.clone());
        let mut described = json!({
            "operationId": operation.id,
            "summary": operation.summary,
            "tags": [operation.tag],
            "parameters": operation.parameters,
            "responses": responses,
        });
        described = match operation.privilege {
            Some(privilege) => set(
                set(
                    described,
                    "description",
                    json!(format!("Requires {privilege} for the account.")),
                ),
                "security",
                json!([{ "bearer": [] }, { "oauth": [] }, { "clientCertificate": [] }]),
            ),
            None => set(described, "security", json!([])),
        };
        if let Some(body) = operation.body {
            described = set(described, "requestBody", body);
        }
        let entry = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(operation.method.to_owned(), described);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mtls-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A multi-tenant mutual-TLS egress gateway. The contract is SPEC.md; this document is generated by the gateway from its code.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "oauth": { "type": "http", "scheme": "OAuth", "description": "OAuth 1.0a (RFC 5849) signatures with app keys." },
                "clientCertificate": { "type": "mutualTLS", "description": "A client certificate mapped by auth.client_certificates." }
            }
        },
        "security": [{ "bearer": [] }, { "oauth": [] }, { "clientCertificate": [] }]
    })
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(document())
}
