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
use mtls_auth::bearer::Grant;
use mtls_auth::{
    AccountScope, AuthError, Authenticator, BearerConfig, BearerVerifier, ClaimMapping,
    Credentials, Privilege, Privileges, TokenIssuer,
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
        .verify(
            &hs(&claims(&["123"], &["MTLS_READ_INTERNAL"], 600)),
            unix_now(),
        )
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
        verifier.verify(&hs(&claims(&["1"], &["MTLS_FORWARD"], -60)), unix_now()),
        Err(AuthError::Invalid("token expired"))
    );
    let other = EncodingKey::from_secret(b"another-secret-another-secret-another").unwrap();
    assert_eq!(
        verifier.verify(
            &sign(&claims(&["1"], &[], 600), Algorithm::HS256, &other, None),
            unix_now()
        ),
        Err(AuthError::Invalid("signature does not verify"))
    );
    let token = hs(&claims(&["1"], &["MTLS_READ_INTERNAL"], 600));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims(&["*"], &["MTLS_WRITE_INTERNAL"], 600).to_string());
    parts[1] = &forged;
    assert!(verifier.verify(&parts.join("."), unix_now()).is_err());
    for missing in ["exp", "sub", "accounts", "privileges"] {
        let mut incomplete = claims(&["1"], &["MTLS_FORWARD"], 600);
        incomplete.as_object_mut().unwrap().remove(missing);
        assert!(
            matches!(
                verifier.verify(&hs(&incomplete), unix_now()),
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
    assert!(verifier.verify(&unsigned, unix_now()).is_err());
    assert!(verifier.verify("not-a-jwt", unix_now()).is_err());
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
    let principal = hs256_verifier().verify(&token, unix_now()).unwrap();
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
    assert!(verifier.verify(&hs(&good), unix_now()).is_ok());
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_eq!(
        verifier.verify(&hs(&wrong_aud), unix_now()),
        Err(AuthError::Invalid("audience not accepted"))
    );
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        verifier.verify(&hs(&wrong_iss), unix_now()),
        Err(AuthError::Invalid("issuer not accepted"))
    );
    let mut no_aud = good;
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(verifier.verify(&hs(&no_aud), unix_now()).is_err());
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
            .verify(
                &sign(&body, Algorithm::RS256, &rsa, Some("rsa-1")),
                unix_now()
            )
            .is_ok()
    );
    assert!(
        verifier
            .verify(
                &sign(&body, Algorithm::RS256, &rsa, Some("unknown-kid")),
                unix_now()
            )
            .is_err()
    );
    assert!(
        verifier
            .verify(&sign(&body, Algorithm::ES256, &ec, None), unix_now())
            .is_ok()
    );
    // HS256 is off in this configuration: a token signed with any secret is refused.
    assert!(verifier.verify(&hs(&body), unix_now()).is_err());
    // The RSA public key used as an HMAC secret (the classic confusion) is refused too.
    let pem = std::fs::read(dir.join("ec.pub.pem")).unwrap();
    let confused = sign(
        &body,
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem).unwrap(),
        None,
    );
    assert!(verifier.verify(&confused, unix_now()).is_err());
}

/// The verified-token cache never accepts what a full check would refuse: an entry ends at the
/// token's `exp`, a token not valid yet is never cached, and only the exact token bytes hit.
#[test]
fn remembered_tokens_still_expire_and_only_exact_tokens_hit() {
    let verifier = hs256_verifier();
    let short = hs(&claims(&["1"], &["MTLS_FORWARD"], 2));
    assert!(verifier.verify(&short, unix_now()).is_ok());
    assert!(
        verifier.verify(&short, unix_now()).is_ok(),
        "a second use is served from the cache"
    );
    // A different signature on the same claims is not the cached token.
    let mut tampered = short.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        verifier.verify(&tampered, unix_now()),
        Err(AuthError::Invalid("signature does not verify"))
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(
        verifier.verify(&short, unix_now()),
        Err(AuthError::Invalid("token expired"))
    );
    let mut later = claims(&["1"], &["MTLS_FORWARD"], 600);
    later["nbf"] = json!(unix_now() + 300);
    let later = hs(&later);
    for _ in 0..2 {
        assert_eq!(
            verifier.verify(&later, unix_now()),
            Err(AuthError::Invalid("token not valid yet"))
        );
    }
}

