//! Bearer JWTs (SPEC 3): HS256 with the gateway's secret, RS256 and ES256 with public keys from
//! PEM or JWKS bytes. `exp`, `sub`, `accounts` and `privileges` are required; `aud` and `iss`
//! are checked when configured. The algorithm comes from the key, never from the token alone.
//! With a [`ClaimMapping`], RS256/ES256 tokens (an identity provider's) are read through it
//! instead, and need only `exp` besides the mapped claims; HS256 tokens, which only the
//! gateway's own secret signs (`token issue`, the token endpoint), keep the claims above.

use std::collections::HashSet;

use hashbrown::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;
use zeroize::Zeroizing;

use crate::claims::ClaimMapping;
use crate::{AccountScope, AuthError, Principal, Privilege, Privileges, Scheme};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2: at least the hash size).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// The verification keys and rules, as bytes the gateway has read.
#[derive(Default)]
pub struct BearerConfig {
    /// The HS256 shared secret; `None` disables HS256.
    pub hs256_secret: Option<Zeroizing<Vec<u8>>>,
    /// PEM files' contents, each holding one RSA or EC (P-256) public key.
    pub public_key_pems: Vec<Vec<u8>>,
    /// JWKS documents' contents.
    pub jwks: Vec<Vec<u8>>,
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuer: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// How RS256/ES256 tokens name accounts, caller and rights; `None`: the claims of SPEC 3.
    pub claims: Option<ClaimMapping>,
}

impl fmt::Debug for BearerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public_key_pems", &self.public_key_pems.len())
            .field("jwks", &self.jwks.len())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("claims", &self.claims)
            .finish()
    }
}

/// A key configuration the gateway cannot start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies Bearer tokens.
pub struct BearerVerifier {
    hs256: Option<DecodingKey>,
    public_keys: Vec<PublicKey>,
    audience: Vec<String>,
    issuer: Vec<String>,
    leeway_seconds: u64,
    claims: Option<ClaimMapping>,
    /// Tokens verified recently, by the SHA-256 of the token (the token itself is not kept),
    /// until their `exp`: a caller sending the same token again skips the signature check and
    /// the JSON parse.
    verified: Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

/// Most tokens remembered; past it, expired ones are dropped, then all.
const VERIFIED_CACHE_SIZE: usize = 10_000;

#[derive(Clone)]
struct VerifiedToken {
    principal: Arc<Principal>,
    /// `exp`, Unix seconds: the entry is used strictly before it.
    expires: u64,
}

impl fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("public_keys", &self.public_keys.len())
            .finish_non_exhaustive()
    }
}

