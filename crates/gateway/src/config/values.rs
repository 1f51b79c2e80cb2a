//! The typed values of the configuration: durations from `*_seconds` keys, networks, `http`
//! URLs and secrets, each read (and refused) at load so that nothing downstream converts.

use std::fmt;
use std::time::Duration;

use mtls_runtime::Cidr;
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

use super::ConfigError;

/// A secret value from the configuration: never printed, logged as `<redacted>`, wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

/// Any scalar is taken as the secret's text: a secret of digits only must neither be refused
/// nor, worse, quoted back in a type error (deserializer errors show the value they met).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret (text)")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
                Ok(Secret::new(value))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Secret, E> {
                Ok(Secret::new(value.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Secret, E> {
                Ok(Secret::new(value.to_string()))
            }

            fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<Secret, E> {
                Ok(Secret::new(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be text; quote it"))
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be text; quote it"))
            }
        }

        deserializer.deserialize_any(Text)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// The shortest duration a timeout or interval may be configured to.
pub(super) const MIN_DURATION: Duration = Duration::from_millis(1);
/// The longest duration any `*_seconds` key may be configured to: one year.
pub(super) const MAX_WHOLE_SECONDS: u64 = 31_536_000;
/// [`MAX_WHOLE_SECONDS`] as a duration.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(MAX_WHOLE_SECONDS);
/// A day, the bound of the token lifetimes and clock windows.
pub(super) const DAY: Duration = Duration::from_secs(86_400);
/// The largest rate or burst of a rate limit.
pub(super) const MAX_RATE: f64 = 1e9;
/// `secrets.vault.address` by default.
pub(super) const DEFAULT_VAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// A duration as the configuration writes it: `30`, `0.5`.
pub(super) fn show(value: Duration) -> String {
    value.as_secs_f64().to_string()
}

/// `key`'s range: the error names the key.
pub(super) fn check_seconds(
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError(format!(
        "{key}: must be a number of seconds from {} to {}, got {}",
        show(min),
        show(max),
        show(value)
    )))
}

/// Reads a `*_seconds` value as written (`15`, `0.5`; `whole`: integers only) into a
/// [`Duration`]. Refused whatever the key, so that no value can panic: negative, `nan`, `inf`,
/// more than a year. Each key's own range is checked by
/// [`Config::validate`](super::Config::validate).
struct SecondsVisitor {
    whole: bool,
}

impl SecondsVisitor {
    fn out_of_range<E: serde::de::Error>(value: impl fmt::Display) -> E {
        E::custom(format!(
            "must be a number of seconds from 0 to {MAX_WHOLE_SECONDS} (a year), got {value}"
        ))
    }
}

impl serde::de::Visitor<'_> for SecondsVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.whole {
            "a whole number of seconds"
        } else {
            "a number of seconds"
        })
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Duration, E> {
        if value > MAX_WHOLE_SECONDS {
            return Err(Self::out_of_range(value));
        }
        Ok(Duration::from_secs(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Duration, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(Self::out_of_range(value)),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Duration, E> {
        if self.whole {
            return Err(E::custom(format!(
                "must be a whole number of seconds, got {value}"
            )));
        }
        if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&value) {
            return Err(Self::out_of_range(value));
        }
        Ok(Duration::from_secs_f64(value))
    }
}

/// A `*_seconds` key that takes fractions (`0.5`); written back as a number of seconds.
pub(super) mod seconds {
    use super::{Duration, SecondsVisitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(SecondsVisitor { whole: false })
    }

    /// The same for a key that may be absent.
    pub(in crate::config) mod optional {
        use super::{Deserialize, Deserializer, Duration, Serializer};

        struct Seconds(Duration);

        impl<'de> Deserialize<'de> for Seconds {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::deserialize(deserializer).map(Seconds)
            }
        }

        pub(in crate::config) fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => serializer.serialize_some(&value.as_secs_f64()),
                None => serializer.serialize_none(),
            }
        }

        pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<Seconds>::deserialize(deserializer)?.map(|seconds| seconds.0))
        }
    }
}

/// A `*_seconds` key that takes whole seconds only (as documented); written back as an integer.
pub(super) mod whole_seconds {
    use super::{Duration, SecondsVisitor};
    use serde::{Deserializer, Serializer};

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(SecondsVisitor { whole: true })
    }
}

/// A list of networks (`10.0.0.0/8`, or one address), parsed at load; written back as text.
pub(super) mod networks {
    use super::Cidr;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &[Cidr],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(value.iter().map(ToString::to_string))
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Cidr>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| text.parse::<Cidr>().map_err(D::Error::custom))
            .collect()
    }
}

/// An `http` or `https` URL with a host and no credentials (it is logged and shown in the
/// effective configuration), checked at load and kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    /// `secrets.vault.address` by default.
    pub(super) fn default_vault_address() -> Self {
        HttpUrl(DEFAULT_VAULT_ADDRESS.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;

    /// The error never quotes the text (it could hold credentials).
    fn try_from(text: String) -> Result<Self, String> {
        let url = reqwest::Url::parse(&text).map_err(|error| format!("not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("must be an http or https URL with a host".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not hold credentials".to_owned());
        }
        Ok(HttpUrl(text))
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

impl From<HttpUrl> for String {
    fn from(url: HttpUrl) -> String {
        url.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
