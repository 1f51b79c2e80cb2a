//! The service registry of SPEC 2: names used at runtime, ids used in configuration.

use std::collections::BTreeMap;

/// Service names and their ids, the built-in four plus the configured ones.
#[derive(Clone, Debug)]
pub struct Services {
    by_id: BTreeMap<String, String>,
    by_name: BTreeMap<String, String>,
}

impl Default for Services {
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

impl Services {
    /// The built-in services plus `extra` (name, id) pairs.
    pub fn new(extra: impl IntoIterator<Item = (String, String)>) -> Self {
        let builtin = [
            ("TEST_SERVICE", "0"),
            ("IDP", "1"),
            ("WEBHOOKS", "2"),
            ("FAAS", "3"),
        ];
        let mut services = Self {
            by_id: BTreeMap::new(),
            by_name: BTreeMap::new(),
        };
        for (name, id) in builtin
            .into_iter()
            .map(|(name, id)| (name.to_owned(), id.to_owned()))
            .chain(extra)
        {
            services.by_id.insert(id.clone(), name.clone());
            services.by_name.insert(name, id);
        }
        services
    }

    pub fn name(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    pub fn id(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }
}
