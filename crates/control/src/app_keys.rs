//! OAuth app keys as the request path sees them: an in-memory map, reloaded from the database
//! and the secret store when the global revision moves (a key created or revoked anywhere),
//! read without locks. Also the layout of an app key's secrets in the secret store.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mtls_auth::oauth::{AppKey, AppKeys};
use mtls_auth::{AccountScope, Privileges};
use mtls_secrets::{APP_KEY_VERSION, APP_KEYS, SecretKey, SecretMaterial};
use zeroize::Zeroizing;

use crate::backends::Backends;
use crate::error::ControlError;

/// The keys in force.
#[derive(Debug, Default)]
pub struct AppKeyCache {
    keys: ArcSwap<HashMap<String, Arc<AppKey>>>,
}

impl AppKeys for AppKeyCache {
    fn app_key(&self, consumer_key: &str) -> Option<Arc<AppKey>> {
        self.keys.load().get(consumer_key).cloned()
    }
}

/// The secret-store value of an app key: consumer secret and token secret, newline-separated.
pub fn material(consumer_secret: &str, token_secret: &str) -> SecretMaterial {
    SecretMaterial {
        p12: Zeroizing::new(format!("{consumer_secret}\n{token_secret}").into_bytes()),
        password: Zeroizing::new(String::new()),
    }
}

fn secrets(material: &SecretMaterial) -> Option<(Zeroizing<String>, Zeroizing<String>)> {
    let text = std::str::from_utf8(&material.p12).ok()?;
    let (consumer, token) = text.split_once('\n')?;
    Some((
        Zeroizing::new(consumer.to_owned()),
        Zeroizing::new(token.to_owned()),
    ))
}

impl AppKeyCache {
    /// Reloads every live key. A key whose secret cannot be read is left out (and logged).
    pub async fn reload(&self, backends: &Backends) -> Result<(), ControlError> {
        let rows = backends.store.app_keys(false).await?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let key = SecretKey {
                account: APP_KEYS,
                certificate_id: row.id,
            };
            let material = match backends.secrets.get(key, APP_KEY_VERSION).await {
                Ok(Some(material)) => material,
                Ok(None) => {
                    tracing::warn!(consumer_key = %row.consumer_key, "app key without secret; ignored");
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let Some((consumer_secret, token_secret)) = secrets(&material) else {
                continue;
            };
            let key = AppKey {
                consumer_key: row.consumer_key.clone(),
                access_token: row.access_token,
                consumer_secret,
                token_secret,
                accounts: AccountScope::from_names(row.account_scope.split(',')),
                privileges: Privileges::from_names(row.privileges.split(',')),
            };
            keys.insert(row.consumer_key, Arc::new(key));
        }
        self.keys.store(Arc::new(keys));
        Ok(())
    }
}