/// An identity provider's signing keys (RSA and P-256, made by OpenSSL), its JWKS document
/// shaped like one served by a real provider, and the keys to sign with.
struct Idp {
    jwks: Vec<u8>,
    rsa: EncodingKey,
    ec: EncodingKey,
}

const IDP_ISSUER: &str = "https://idp.example/realms/platform";

fn idp() -> Option<Idp> {
    let dir = temp_dir("idp-keys");
    openssl(
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
    )?;
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
    )?;
    openssl(
        &dir,
        &[
            "pkey", "-in", "ec.pem", "-pubout", "-outform", "DER", "-out", "ec.der",
        ],
    )?;
    let modulus = String::from_utf8(openssl(
        &dir,
        &["rsa", "-in", "rsa.pem", "-noout", "-modulus"],
    )?)
    .unwrap();
    let modulus_hex = modulus.trim().trim_start_matches("Modulus=");
    let modulus_bytes: Vec<u8> = (0..modulus_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&modulus_hex[i..i + 2], 16).unwrap())
        .collect();
    // A P-256 SubjectPublicKeyInfo ends with the uncompressed point: 04 || x || y.
    let spki = std::fs::read(dir.join("ec.der")).unwrap();
    let point = &spki[spki.len() - 64..];
    let jwks = json!({"keys": [
        {"kid": "sig-rsa-2026", "kty": "RSA", "alg": "RS256", "use": "sig",
         "n": URL_SAFE_NO_PAD.encode(&modulus_bytes), "e": "AQAB",
         "x5t#S256": "not-checked"},
        {"kid": "sig-ec-2026", "kty": "EC", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])},
        // Providers also publish encryption keys; they verify nothing.
        {"kid": "enc-rsa-2026", "kty": "RSA", "alg": "RSA-OAEP", "use": "enc",
         "n": URL_SAFE_NO_PAD.encode(&modulus_bytes), "e": "AQAB"}
    ]});
    Some(Idp {
        jwks: serde_json::to_vec(&jwks).unwrap(),
        rsa: EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem")).unwrap()).unwrap(),
        ec: EncodingKey::from_ec_pem(&std::fs::read(dir.join("ec.pem")).unwrap()).unwrap(),
    })
}

fn idp_mapping() -> ClaimMapping {
    ClaimMapping {
        issuer: vec![IDP_ISSUER.to_owned()],
        accounts: "aud".to_owned(),
        caller: "azp".to_owned(),
        scope: "scope".to_owned(),
        scopes: [
            ("mtls.read", "MTLS_READ_INTERNAL"),
            ("mtls.forward", "MTLS_FORWARD"),
        ]
        .into_iter()
        .map(|(value, privilege)| (value.to_owned(), Privileges::from_names([privilege])))
        .collect(),
        wildcard_accounts: false,
    }
}

fn idp_verifier(idp: &Idp, claims: Option<ClaimMapping>) -> BearerVerifier {
    BearerVerifier::new(BearerConfig {
        hs256_secret: Some(Zeroizing::new(SECRET.to_vec())),
        jwks: vec![idp.jwks.clone()],
        claims,
        ..BearerConfig::default()
    })
    .unwrap()
}

/// An app token as the platform's identity provider issues it: no `sub`, `accounts` or
/// `privileges`.
fn app_token_claims(aud: serde_json::Value, scope: &str) -> serde_json::Value {
    json!({
        "iss": IDP_ISSUER,
        "aud": aud,
        "azp": "billing-app",
        "scope": scope,
        "exp": unix_now() + 600,
        "iat": unix_now(),
        "jti": "5f0c1e2a",
        "typ": "Bearer",
    })
}

