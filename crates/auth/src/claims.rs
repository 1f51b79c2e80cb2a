//! Claim mapping (SPEC 3): reading the tokens of an existing identity provider whose claims have
//! other names or shapes, such as app tokens with the account in `aud`, the client in `azp` and
//! the rights in a space-separated `scope`. Applied only to claims whose signature, `exp`, `aud`
//! and `iss` (against the mapping's own issuer) the verifier has already checked
//! ([`crate::bearer`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::{AccountId, AccountScope, AuthError, Principal, Privileges, Scheme};

/// How the claims of an identity provider's tokens name the accounts, the caller and the rights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Accepted `iss` values of the mapped tokens (any one of them); must not be empty.
    pub issuer: Vec<String>,
    /// The claim naming the accounts: a string or an array of strings.
    pub accounts: String,
    /// The claim naming the caller, for logs and the audit trail (`azp`, `client_id`, ...).
    pub caller: String,
    /// The claim carrying the scope values: a space-separated string or an array of strings.
    pub scope: String,
    /// Scope value to the privileges it grants; values not listed grant nothing.
    pub scopes: BTreeMap<String, Privileges>,
    /// Whether `*` in the accounts claim means every account. Off: `*` grants nothing, so that
    /// a client able to choose its own audience at the identity provider cannot claim them all.
    pub wildcard_accounts: bool,
}

/// A mapped claim that is absent or not of the shape the mapping expects: a 401, like a token
/// without `sub` when no mapping is configured.
const MALFORMED: AuthError = AuthError::Invalid("required claims missing or malformed");

impl ClaimMapping {
    /// The principal the verified `claims` stand for. Account values that are not account ids
    /// (SPEC 2) are dropped: they grant nothing, and the token still authenticates.
    pub(crate) fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = match claims.get(&self.caller) {
            Some(Value::String(caller)) if !caller.is_empty() => caller.clone(),
            _ => return Err(MALFORMED),
        };
        let names = strings(claims.get(&self.accounts).ok_or(MALFORMED)?, false)?;
        let mut only = BTreeSet::new();
        let mut all = false;
        for name in names {
            if name == "*" {
                all |= self.wildcard_accounts;
            } else if let Ok(account) = AccountId::parse(name) {
                only.insert(account.as_str().to_owned());
            }
        }
        let accounts = if all {
            AccountScope::All
        } else {
            AccountScope::Only(only)
        };
        // No scope claim: the token authenticates and grants nothing (403 on every route).
        let values = match claims.get(&self.scope) {
            Some(scope) => strings(scope, true)?,
            None => Vec::new(),
        };
        let privileges = values
            .into_iter()
            .filter_map(|value| self.scopes.get(value))
            .flat_map(Privileges::iter)
            .collect();
        Ok(Principal {
            subject,
            scheme: Scheme::Bearer,
            accounts,
            privileges,
        })
    }
}

/// The strings of a claim: one string, or an array of strings; `split` also splits a string at
/// spaces (the RFC 6749 `scope` form). Anything else is malformed.
fn strings(value: &Value, split: bool) -> Result<Vec<&str>, AuthError> {
    match value {
        Value::String(text) if split => Ok(text.split(' ').filter(|v| !v.is_empty()).collect()),
        Value::String(text) => Ok(vec![text.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or(MALFORMED))
            .collect(),
        _ => Err(MALFORMED),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::Privilege;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            issuer: vec!["https://idp.example".to_owned()],
            accounts: "aud".to_owned(),
            caller: "azp".to_owned(),
            scope: "scope".to_owned(),
            scopes: BTreeMap::from([
                (
                    "mtls.read".to_owned(),
                    Privileges::from_names(["MTLS_READ_INTERNAL"]),
                ),
                (
                    "mtls.forward".to_owned(),
                    Privileges::from_names(["MTLS_FORWARD"]),
                ),
            ]),
            wildcard_accounts: false,
        }
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn shapes_of_the_mapped_claims() {
        let principal = mapping()
            .principal(&map(json!({"aud": "acct-1", "azp": "app",
                "scope": "mtls.read  other mtls.forward"})))
            .unwrap();
        assert_eq!(principal.subject, "app");
        assert!(
            principal
                .authorize("acct-1", Privilege::ReadInternal)
                .is_ok()
        );
        assert!(principal.authorize("acct-1", Privilege::Forward).is_ok());
        assert!(
            principal
                .authorize("acct-1", Privilege::WriteInternal)
                .is_err()
        );
        let principal = mapping()
            .principal(&map(json!({"aud": ["a", "b/c", "*", 1], "azp": "app"})))
            .err();
        assert_eq!(principal, Some(MALFORMED), "a number among the accounts");
        let principal = mapping()
            .principal(&map(json!({"aud": ["a", "b/c", "*"], "azp": "app",
                "scope": ["mtls.read"]})))
            .unwrap();
        assert_eq!(
            principal.accounts,
            AccountScope::Only(BTreeSet::from(["a".to_owned()]))
        );
        let mut wildcard = mapping();
        wildcard.wildcard_accounts = true;
        let principal = wildcard
            .principal(&map(json!({"aud": "*", "azp": "app"})))
            .unwrap();
        assert_eq!(principal.accounts, AccountScope::All);
        for bad in [
            json!({"aud": "a"}),
            json!({"azp": "app"}),
            json!({"aud": "a", "azp": ""}),
            json!({"aud": "a", "azp": ["app"]}),
            json!({"aud": {"a": 1}, "azp": "app"}),
            json!({"aud": "a", "azp": "app", "scope": 3}),
        ] {
            assert_eq!(
                mapping().principal(&map(bad.clone())),
                Err(MALFORMED),
                "{bad}"
            );
        }
    }
}
