//! The account id of SPEC 2: 1 to 64 characters from `[A-Za-z0-9_-]`.

use std::fmt;

/// A valid account id (also called `siteId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// The text is not an account id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidAccountId;

impl fmt::Display for InvalidAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an account id is 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'")
    }
}

impl std::error::Error for InvalidAccountId {}

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, InvalidAccountId> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidAccountId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::AccountId;

    #[test]
    fn account_ids_follow_spec_2() {
        for good in ["1", "12345678", "brand_a-1", &"a".repeat(64)] {
            assert!(AccountId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ü", "a.b", "*", &"a".repeat(65), "12%2F3"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }
}