/// The claims of SPEC 3, as they travel.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    accounts: Vec<String>,
    privileges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl BearerVerifier {
    pub fn new(config: BearerConfig) -> Result<Self, KeyError> {
        let hs256 = match &config.hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_LEN => {
                return Err(KeyError(format!(
                    "the HS256 secret must be at least {MIN_HS256_SECRET_LEN} bytes"
                )));
            }
            Some(secret) => Some(
                DecodingKey::from_secret(secret)
                    .map_err(|_| KeyError("the HS256 secret is not usable".to_owned()))?,
            ),
            None => None,
        };
        let mut public_keys = Vec::new();
        for (index, pem) in config.public_key_pems.iter().enumerate() {
            public_keys.push(pem_key(pem).ok_or_else(|| {
                KeyError(format!(
                    "public key file #{} holds no RSA or P-256 public key",
                    index + 1
                ))
            })?);
        }
        for (index, document) in config.jwks.iter().enumerate() {
            let set: JwkSet = serde_json::from_slice(document)
                .map_err(|_| KeyError(format!("JWKS file #{} is not a JWK set", index + 1)))?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    // Keys for other algorithms are skipped: tokens signed with them are refused.
                    _ => continue,
                };
                // So are keys published for another use or algorithm (RFC 7517 4.2, 4.4):
                // identity providers list their encryption keys in the same set.
                let other_use = jwk
                    .common
                    .public_key_use
                    .as_ref()
                    .is_some_and(|key_use| *key_use != PublicKeyUse::Signature);
                let other_algorithm = jwk.common.key_algorithm.is_some_and(|declared| {
                    !matches!(
                        (declared, algorithm),
                        (KeyAlgorithm::RS256, Algorithm::RS256)
                            | (KeyAlgorithm::ES256, Algorithm::ES256)
                    )
                });
                if other_use || other_algorithm {
                    continue;
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|_| {
                    KeyError(format!("JWKS file #{} holds an unusable key", index + 1))
                })?;
                public_keys.push(PublicKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        if hs256.is_none() && public_keys.is_empty() {
            return Err(KeyError(
                "no token verification key is configured".to_owned(),
            ));
        }
        if let Some(mapping) = &config.claims {
            check_mapping(mapping, &config, public_keys.is_empty())?;
        }
        Ok(Self {
            hs256,
            public_keys,
            audience: config.audience,
            issuer: config.issuer,
            leeway_seconds: config.leeway_seconds,
            claims: config.claims,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies `token` as of `now` (Unix seconds, the caller's clock) and returns its
    /// principal.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Principal>, AuthError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            match verified.get(&digest) {
                Some(entry) if now < entry.expires => return Ok(Arc::clone(&entry.principal)),
                Some(_) => {
                    verified.remove(&digest);
                }
                None => {}
            }
        }
        let (principal, times) = self.verify_uncached(token)?;
        let principal = Arc::new(principal);
        // Cached only once valid now (not before `nbf`) and strictly before `exp`, so the
        // cache never accepts what a full check would refuse.
        if times.nbf.is_none_or(|nbf| nbf <= now) && now < times.exp {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= VERIFIED_CACHE_SIZE {
                verified.retain(|_, entry| now < entry.expires);
                if verified.len() >= VERIFIED_CACHE_SIZE {
                    verified.clear();
                }
            }
            verified.insert(
                digest,
                VerifiedToken {
                    principal: Arc::clone(&principal),
                    expires: times.exp,
                },
            );
        }
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Principal, Times), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        // The mapping is chosen by the key that verifies, never by what the token says it holds:
        // an identity provider's token is read only through it, even if it carries `accounts`.
        let mapping = match header.alg {
            Algorithm::HS256 => None,
            _ => self.claims.as_ref(),
        };
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            Algorithm::RS256 | Algorithm::ES256 => self
                .public_keys
                .iter()
                .filter(|key| key.algorithm == header.alg)
                .filter(|key| header.kid.is_none() || key.kid.is_none() || key.kid == header.kid)
                .map(|key| &key.key)
                .collect(),
            _ => Vec::new(),
        };
        if candidates.is_empty() {
            return Err(AuthError::Invalid("token algorithm or key id not accepted"));
        }
        let validation = self.validation(header.alg, mapping);
        let mut last = AuthError::Invalid("signature does not verify");
        for key in candidates {
            let decoded = match mapping {
                None => jsonwebtoken::decode::<Claims>(token, key, &validation).map(|data| {
                    let times = Times {
                        exp: data.claims.exp,
                        nbf: data.claims.nbf,
                    };
                    Ok((principal(&data.claims), times))
                }),
                Some(mapping) => {
                    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
                        .map(|data| mapped(mapping, &data.claims))
                }
            };
            match decoded {
                Ok(result) => return result,
                Err(error) => {
                    last = match error.kind() {
                        ErrorKind::ExpiredSignature => {
                            return Err(AuthError::Invalid("token expired"));
                        }
                        ErrorKind::ImmatureSignature => {
                            return Err(AuthError::Invalid("token not valid yet"));
                        }
                        ErrorKind::InvalidAudience => {
                            return Err(AuthError::Invalid("audience not accepted"));
                        }
                        ErrorKind::InvalidIssuer => {
                            return Err(AuthError::Invalid("issuer not accepted"));
                        }
                        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => {
                            return Err(AuthError::Invalid("required claims missing or malformed"));
                        }
                        _ => AuthError::Invalid("signature does not verify"),
                    };
                }
            }
        }
        Err(last)
    }

    fn validation(&self, algorithm: Algorithm, mapping: Option<&ClaimMapping>) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_seconds;
        validation.validate_nbf = true;
        // A configured audience or issuer is required, not merely checked when present. A
        // mapped token names its caller in another claim, which the mapping requires.
        let mut required = if mapping.is_some() {
            vec!["exp"]
        } else {
            vec!["exp", "sub"]
        };
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        // Mapped tokens answer to the identity provider's issuer (never empty, see
        // `check_mapping`); the others to `issuer`, so that the gateway's own tokens, which
        // carry no `iss`, keep working beside an identity provider's.
        let issuer = mapping.map_or(&self.issuer, |mapping| &mapping.issuer);
        if !issuer.is_empty() {
            validation.set_issuer(issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// `exp` and `nbf` of a verified token, for the cache.
struct Times {
    exp: u64,
    nbf: Option<u64>,
}

/// The principal and times of a verified token read through `mapping`. `exp` and `nbf` were
/// checked by the library; one that is not a whole number of seconds is refused here rather
/// than cached under a guess.
fn mapped(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
) -> Result<(Principal, Times), AuthError> {
    const MALFORMED: AuthError = AuthError::Invalid("required claims missing or malformed");
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(MALFORMED)?;
    let nbf = match claims.get("nbf") {
        None => None,
        Some(nbf) => Some(nbf.as_u64().ok_or(MALFORMED)?),
    };
    Ok((mapping.principal(claims)?, Times { exp, nbf }))
}

/// Refuses a mapping the rest of the configuration makes unsafe or useless.
fn check_mapping(
    mapping: &ClaimMapping,
    config: &BearerConfig,
    no_public_keys: bool,
) -> Result<(), KeyError> {
    if [&mapping.accounts, &mapping.caller, &mapping.scope]
        .iter()
        .any(|name| name.is_empty())
    {
        return Err(KeyError(
            "the claim mapping names an empty claim".to_owned(),
        ));
    }
    if no_public_keys {
        return Err(KeyError(
            "the claim mapping reads RS256/ES256 tokens, and no public key is configured"
                .to_owned(),
        ));
    }
    // With the accounts in `aud`, an audience check would require every account to be listed.
    if mapping.accounts == "aud" && !config.audience.is_empty() {
        return Err(KeyError(
            "the claim mapping reads the accounts from `aud`, which the audience check also reads"
                .to_owned(),
        ));
    }
    // Key sets are often shared by every tenant of an identity provider: the issuer is what
    // tells this provider's tokens from another's.
    if mapping.issuer.iter().all(String::is_empty) {
        return Err(KeyError(
            "the claim mapping needs an issuer to check".to_owned(),
        ));
    }
    Ok(())
}

fn pem_key(pem: &[u8]) -> Option<PublicKey> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some(PublicKey {
            kid: None,
            algorithm: Algorithm::RS256,
            key,
        });
    }
    DecodingKey::from_ec_pem(pem).ok().map(|key| PublicKey {
        kid: None,
        algorithm: Algorithm::ES256,
        key,
    })
}

