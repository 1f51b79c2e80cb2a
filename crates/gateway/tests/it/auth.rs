//! SPEC 3 over HTTP: 401 with a challenge for missing or bad credentials, 403 for credentials
//! that do not cover the account or the privilege, never a hint about what exists.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mtls_auth::Privilege;
use mtls_control::clock::unix_now;
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

use crate::support::{TestApp, client, spawn};

async fn call(
    app: &TestApp,
    account: &str,
    authorization: Option<String>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = client()
        .post(app.url(&format!("/mtls/account/{account}/p12-test/multipart")))
        .multipart(reqwest::multipart::Form::new().text("password", ""));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), challenge)
}

fn signed(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn authentication_and_authorization_rules() {
    let app = spawn(|_| {}).await;
    let secret = mtls_gateway::server::hs256_secret(&app.config)
        .unwrap()
        .unwrap();
    let claims = |accounts: &[&str], privileges: &[&str], exp: u64| json!({"sub": "t", "exp": exp, "accounts": accounts, "privileges": privileges});
    let later = unix_now() + 600;

    // No token, a foreign scheme, garbage, an expired token, a wrong signature: 401 + challenge.
    let cases = [
        None,
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some("Bearer not-a-token".to_owned()),
        Some(format!(
            "Bearer {}",
            signed(
                &secret,
                &claims(&["123"], &["MTLS_READ_INTERNAL"], unix_now() - 120)
            )
        )),
        Some(format!(
            "Bearer {}",
            signed(
                b"another-secret-that-is-32-bytes-long!",
                &claims(&["123"], &["MTLS_READ_INTERNAL"], later)
            )
        )),
    ];
    for authorization in cases {
        let (status, body, challenge) = call(&app, "123", authorization.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(
            challenge
                .unwrap()
                .starts_with("Bearer realm=\"mtls-gateway\"")
        );
    }

    // Valid credentials that do not cover the request: 403, the same for any account id.
    let wrong_account = app.token(&["999"], &[Privilege::ReadInternal]);
    let missing_privilege = app.token(&["123"], &[Privilege::Forward, Privilege::WriteInternal]);
    for token in [&wrong_account, &missing_privilege] {
        for account in ["123", "does-not-exist"] {
            let (status, body, challenge) =
                call(&app, account, Some(format!("Bearer {token}"))).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body["error"]["code"], "forbidden");
            assert_eq!(
                challenge.as_deref(),
                Some(INSUFFICIENT_SCOPE),
                "a Bearer caller's 403 (RFC 6750 3.1)"
            );
        }
    }

    // Covered: the request reaches the handler (which then finds no file part).
    for token in [
        app.token(&["123"], &[Privilege::ReadInternal]),
        app.token(&["*"], &[Privilege::ReadInternal]),
    ] {
        let (status, body, _) = call(&app, "123", Some(format!("Bearer {token}"))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("missing_file"))
        );
    }

    // A malformed account id in the path is a 400 for an authenticated caller, a 401 otherwise.
    let star = app.token(&["*"], &[Privilege::ReadInternal]);
    let (status, body, _) = call(&app, "bad.account", Some(format!("Bearer {star}"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_account_id"))
    );
    let (status, _, _) = call(&app, "bad.account", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.running.stop().await.unwrap();
}

/// An OAuth-signed form body is the one body read before authentication (its parameters are
/// signed): one announced past its 1 MiB limit is refused at once, not awaited.
#[tokio::test]
async fn an_oversized_oauth_form_is_refused_before_it_is_read() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn(|_| {}).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /mtls/account/acct/certificates HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: OAuth oauth_consumer_key=\"k\", oauth_signature=\"s\"\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 2000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.unwrap();
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .is_ok(),
        "the gateway waited for the form body"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    app.running.stop().await.unwrap();
}

/// An identity provider for the claim-mapping tests (issue 18): RSA and P-256 signing keys
/// made by OpenSSL, and the JWKS file the gateway reads, shaped like one a provider serves.
struct Idp {
    jwks_file: std::path::PathBuf,
    rsa: EncodingKey,
    ec: EncodingKey,
}

const IDP_ISSUER: &str = "https://idp.platform.example/realms/apps";

fn idp() -> Option<Idp> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use mtls_test_support::openssl;
    let dir = mtls_test_support::temp_dir("idp");
    let rsa_args = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ];
    let rsa_pem = openssl(&dir, &rsa_args)?;
    let ec_args = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    let ec_pem = openssl(&dir, &ec_args)?;
    std::fs::write(dir.join("rsa.pem"), &rsa_pem).unwrap();
    std::fs::write(dir.join("ec.pem"), &ec_pem).unwrap();
    let modulus = openssl(&dir, &["rsa", "-in", "rsa.pem", "-noout", "-modulus"])?;
    let modulus = String::from_utf8(modulus).unwrap();
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let modulus: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let spki = openssl(
        &dir,
        &["pkey", "-in", "ec.pem", "-pubout", "-outform", "DER"],
    )?;
    // A P-256 SubjectPublicKeyInfo ends with the uncompressed point: 04 || x || y.
    let point = &spki[spki.len() - 64..];
    let jwks = json!({"keys": [
        {"kid": "rsa-2026-11", "kty": "RSA", "alg": "RS256", "use": "sig",
         "n": URL_SAFE_NO_PAD.encode(&modulus), "e": "AQAB"},
        {"kid": "ec-2026-11", "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])}
    ]});
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).unwrap();
    Some(Idp {
        jwks_file,
        rsa: EncodingKey::from_rsa_pem(&rsa_pem).unwrap(),
        ec: EncodingKey::from_ec_pem(&ec_pem).unwrap(),
    })
}

