//! Bearer token rules of SPEC 3, with keys made by OpenSSL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mtls_auth::bearer::{Grant, unix_now};
use mtls_auth::{
    AuthError, Authenticator, BearerConfig, BearerVerifier, Credentials, Privilege, TokenIssuer,
};
use mtls_test_support::{openssl, temp_dir};
use serde_json::json;
use zeroize::Zeroizing;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

fn hs256_verifier() -> BearerVerifier {
    BearerVerifier::new(BearerConfig {
        hs256_secret: Some(Zeroizing::new(SECRET.to_vec())),
        leeway_seconds: 0,
        ..BearerConfig::default()
    })
    .unwrap()
}

fn sign(
    claims: &serde_json::Value,
    algorithm: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn claims(accounts: &[&str], privileges: &[&str], exp_offset: i64) -> serde_json::Value {
    json!({
        "sub": "svc-test",
        "exp": (unix_now() as i64 + exp_offset),
        "accounts": accounts,
        "privileges": privileges,
    })
}

fn hs(claims: &serde_json::Value) -> String {
    sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET).unwrap(),
        None,
    )
}

#[test]
fn a_valid_token_yields_its_principal() {
    let principal = hs256_verifier()
        .verify(&hs(&claims(&["123"], &["MTLS_READ_INTERNAL"], 600)))
        .unwrap();
    assert_eq!(principal.subject, "svc-test");
    assert!(principal.authorize("123", Privilege::ReadInternal).is_ok());
    assert!(principal.authorize("999", Privilege::ReadInternal).is_err());
    assert!(principal.authorize("123", Privilege::Forward).is_err());
}

#[test]
fn expired_tampered_and_incomplete_tokens_are_refused() {
    let verifier = hs256_verifier();
    assert_eq!(
        verifier.verify(&hs(&claims(&["1"], &["MTLS_FORWARD"], -60))),
        Err(AuthError::Invalid("token expired"))
    );
    let other = EncodingKey::from_secret(b"another-secret-another-secret-another").unwrap();
    assert_eq!(
        verifier.verify(&sign(
            &claims(&["1"], &[], 600),
            Algorithm::HS256,
            &other,
            None
        )),
        Err(AuthError::Invalid("signature does not verify"))
    );
    let token = hs(&claims(&["1"], &["MTLS_READ_INTERNAL"], 600));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims(&["*"], &["MTLS_WRITE_INTERNAL"], 600).to_string());
    parts[1] = &forged;
    assert!(verifier.verify(&parts.join(".")).is_err());
    for missing in ["exp", "sub", "accounts", "privileges"] {
        let mut incomplete = claims(&["1"], &["MTLS_FORWARD"], 600);
        incomplete.as_object_mut().unwrap().remove(missing);
        assert!(
            matches!(
                verifier.verify(&hs(&incomplete)),
                Err(AuthError::Invalid(_))
            ),
            "a token without {missing} must be refused"
        );
    }
    // An unsigned token ("alg": "none") is never accepted.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&["*"], &["MTLS_FORWARD"], 600).to_string())
    );
    assert!(verifier.verify(&unsigned).is_err());
    assert!(verifier.verify("not-a-jwt").is_err());
}

#[test]
fn the_issuer_mints_what_the_verifier_accepts() {
    let issuer = TokenIssuer::hs256(SECRET).unwrap();
    let grant = Grant {
        subject: "cli".to_owned(),
        accounts: vec!["*".to_owned()],
        privileges: vec![Privilege::Forward, Privilege::ReadInternal],
        ttl_seconds: 60,
    };
    let token = issuer.issue(&grant, unix_now(), "id-1".to_owned()).unwrap();
    let principal = hs256_verifier().verify(&token).unwrap();
    assert!(
        principal
            .authorize("any-account", Privilege::Forward)
            .is_ok()
    );
    assert!(
        principal
            .authorize("any-account", Privilege::WriteInternal)
            .is_err()
    );
    assert!(TokenIssuer::hs256(b"short").is_err());
}

struct NoKeys;

impl mtls_auth::oauth::AppKeys for NoKeys {
    fn app_key(&self, _: &str) -> Option<std::sync::Arc<mtls_auth::oauth::AppKey>> {
        None
    }
}

fn credentials(authorization: Option<&str>) -> Credentials<'_> {
    Credentials {
        authorization,
        request: mtls_auth::oauth::SignedRequest {
            method: "GET",
            origin: "http://x",
            path: "/",
            query: "",
            form_body: None,
        },
    }
}