/// Both key types sign the same claims; every case holds for each.
fn both(idp: &Idp, claims: &serde_json::Value) -> [String; 2] {
    [
        sign(claims, Algorithm::RS256, &idp.rsa, Some("sig-rsa-2026")),
        sign(claims, Algorithm::ES256, &idp.ec, Some("sig-ec-2026")),
    ]
}

#[test]
fn identity_provider_tokens_are_read_through_the_claim_mapping() {
    let Some(idp) = idp() else {
        return;
    };
    let verifier = idp_verifier(&idp, Some(idp_mapping()));
    let full = app_token_claims(json!("acct-42"), "mtls.read mtls.forward other");
    for token in both(&idp, &full) {
        let principal = verifier.verify(&token, unix_now()).unwrap();
        assert_eq!(principal.subject, "billing-app");
        assert!(
            principal
                .authorize("acct-42", Privilege::ReadInternal)
                .is_ok()
        );
        assert!(principal.authorize("acct-42", Privilege::Forward).is_ok());
        // `other` is not in the table: it grants nothing, WRITE included.
        assert!(
            principal
                .authorize("acct-42", Privilege::WriteInternal)
                .is_err()
        );
        assert!(
            principal
                .authorize("acct-43", Privilege::ReadInternal)
                .is_err()
        );
    }
    // `aud` as an array names several accounts.
    let array = app_token_claims(json!(["acct-1", "acct-2"]), "mtls.read");
    for token in both(&idp, &array) {
        let principal = verifier.verify(&token, unix_now()).unwrap();
        for account in ["acct-1", "acct-2"] {
            assert!(
                principal
                    .authorize(account, Privilege::ReadInternal)
                    .is_ok()
            );
        }
        assert!(
            principal
                .authorize("acct-3", Privilege::ReadInternal)
                .is_err()
        );
        assert!(principal.authorize("acct-1", Privilege::Forward).is_err());
    }
    // A scope that grants nothing, or none at all: authenticated, allowed nowhere.
    let mut no_scope = app_token_claims(json!("acct-42"), "");
    no_scope.as_object_mut().unwrap().remove("scope");
    for claims in [
        app_token_claims(json!("acct-42"), "openid profile mtls.admin MTLS_FORWARD"),
        no_scope,
    ] {
        for token in both(&idp, &claims) {
            let principal = verifier.verify(&token, unix_now()).unwrap();
            assert_eq!(principal.privileges, Privileges::default(), "{claims}");
        }
    }
    // A malformed account id or `*` grants no account; the token still authenticates.
    for aud in [
        json!("acct/../42"),
        json!("*"),
        json!(["*", "bad account", ""]),
    ] {
        let claims = app_token_claims(aud.clone(), "mtls.read mtls.forward");
        for token in both(&idp, &claims) {
            let principal = verifier.verify(&token, unix_now()).unwrap();
            assert_eq!(
                principal.accounts,
                AccountScope::Only(Default::default()),
                "{aud}"
            );
        }
    }
    // Claims the mapping does not read are not honoured either, even when present.
    let mut native = app_token_claims(json!("acct-42"), "");
    native["sub"] = json!("svc");
    native["accounts"] = json!(["*"]);
    native["privileges"] = json!(["MTLS_WRITE_INTERNAL"]);
    for token in both(&idp, &native) {
        let principal = verifier.verify(&token, unix_now()).unwrap();
        assert_eq!(principal.subject, "billing-app");
        assert!(
            principal
                .authorize("acct-9", Privilege::WriteInternal)
                .is_err()
        );
        assert!(
            principal
                .authorize("acct-42", Privilege::WriteInternal)
                .is_err()
        );
    }
    // The provider's encryption key is in the set too, and verifies nothing.
    assert!(
        verifier
            .verify(
                &sign(&full, Algorithm::RS256, &idp.rsa, Some("enc-rsa-2026")),
                unix_now()
            )
            .is_err()
    );
    // The gateway's own HS256 tokens keep the claims of SPEC 3 alongside the mapping.
    let own = verifier
        .verify(
            &hs(&claims(&["7"], &["MTLS_READ_INTERNAL"], 600)),
            unix_now(),
        )
        .unwrap();
    assert!(own.authorize("7", Privilege::ReadInternal).is_ok());
}

