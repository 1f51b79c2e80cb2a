//! Callers authenticated by a client certificate the listener verified (a third scheme beside
//! Bearer and OAuth): configuration maps the certificate's subject or one of its subject
//! alternative names to a principal, exactly like a token's claims. A verified certificate no
//! rule names is refused (403), never treated as anonymous.

use crate::{AccountScope, Principal, Privilege, Privileges, Scheme};

/// One rule: which certificate (by exact subject, or by one subject alternative name), and
/// what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRule {
    /// The subject in RFC 4514 form, e.g. `CN=billing,O=Example Platform`.
    pub subject: Option<String>,
    /// A DNS name, URI or e-mail address among the subject alternative names.
    pub san: Option<String>,
    pub accounts: Vec<String>,
    pub privileges: Vec<String>,
}

/// The rules, checked when built.
#[derive(Clone, Debug, Default)]
pub struct CertificatePrincipals {
    rules: Vec<CertificateRule>,
}

/// A verified certificate that no rule maps (403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped;

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client certificate is not mapped to a caller")
    }
}

impl std::error::Error for Unmapped {}

impl CertificatePrincipals {
    /// Checks every rule: exactly one of `subject` and `san`, at least one account, known
    /// privileges only.
    pub fn new(rules: Vec<CertificateRule>) -> Result<Self, String> {
        for (index, rule) in rules.iter().enumerate() {
            if rule.subject.is_some() == rule.san.is_some() {
                return Err(format!(
                    "auth.client_certificates[{index}]: set exactly one of subject and san"
                ));
            }
            if rule.accounts.is_empty() {
                return Err(format!(
                    "auth.client_certificates[{index}]: accounts is empty"
                ));
            }
            if let Some(unknown) = rule
                .privileges
                .iter()
                .find(|name| Privilege::parse(name).is_none())
            {
                return Err(format!(
                    "auth.client_certificates[{index}]: unknown privilege {unknown:?}"
                ));
            }
        }
        Ok(Self { rules })
    }

    /// The caller a certificate with `subject` and `alternative_names` is; the first rule that
    /// names it wins (rules are tried in configuration order).
    pub fn principal(
        &self,
        subject: &str,
        alternative_names: &[String],
    ) -> Result<Principal, Unmapped> {
        let rule = self
            .rules
            .iter()
            .find(|rule| match (&rule.subject, &rule.san) {
                (Some(wanted), _) => wanted == subject,
                (None, Some(wanted)) => alternative_names.iter().any(|name| name == wanted),
                (None, None) => false,
            })
            .ok_or(Unmapped)?;
        Ok(Principal {
            subject: subject.to_owned(),
            scheme: Scheme::ClientCertificate,
            accounts: AccountScope::from_names(rule.accounts.iter().map(String::as_str)),
            privileges: Privileges::from_names(rule.privileges.iter().map(String::as_str)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(subject: Option<&str>, san: Option<&str>) -> CertificateRule {
        CertificateRule {
            subject: subject.map(str::to_owned),
            san: san.map(str::to_owned),
            accounts: vec!["acme".to_owned()],
            privileges: vec!["MTLS_FORWARD".to_owned()],
        }
    }

    #[test]
    fn maps_by_subject_or_alternative_name_and_refuses_the_rest() {
        let rules = CertificatePrincipals::new(vec![
            rule(Some("CN=billing,O=Example"), None),
            rule(None, Some("spiffe://example/ns/payments")),
        ])
        .unwrap();
        let by_subject = rules.principal("CN=billing,O=Example", &[]).unwrap();
        assert_eq!(by_subject.scheme, Scheme::ClientCertificate);
        assert!(by_subject.authorize("acme", Privilege::Forward).is_ok());
        assert!(by_subject.authorize("other", Privilege::Forward).is_err());
        assert!(
            by_subject
                .authorize("acme", Privilege::ReadInternal)
                .is_err()
        );
        let by_san = rules
            .principal("CN=whatever", &["spiffe://example/ns/payments".to_owned()])
            .unwrap();
        assert_eq!(by_san.subject, "CN=whatever");
        assert_eq!(rules.principal("CN=billing", &[]), Err(Unmapped));
        assert_eq!(
            rules.principal("CN=billing,O=Example,C=US", &["billing".to_owned()]),
            Err(Unmapped)
        );
    }

    #[test]
    fn refuses_ambiguous_or_empty_rules() {
        assert!(CertificatePrincipals::new(vec![rule(Some("CN=a"), Some("a"))]).is_err());
        assert!(CertificatePrincipals::new(vec![rule(None, None)]).is_err());
        let mut no_accounts = rule(Some("CN=a"), None);
        no_accounts.accounts.clear();
        assert!(CertificatePrincipals::new(vec![no_accounts]).is_err());
        let mut unknown = rule(Some("CN=a"), None);
        unknown.privileges = vec!["MTLS_EVERYTHING".to_owned()];
        assert!(CertificatePrincipals::new(vec![unknown]).is_err());
    }
}