#[test]
fn the_authenticator_separates_missing_foreign_and_bearer_credentials() {
    let authenticator = Authenticator::new(hs256_verifier(), 300);
    let token = format!(
        "Bearer {}",
        hs(&claims(&["1"], &["MTLS_READ_INTERNAL"], 600))
    );
    assert!(
        authenticator
            .authenticate(&credentials(Some(&token)), &NoKeys, 0)
            .map(|verified| verified.principal)
            .is_ok()
    );
    assert_eq!(
        authenticator
            .authenticate(&credentials(None), &NoKeys, 0)
            .map(|verified| verified.principal),
        Err(AuthError::Missing)
    );
    assert_eq!(
        authenticator
            .authenticate(&credentials(Some("Basic dXNlcjpwYXNz")), &NoKeys, 0)
            .map(|verified| verified.principal),
        Err(AuthError::UnsupportedScheme)
    );
    assert!(
        AuthError::Invalid("token expired")
            .challenge()
            .contains("invalid_token")
    );
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let verifier = BearerVerifier::new(BearerConfig {
        hs256_secret: Some(Zeroizing::new(SECRET.to_vec())),
        audience: vec!["mtls-gateway".to_owned()],
        issuer: vec!["https://idp.example".to_owned()],
        ..BearerConfig::default()
    })
    .unwrap();
    let mut good = claims(&["1"], &["MTLS_FORWARD"], 600);
    good["aud"] = json!("mtls-gateway");
    good["iss"] = json!("https://idp.example");
    assert!(verifier.verify(&hs(&good)).is_ok());
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_eq!(
        verifier.verify(&hs(&wrong_aud)),
        Err(AuthError::Invalid("audience not accepted"))
    );
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        verifier.verify(&hs(&wrong_iss)),
        Err(AuthError::Invalid("issuer not accepted"))
    );
    let mut no_aud = good;
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(verifier.verify(&hs(&no_aud)).is_err());
}

#[test]
fn rs256_from_jwks_and_es256_from_pem() {
    let dir = temp_dir("bearer-keys");
    if openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    )
    .is_none()
    {
        return;
    }
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
    )
    .unwrap();
    openssl(
        &dir,
        &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"],
    )
    .unwrap();
    let modulus =
        String::from_utf8(openssl(&dir, &["rsa", "-in", "rsa.pem", "-noout", "-modulus"]).unwrap())
            .unwrap();
    let modulus_hex = modulus.trim().trim_start_matches("Modulus=");
    let modulus_bytes: Vec<u8> = (0..modulus_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&modulus_hex[i..i + 2], 16).unwrap())
        .collect();
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(&modulus_bytes), "e": "AQAB"}]});
    let verifier = BearerVerifier::new(BearerConfig {
        public_key_pems: vec![std::fs::read(dir.join("ec.pub.pem")).unwrap()],
        jwks: vec![serde_json::to_vec(&jwks).unwrap()],
        ..BearerConfig::default()
    })
    .unwrap();
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(dir.join("ec.pem")).unwrap()).unwrap();
    let body = claims(&["7"], &["MTLS_WRITE_INTERNAL"], 600);
    assert!(
        verifier
            .verify(&sign(&body, Algorithm::RS256, &rsa, Some("rsa-1")))
            .is_ok()
    );
    assert!(
        verifier
            .verify(&sign(&body, Algorithm::RS256, &rsa, Some("unknown-kid")))
            .is_err()
    );
    assert!(
        verifier
            .verify(&sign(&body, Algorithm::ES256, &ec, None))
            .is_ok()
    );
    // HS256 is off in this configuration: a token signed with any secret is refused.
    assert!(verifier.verify(&hs(&body)).is_err());
    // The RSA public key used as an HMAC secret (the classic confusion) is refused too.
    let pem = std::fs::read(dir.join("ec.pub.pem")).unwrap();
    let confused = sign(
        &body,
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem).unwrap(),
        None,
    );
    assert!(verifier.verify(&confused).is_err());
}

/// The verified-token cache never accepts what a full check would refuse: an entry ends at the
/// token's `exp`, a token not valid yet is never cached, and only the exact token bytes hit.
#[test]
fn remembered_tokens_still_expire_and_only_exact_tokens_hit() {
    let verifier = hs256_verifier();
    let short = hs(&claims(&["1"], &["MTLS_FORWARD"], 2));
    assert!(verifier.verify(&short).is_ok());
    assert!(
        verifier.verify(&short).is_ok(),
        "a second use is served from the cache"
    );
    // A different signature on the same claims is not the cached token.
    let mut tampered = short.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        verifier.verify(&tampered),
        Err(AuthError::Invalid("signature does not verify"))
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(
        verifier.verify(&short),
        Err(AuthError::Invalid("token expired"))
    );
    let mut later = claims(&["1"], &["MTLS_FORWARD"], 600);
    later["nbf"] = json!(unix_now() + 300);
    let later = hs(&later);
    for _ in 0..2 {
        assert_eq!(
            verifier.verify(&later),
            Err(AuthError::Invalid("token not valid yet"))
        );
    }
}