#[test]
fn mapped_tokens_still_need_signature_expiry_issuer_and_caller() {
    let Some(idp) = idp() else {
        return;
    };
    let verifier = idp_verifier(&idp, Some(idp_mapping()));
    let good = app_token_claims(json!("acct-42"), "mtls.read");
    let refused = |claims: &serde_json::Value, reason: &str| {
        for token in both(&idp, claims) {
            assert!(
                matches!(
                    verifier.verify(&token, unix_now()),
                    Err(AuthError::Invalid(_))
                ),
                "{reason}"
            );
        }
    };
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://other-tenant.idp.example");
    refused(&wrong_iss, "another issuer");
    for missing in ["iss", "exp", "azp", "aud"] {
        let mut incomplete = good.clone();
        incomplete.as_object_mut().unwrap().remove(missing);
        refused(&incomplete, missing);
    }
    let mut expired = good.clone();
    expired["exp"] = json!(unix_now() - 3600);
    refused(&expired, "expired");
    let mut numeric_aud = good.clone();
    numeric_aud["aud"] = json!(42);
    refused(&numeric_aud, "aud of the wrong type");
    // Signed by a key the JWKS does not hold.
    let stranger = EncodingKey::from_ec_pem(
        &openssl(
            &temp_dir("idp-stranger"),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        verifier
            .verify(
                &sign(&good, Algorithm::ES256, &stranger, Some("sig-ec-2026")),
                unix_now()
            )
            .is_err()
    );
    // HS256 over the IdP's claims with the gateway's secret: not an IdP token, so read as
    // SPEC 3 claims, which it lacks.
    assert!(verifier.verify(&hs(&good), unix_now()).is_err());
}

#[test]
fn without_a_mapping_identity_provider_tokens_are_refused_as_before() {
    let Some(idp) = idp() else {
        return;
    };
    let verifier = idp_verifier(&idp, None);
    for token in both(&idp, &app_token_claims(json!("acct-42"), "mtls.read")) {
        assert_eq!(
            verifier.verify(&token, unix_now()),
            Err(AuthError::Invalid("required claims missing or malformed"))
        );
    }
}

#[test]
fn unsafe_mappings_are_refused_at_start() {
    let Some(idp) = idp() else {
        return;
    };
    let config = |audience: &[&str], issuer: &[&str], jwks: bool| BearerConfig {
        hs256_secret: Some(Zeroizing::new(SECRET.to_vec())),
        jwks: if jwks {
            vec![idp.jwks.clone()]
        } else {
            Vec::new()
        },
        audience: audience.iter().map(|value| (*value).to_owned()).collect(),
        claims: Some(ClaimMapping {
            issuer: issuer.iter().map(|value| (*value).to_owned()).collect(),
            ..idp_mapping()
        }),
        ..BearerConfig::default()
    };
    assert!(BearerVerifier::new(config(&[], &[IDP_ISSUER], true)).is_ok());
    for (audience, issuer, jwks) in [
        (&["mtls-gateway"][..], &[IDP_ISSUER][..], true),
        (&[][..], &[][..], true),
        (&[][..], &[IDP_ISSUER][..], false),
    ] {
        assert!(BearerVerifier::new(config(audience, issuer, jwks)).is_err());
    }
}

/// The real clock, as the gateway's `mtls_control::Clock` reads it (tests may read it).
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