fn principal(claims: &Claims) -> Principal {
    Principal {
        subject: claims.sub.clone(),
        scheme: Scheme::Bearer,
        accounts: AccountScope::from_names(claims.accounts.iter().map(String::as_str)),
        privileges: Privileges::from_names(claims.privileges.iter().map(String::as_str)),
    }
}

/// Mints HS256 tokens with the gateway's secret (the `token issue` command).
pub struct TokenIssuer {
    key: EncodingKey,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenIssuer(<redacted>)")
    }
}

/// What a minted token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    /// Account ids, or `*`.
    pub accounts: Vec<String>,
    pub privileges: Vec<Privilege>,
    pub ttl_seconds: u64,
}

impl TokenIssuer {
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(KeyError(format!(
                "the HS256 secret must be at least {MIN_HS256_SECRET_LEN} bytes"
            )));
        }
        let key = EncodingKey::from_secret(secret)
            .map_err(|_| KeyError("the HS256 secret is not usable".to_owned()))?;
        Ok(Self { key })
    }

    /// A signed token for `grant`, valid from `now` (Unix seconds).
    pub fn issue(&self, grant: &Grant, now: u64, token_id: String) -> Result<String, KeyError> {
        let unique: HashSet<_> = grant.privileges.iter().collect();
        let claims = Claims {
            sub: grant.subject.clone(),
            exp: now.saturating_add(grant.ttl_seconds),
            accounts: grant.accounts.clone(),
            privileges: Privilege::ALL
                .iter()
                .filter(|privilege| unique.contains(privilege))
                .map(|privilege| privilege.name().to_owned())
                .collect(),
            iat: Some(now),
            nbf: None,
            jti: Some(token_id),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|_| KeyError("the token could not be signed".to_owned()))
    }
}
