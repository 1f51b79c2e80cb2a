//! The authenticated caller and the authorization rule: the account must be covered and the
//! privilege held, or the answer is 403 without saying whether anything exists.

use std::collections::BTreeSet;
use std::fmt;

/// One privilege of SPEC 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// Read certificates and mappings, runtime mapping checks, the tester.
    ReadInternal,
    /// Create, update, delete certificates and mappings.
    WriteInternal,
    /// The forward method.
    Forward,
}

impl Privilege {
    pub const ALL: [Privilege; 3] = [
        Privilege::ReadInternal,
        Privilege::WriteInternal,
        Privilege::Forward,
    ];

    /// The wire name (`MTLS_READ_INTERNAL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Privilege::ReadInternal => "MTLS_READ_INTERNAL",
            Privilege::WriteInternal => "MTLS_WRITE_INTERNAL",
            Privilege::Forward => "MTLS_FORWARD",
        }
    }

    /// Parses a wire name; `None` for names this gateway does not know.
    pub fn parse(name: &str) -> Option<Privilege> {
        Privilege::ALL
            .into_iter()
            .find(|privilege| privilege.name() == name)
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of privileges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges(BTreeSet<Privilege>);

impl Privileges {
    /// Keeps the names this gateway knows; unknown names grant nothing.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self(names.into_iter().filter_map(Privilege::parse).collect())
    }

    pub fn contains(&self, privilege: Privilege) -> bool {
        self.0.contains(&privilege)
    }

    pub fn iter(&self) -> impl Iterator<Item = Privilege> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Privilege> for Privileges {
    fn from_iter<T: IntoIterator<Item = Privilege>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// The accounts a caller may act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountScope {
    /// `["*"]`: platform services acting for every account.
    All,
    Only(BTreeSet<String>),
}

impl AccountScope {
    /// From the `accounts` claim: `*` anywhere means every account.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut only = BTreeSet::new();
        for name in names {
            if name == "*" {
                return AccountScope::All;
            }
            only.insert(name.to_owned());
        }
        AccountScope::Only(only)
    }

    pub fn covers(&self, account: &str) -> bool {
        match self {
            AccountScope::All => true,
            AccountScope::Only(accounts) => accounts.contains(account),
        }
    }
}

/// How the caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    OAuth,
    /// A client certificate verified by the listener's TLS.
    ClientCertificate,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token subject (or, for later schemes, the consumer key or certificate subject).
    pub subject: String,
    pub scheme: Scheme,
    pub accounts: AccountScope,
    pub privileges: Privileges,
}

/// The caller is known but not allowed: a 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied;

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the credential does not allow this request")
    }
}

impl std::error::Error for Denied {}

impl Principal {
    /// Allows the request only when `account` is covered and `privilege` is held.
    pub fn authorize(&self, account: &str, privilege: Privilege) -> Result<(), Denied> {
        if self.accounts.covers(account) && self.privileges.contains(privilege) {
            Ok(())
        } else {
            Err(Denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(accounts: &[&str], privileges: &[&str]) -> Principal {
        Principal {
            subject: "svc".to_owned(),
            scheme: Scheme::Bearer,
            accounts: AccountScope::from_names(accounts.iter().copied()),
            privileges: Privileges::from_names(privileges.iter().copied()),
        }
    }

    #[test]
    fn account_and_privilege_are_both_required() {
        let caller = principal(&["123"], &["MTLS_READ_INTERNAL"]);
        assert!(caller.authorize("123", Privilege::ReadInternal).is_ok());
        assert_eq!(
            caller.authorize("124", Privilege::ReadInternal),
            Err(Denied)
        );
        assert_eq!(
            caller.authorize("123", Privilege::WriteInternal),
            Err(Denied)
        );
    }

    #[test]
    fn star_covers_every_account_and_unknown_privileges_grant_nothing() {
        let caller = principal(&["*"], &["MTLS_FORWARD", "ROOT"]);
        assert!(caller.authorize("anything", Privilege::Forward).is_ok());
        assert_eq!(
            caller.authorize("anything", Privilege::ReadInternal),
            Err(Denied)
        );
    }
}