impl Idp {
    /// An app token as the provider issues it, signed RS256 and ES256: the account in `aud`,
    /// the client in `azp`, the rights in `scope`, no `sub`, `accounts` or `privileges`.
    fn tokens(&self, aud: Value, scope: &str, iss: &str) -> [String; 2] {
        let claims = json!({"iss": iss, "aud": aud, "azp": "billing-app", "scope": scope,
            "exp": unix_now() + 600, "iat": unix_now(), "jti": "0c5e", "typ": "Bearer"});
        let sign = |algorithm, kid: &str, key| {
            let mut header = Header::new(algorithm);
            header.kid = Some(kid.to_owned());
            jsonwebtoken::encode(&header, &claims, key).unwrap()
        };
        [
            sign(Algorithm::RS256, "rsa-2026-11", &self.rsa),
            sign(Algorithm::ES256, "ec-2026-11", &self.ec),
        ]
    }
}

async fn list_certificates(app: &TestApp, account: &str, token: &str) -> (StatusCode, Value) {
    let response = client()
        .get(app.url(&format!("/mtls/account/{account}/certificates")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn forward(app: &TestApp, account: &str, token: &str) -> StatusCode {
    client()
        .get(app.url(&format!("/mtls/account/{account}")))
        .bearer_auth(token)
        .header("LP-forward-url", "https://127.0.0.1:9/")
        .header("LP-stop-if-certificate-not-found", "true")
        .send()
        .await
        .unwrap()
        .status()
}

/// Issue 18, item 6: tokens of the platform's identity provider, read through `[auth.claims]`,
/// reach the routes their account and scope cover and get 403 on the others, whatever the key
/// type; the issuer is still checked; a malformed account grants nothing (never a 500).
#[tokio::test]
async fn identity_provider_tokens_through_the_claim_mapping() {
    let Some(idp) = idp() else {
        return;
    };
    let jwks = idp.jwks_file.clone();
    let app = spawn(move |config| {
        config.auth.jwks_files = vec![jwks];
        config.auth.claims = Some(mtls_gateway::config::ClaimsConfig {
            issuer: vec![IDP_ISSUER.to_owned()],
            accounts: "aud".to_owned(),
            caller: "azp".to_owned(),
            scope: "scope".to_owned(),
            scopes: [
                ("mtls.read", vec!["MTLS_READ_INTERNAL".to_owned()]),
                ("mtls.forward", vec!["MTLS_FORWARD".to_owned()]),
            ]
            .into_iter()
            .map(|(value, privileges)| (value.to_owned(), privileges))
            .collect(),
            wildcard_accounts: false,
        });
    })
    .await;
    let account = mtls_test_support::random_account();
    let other = mtls_test_support::random_account();
    let scope = "mtls.read mtls.forward other";

    for token in idp.tokens(json!(account), scope, IDP_ISSUER) {
        let (status, body) = list_certificates(&app, &account, &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!([])));
        let (status, body) = list_certificates(&app, &other, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "forbidden");
        // MTLS_FORWARD from `mtls.forward`: the forward route is reached (no mapping: 400).
        assert_eq!(
            forward(&app, &account, &token).await,
            StatusCode::BAD_REQUEST
        );
    }
    // The caller claim names the caller in the audit trail (a tester run is audited).
    let [rs256, _] = idp.tokens(json!(account), scope, IDP_ISSUER);
    let (status, body, _) = call(&app, &account, Some(format!("Bearer {rs256}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let response = client()
        .get(app.url(&format!("/mtls/account/{account}/audit")))
        .bearer_auth(&rs256)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let trail: Value = response.json().await.unwrap();
    assert!(
        trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["actor"] == "bearer:billing-app"),
        "{trail}"
    );
    // `aud` as an array names each of its accounts.
    for token in idp.tokens(json!([other, account]), "mtls.read", IDP_ISSUER) {
        for covered in [&account, &other] {
            assert_eq!(
                list_certificates(&app, covered, &token).await.0,
                StatusCode::OK
            );
        }
        assert_eq!(forward(&app, &account, &token).await, StatusCode::FORBIDDEN);
    }
    // A scope that grants nothing (unmapped values only): authenticated, 403 on every route.
    for token in idp.tokens(
        json!(account),
        "openid profile MTLS_READ_INTERNAL",
        IDP_ISSUER,
    ) {
        let (status, body) = list_certificates(&app, &account, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "forbidden");
        assert_eq!(forward(&app, &account, &token).await, StatusCode::FORBIDDEN);
    }
    // A malformed account id in `aud`, or `*`, grants no account: 403, never a 500.
    for aud in [
        json!(format!("{account}/x")),
        json!("*"),
        json!(["", "a b"]),
    ] {
        for token in idp.tokens(aud.clone(), scope, IDP_ISSUER) {
            for path_account in [&account, &other] {
                assert_eq!(
                    list_certificates(&app, path_account, &token).await.0,
                    StatusCode::FORBIDDEN,
                    "{aud}"
                );
            }
        }
    }
    // Another issuer's token, signed by the same keys (shared key sets): 401.
    for token in idp.tokens(
        json!(account),
        scope,
        "https://idp.platform.example/realms/x",
    ) {
        let (status, body) = list_certificates(&app, &account, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // The gateway's own tokens keep working beside the mapping.
    let own = app.token(&[&account], &[Privilege::ReadInternal]);
    assert_eq!(
        list_certificates(&app, &account, &own).await.0,
        StatusCode::OK
    );
    app.running.stop().await.unwrap();

    // Without `[auth.claims]` the same keys accept no such token: it has no `sub`.
    let jwks = idp.jwks_file.clone();
    let app = spawn(move |config| config.auth.jwks_files = vec![jwks]).await;
    for token in idp.tokens(json!(account), scope, IDP_ISSUER) {
        let (status, body) = list_certificates(&app, &account, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("required claims missing")
        );
    }
    app.running.stop().await.unwrap();
}

// ---- The 403 challenge of a Bearer caller (issue 18, item 4; SPEC 3) ----------------------

const INSUFFICIENT_SCOPE: &str = r#"Bearer error="insufficient_scope""#;

/// Every route that checks a Bearer caller's accounts or privileges answers its 403 with
/// `WWW-Authenticate: Bearer error="insufficient_scope"`; a 401 keeps its own challenge.
#[tokio::test]
async fn a_bearer_callers_403_names_insufficient_scope_on_every_route() {
    let app = spawn(|_| {}).await;
    let wrong_account = app.token(
        &["999"],
        &[
            Privilege::ReadInternal,
            Privilege::WriteInternal,
            Privilege::Forward,
        ],
    );
    let no_privilege = app.token(&["123"], &[]);
    let routes: [(reqwest::Method, &str); 9] = [
        (reqwest::Method::GET, "/mtls/account/123"),
        (reqwest::Method::POST, "/mtls/account/123"),
        (reqwest::Method::GET, "/mtls/account/123/certificates"),
        (reqwest::Method::DELETE, "/mtls/account/123/certificates/1"),
        (reqwest::Method::GET, "/api/account/123/certificate/1"),
        (reqwest::Method::GET, "/mtls/account/123/audit"),
        (
            reqwest::Method::GET,
            "/api/account/123/configuration/ac-common/mtls?v=3.0",
        ),
        (
            reqwest::Method::POST,
            "/api/account/123/checks/serviceUrlMappings",
        ),
        (reqwest::Method::POST, "/mtls/mapping?v=1"),
    ];
    for (method, path) in &routes {
        for token in [&wrong_account, &no_privilege] {
            let response = client()
                .request(method.clone(), app.url(path))
                .bearer_auth(token)
                .header("LP-forward-url", "https://target.example/")
                .json(&json!([]))
                .send()
                .await
                .unwrap();
            if *path == "/mtls/mapping?v=1" && token == &wrong_account {
                // The global check names its accounts in the body; an empty body names none.
                continue;
            }
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(
                response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|value| value.to_str().unwrap()),
                Some(INSUFFICIENT_SCOPE),
                "{method} {path}"
            );
        }
        // No credential: 401 with the Bearer realm challenge, not the 403's.
        let response = client()
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with(r#"Bearer realm="mtls-gateway""#)
                && !challenge.contains("insufficient_scope"),
            "{challenge}"
        );
    }
    // The global check with an account of the body the token does not cover.
    let response = client()
        .post(app.url("/mtls/mapping?v=1"))
        .bearer_auth(&wrong_account)
        .json(&json!([{"accountId": "123", "serviceName": "IDP", "url": "https://idp.example/"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE].to_str().unwrap(),
        INSUFFICIENT_SCOPE
    );
    app.running.stop().await.unwrap();
}
