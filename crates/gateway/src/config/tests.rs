//! Tests of the configuration: loading, the key named in every error, each kind of typed value.

use super::values::DEFAULT_VAULT_ADDRESS;
use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtls-config-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn no_configuration_gives_the_embedded_defaults() {
    let config = Config::load_from(None, vars(&[("PATH", "/usr/bin")])).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.data_dir, PathBuf::from("./mtls-data"));
    assert!(config.auth.hs256_enabled);
    assert_eq!(config.intake.max_file_bytes, 1024 * 1024);
}

#[test]
fn the_token_endpoint_lifetime_is_bounded() {
    let config = Config::load_from(None, vars(&[])).unwrap();
    assert!(config.auth.token_endpoint.enabled);
    assert_eq!(
        config.auth.token_endpoint.lifetime_seconds,
        Duration::from_secs(3600)
    );
    for (value, ok) in [("0", false), ("1", true), ("86400", true), ("86401", false)] {
        let loaded = Config::load_from(
            None,
            vars(&[(
                "MTLS_GATEWAY__AUTH__TOKEN_ENDPOINT__LIFETIME_SECONDS",
                value,
            )]),
        );
        assert_eq!(loaded.is_ok(), ok, "{value}");
        if let Err(error) = loaded {
            assert!(
                error.0.contains("auth.token_endpoint.lifetime_seconds"),
                "{error}"
            );
        }
    }
}

#[test]
fn environment_overrides_the_file() {
    let file = temp_file(
        "override.toml",
        "data_dir = \"/from/file\"\n[server]\nlisten = \"127.0.0.1:7000\"\n",
    );
    let config = Config::load_from(
        Some(&file),
        vars(&[
            ("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:9000"),
            ("MTLS_GATEWAY__INTAKE__MAX_ITERATIONS", "5000"),
            ("MTLS_GATEWAY__AUTH__AUDIENCE", "[a, b]"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(config.data_dir, PathBuf::from("/from/file"));
    assert_eq!(config.intake.max_iterations, 5000);
    assert_eq!(config.auth.audience, ["a", "b"]);
    let config =
        Config::load_from(None, vars(&[("MTLS_GATEWAY__DATA_DIR", "/var/lib/mtls")])).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/mtls"));
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let file = temp_file(
        "unknown.toml",
        "[server]\nlisten = \"127.0.0.1:7000\"\nlisen = 1\n",
    );
    let error = Config::load_from(Some(&file), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("lisen"), "{error}");
    let error = Config::load_from(None, vars(&[("MTLS_GATEWAY__SERVER__PORT", "1")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("port"), "{error}");
    let error = Config::load_from(None, vars(&[("MTLS_GATEWAY__NOPE__X", "1")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("nope"), "{error}");
    let missing = Config::load_from(Some(Path::new("/no/such/file.toml")), vars(&[])).unwrap_err();
    assert!(missing.to_string().contains("/no/such/file.toml"));
}

#[test]
fn networks_are_parsed_at_load() {
    let error = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/33\"]")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("server.trusted_proxies"), "{error}");
    let error = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__EGRESS__ALLOW_CIDRS", "[\"not-a-network\"]")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("egress.allow_cidrs"), "{error}");
}

#[test]
fn follow_redirects_is_read_at_load_and_a_bad_value_names_the_key() {
    assert_eq!(
        Config::load_from(None, vars(&[]))
            .unwrap()
            .forward
            .follow_redirects,
        FollowRedirects::SameOrigin
    );
    let file = temp_file(
        "redirects.toml",
        "[forward]\nfollow_redirects = \"never\"\n",
    );
    let config = Config::load_from(Some(&file), vars(&[])).unwrap();
    assert_eq!(config.forward.follow_redirects, FollowRedirects::Never);
    let error = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__FORWARD__FOLLOW_REDIRECTS", "always")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("forward.follow_redirects"), "{error}");
}

#[test]
fn upstream_http2_is_read_at_load_and_a_bad_value_names_the_key() {
    assert_eq!(
        Config::load_from(None, vars(&[]))
            .unwrap()
            .forward
            .upstream_http2,
        UpstreamHttp2::WhenOffered
    );
    let file = temp_file("http2.toml", "[forward]\nupstream_http2 = \"never\"\n");
    let config = Config::load_from(Some(&file), vars(&[])).unwrap();
    assert_eq!(config.forward.upstream_http2, UpstreamHttp2::Never);
    let error = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__FORWARD__UPSTREAM_HTTP2", "always")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("forward.upstream_http2"), "{error}");
}

#[test]
fn secrets_come_from_files_and_are_redacted() {
    let secret = "s3cret-value-that-is-long-enough-000000";
    let file = temp_file("hs256.secret", &format!("{secret}\n"));
    let config = Config::load_from(
        None,
        vars(&[(
            "MTLS_GATEWAY__AUTH__HS256_SECRET_FILE",
            file.to_str().unwrap(),
        )]),
    )
    .unwrap();
    assert_eq!(config.auth.hs256_secret.as_ref().unwrap().expose(), secret);
    let json = config.redacted_json();
    assert!(
        !json.contains(secret) && json.contains("<redacted>"),
        "{json}"
    );
    assert!(!format!("{config:?}").contains(secret));
    // A key of digits only stays the text it was (not a number, and never echoed in an error).
    let digits = "1".repeat(64);
    let config = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__SECRETS__LOCAL__MASTER_KEY", &digits)]),
    )
    .unwrap();
    assert_eq!(
        config.secrets.local.master_key.as_ref().unwrap().expose(),
        digits
    );
    let file = temp_file(
        "numeric.toml",
        "[auth]\nhs256_secret = 1234567890123456789\n",
    );
    let config = Config::load_from(Some(&file), vars(&[])).unwrap();
    assert_eq!(
        config.auth.hs256_secret.as_ref().unwrap().expose(),
        "1234567890123456789"
    );
    let file = temp_file("float.toml", "[auth]\nhs256_secret = 31415.9265\n");
    let error = Config::load_from(Some(&file), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(!error.contains("31415"), "{error}");
    let both = Config::load_from(
        None,
        vars(&[
            (
                "MTLS_GATEWAY__AUTH__HS256_SECRET_FILE",
                file.to_str().unwrap(),
            ),
            ("MTLS_GATEWAY__AUTH__HS256_SECRET", secret),
        ]),
    );
    assert!(both.unwrap_err().to_string().contains("not both"));
}

/// `[auth.claims]` (issue 18): loaded from TOML, every bad value refused at load with the
/// key named, and the `aud`/audience conflict refused.
#[test]
fn the_claim_mapping_is_validated_at_load() {
    let base = "[auth]\njwks_files = [\"/idp/jwks.json\"]\n\
                [auth.claims]\nissuer = [\"https://idp.example\"]\naccounts = \"aud\"\ncaller = \"azp\"\n\
                [auth.claims.scopes]\n\"mtls.read\" = [\"MTLS_READ_INTERNAL\"]\n";
    let config = Config::load_from(Some(&temp_file("claims.toml", base)), vars(&[])).unwrap();
    let claims = config.auth.claims.as_ref().unwrap();
    let mapping = claims.mapping(&config.auth).unwrap();
    assert_eq!(
        (mapping.accounts.as_str(), mapping.caller.as_str()),
        ("aud", "azp")
    );
    assert_eq!(mapping.scope, "scope");
    assert!(!mapping.wildcard_accounts);
    assert!(mapping.scopes["mtls.read"].contains(mtls_auth::Privilege::ReadInternal));
    for (name, edit, key) in [
        (
            "unknown",
            base.replace("caller = \"azp\"", "caller = \"azp\"\nroles = \"x\""),
            "roles",
        ),
        (
            "privilege",
            base.replace("\"MTLS_READ_INTERNAL\"", "\"MTLS_READ\""),
            "auth.claims.scopes",
        ),
        (
            "space",
            base.replace("\"mtls.read\"", "\"mtls read\""),
            "auth.claims.scopes",
        ),
        (
            "empty",
            base.replace("caller = \"azp\"", "caller = \"\""),
            "auth.claims.caller",
        ),
        ("missing", base.replace("caller = \"azp\"\n", ""), "caller"),
        (
            "audience",
            base.replace("[auth]\n", "[auth]\naudience = [\"gw\"]\n"),
            "auth.claims.accounts",
        ),
        (
            "issuer",
            base.replace("issuer = [\"https://idp.example\"]", "issuer = []"),
            "auth.claims.issuer",
        ),
        (
            "keys",
            base.replace("jwks_files = [\"/idp/jwks.json\"]\n", ""),
            "auth.jwks_files",
        ),
    ] {
        let file = temp_file(&format!("claims-{name}.toml"), &edit);
        let error = Config::load_from(Some(&file), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{name}: {error}");
    }
    // The audience check stays available when the accounts are in another claim.
    let other = base
        .replace("accounts = \"aud\"", "accounts = \"tenant\"")
        .replace("[auth]\n", "[auth]\naudience = [\"gw\"]\n");
    assert!(Config::load_from(Some(&temp_file("claims-tenant.toml", &other)), vars(&[])).is_ok());
}

#[test]
fn tracing_settings_are_validated_at_load() {
    let file = temp_file(
        "tracing.toml",
        "[tracing]\notlp_endpoint = \"http://collector:4318/v1/traces\"\nsample_ratio = 0.25\n",
    );
    let config = Config::load_from(Some(&file), vars(&[])).unwrap();
    assert_eq!(
        config.tracing.otlp_endpoint.as_ref().map(HttpUrl::as_str),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(config.tracing.batch_size, 512);
    assert!(
        Config::default().tracing.otlp_endpoint.is_none(),
        "off by default"
    );
    for (key, value) in [
        ("OTLP_ENDPOINT", "collector:4318"),
        ("OTLP_ENDPOINT", "ftp://collector/v1/traces"),
        ("OTLP_ENDPOINT", "http://user:pass@collector/v1/traces"),
        ("SAMPLE_RATIO", "1.5"),
        ("SAMPLE_RATIO", "-0.1"),
        ("SAMPLE_RATIO", "nan"),
        ("EXPORT_TIMEOUT_SECONDS", "0"),
        ("BATCH_SIZE", "0"),
        ("QUEUE_CAPACITY", "0"),
        ("SERVICE_NAME", " "),
    ] {
        let name = format!("MTLS_GATEWAY__TRACING__{key}");
        let error = Config::load_from(None, vars(&[(name.as_str(), value)]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("tracing.{}", key.to_lowercase())),
            "{key}={value}: {error}"
        );
        assert!(!error.contains("pass"), "{error}");
    }
}
/// Loads `pairs` as the environment; the error text, or `None` when accepted.
fn refused(pairs: &[(&str, &str)]) -> Option<String> {
    Config::load_from(None, vars(pairs))
        .err()
        .map(|error| error.to_string())
}

/// Loads `toml` as the file; the error text, or `None` when accepted.
fn refused_in_file(name: &str, toml: &str) -> Option<String> {
    Config::load_from(Some(&temp_file(name, toml)), vars(&[]))
        .err()
        .map(|error| error.to_string())
}

/// Issue 19: every `*_seconds` key is a `Duration` read once at load, from the values the
/// documentation names (`15`, `0.5`), and written back in the effective configuration as
/// before.
#[test]
fn seconds_are_durations_read_at_load() {
    let file = temp_file(
        "durations.toml",
        "[forward]\nresponse_timeout_seconds = 0.5\nconnect_timeout_seconds = 15\n\
         [database]\nacquire_timeout_seconds = 7\n",
    );
    let config = Config::load_from(
        Some(&file),
        vars(&[
            ("MTLS_GATEWAY__FORWARD__IDLE_TIMEOUT_SECONDS", "0.25"),
            ("MTLS_GATEWAY__SERVER__SHUTDOWN_GRACE_SECONDS", "0"),
            ("MTLS_GATEWAY__AUTH__LEEWAY_SECONDS", "45"),
        ]),
    )
    .unwrap();
    let forward = &config.forward;
    assert_eq!(forward.response_timeout_seconds, Duration::from_millis(500));
    assert_eq!(forward.connect_timeout_seconds, Duration::from_secs(15));
    assert_eq!(forward.idle_timeout_seconds, Duration::from_millis(250));
    assert_eq!(forward.body_idle_timeout(), Duration::from_millis(500));
    assert_eq!(config.server.shutdown_grace_seconds, Duration::ZERO);
    assert_eq!(config.auth.leeway_seconds, Duration::from_secs(45));
    assert_eq!(
        config.database.acquire_timeout_seconds,
        Duration::from_secs(7)
    );
    let config = Config::load_from(
        None,
        vars(&[("MTLS_GATEWAY__FORWARD__BODY_IDLE_TIMEOUT_SECONDS", "2.5")]),
    )
    .unwrap();
    assert_eq!(
        config.forward.body_idle_timeout(),
        Duration::from_millis(2500)
    );
    // The effective configuration shows the numbers as they were written before.
    let json = Config::default().redacted_json();
    for shown in [
        "\"response_timeout_seconds\":30.0",
        "\"body_idle_timeout_seconds\":null",
        "\"acquire_timeout_seconds\":5",
        "\"oauth_timestamp_window_seconds\":300",
        "\"address\":\"http://127.0.0.1:8200\"",
    ] {
        assert!(json.contains(shown), "{shown}: {json}");
    }
}

/// Each bad duration is refused with an error that starts with the key, through the
/// environment and the file.
#[test]
fn bad_seconds_are_refused_naming_the_key() {
    for (key, value, says) in [
        ("FORWARD__RESPONSE_TIMEOUT_SECONDS", "-1", "got -1"),
        ("FORWARD__RESPONSE_TIMEOUT_SECONDS", "-0.5", "got -0.5"),
        (
            "FORWARD__RESPONSE_TIMEOUT_SECONDS",
            "1e300",
            "expected a number of seconds",
        ),
        ("FORWARD__RESPONSE_TIMEOUT_SECONDS", "31536001", "a year"),
        ("FORWARD__RESPONSE_TIMEOUT_SECONDS", "0", "from 0.001"),
        (
            "FORWARD__RESPONSE_TIMEOUT_SECONDS",
            "soon",
            "number of seconds",
        ),
        ("FORWARD__BODY_IDLE_TIMEOUT_SECONDS", "-2", "got -2"),
        ("SERVER__SHUTDOWN_GRACE_SECONDS", "-1", "got -1"),
        ("AUTH__LEEWAY_SECONDS", "0.5", "whole number"),
        ("AUTH__LEEWAY_SECONDS", "86401", "from 0 to 86400"),
        (
            "AUTH__OAUTH_TIMESTAMP_WINDOW_SECONDS",
            "0",
            "from 1 to 86400",
        ),
        ("DATABASE__ACQUIRE_TIMEOUT_SECONDS", "-1", "got -1"),
        ("SECRETS__VAULT__TIMEOUT_SECONDS", "2.5", "whole number"),
        (
            "TRACING__EXPORT_TIMEOUT_SECONDS",
            "3601",
            "from 0.001 to 3600",
        ),
    ] {
        let name = format!("{ENV_PREFIX}{key}");
        let error = refused(&[(name.as_str(), value)]).unwrap_or_default();
        let dotted = key.to_lowercase().replace("__", ".");
        assert!(
            error.contains(&format!("{dotted}: ")) && error.contains(says),
            "{key}={value}: {error}"
        );
    }
    for value in ["nan", "inf", "-inf", "-1", "1e300"] {
        let error = refused_in_file(
            "bad-seconds.toml",
            &format!("[expiry]\ncheck_interval_seconds = {value}\n"),
        )
        .unwrap_or_default();
        assert!(
            error.contains("expiry.check_interval_seconds: must be a number of seconds")
                && error.contains("bad-seconds.toml"),
            "{value}: {error}"
        );
    }
    // A configuration built in code is checked by `validate` with the same names.
    let mut config = Config::default();
    config.runtime.sync_interval_seconds = Duration::ZERO;
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.starts_with("runtime.sync_interval_seconds: "),
        "{error}"
    );
    let mut config = Config::default();
    config.auth.token_endpoint.lifetime_seconds = Duration::from_millis(1500);
    let error = config.validate().unwrap_err().to_string();
    assert_eq!(
        error,
        "auth.token_endpoint.lifetime_seconds: must be a whole number of seconds, got 1.5"
    );
}

/// Networks are `Cidr` values; a bad one names its key and is quoted (not a secret).
#[test]
fn networks_are_typed() {
    let config = Config::load_from(
        None,
        vars(&[
            (
                "MTLS_GATEWAY__EGRESS__ALLOW_CIDRS",
                "[\"10.0.0.0/8\", \"fd00::/8\"]",
            ),
            ("MTLS_GATEWAY__SERVER__TRUSTED_PROXIES", "[\"192.0.2.7\"]"),
        ]),
    )
    .unwrap();
    let expected: Vec<Cidr> = ["10.0.0.0/8", "fd00::/8"]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    assert_eq!(config.egress.allow_cidrs, expected);
    let proxy: Cidr = "192.0.2.7".parse().unwrap();
    assert_eq!(config.server.trusted_proxies, [proxy]);
    let json = config.redacted_json();
    assert!(json.contains("\"10.0.0.0/8\""), "{json}");
    let error = refused(&[(
        "MTLS_GATEWAY__EGRESS__ALLOW_CIDRS",
        "[\"10.0.0.0/8\", \"10.0.0.0/40\"]",
    )])
    .unwrap_or_default();
    assert!(
        error.contains("egress.allow_cidrs: \"10.0.0.0/40\""),
        "{error}"
    );
}

/// URLs are checked at load (http or https, a host, no credentials) and kept as written;
/// the error names the key and never quotes the value.
#[test]
fn urls_are_typed() {
    let config = Config::load_from(
        None,
        vars(&[
            (
                "MTLS_GATEWAY__SECRETS__VAULT__ADDRESS",
                "https://vault.internal:8200",
            ),
            (
                "MTLS_GATEWAY__AUTH__PUBLIC_BASE_URL",
                "https://gateway.example",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.secrets.vault.address.as_str(),
        "https://vault.internal:8200"
    );
    assert_eq!(
        config.auth.public_base_url.as_ref().map(HttpUrl::as_str),
        Some("https://gateway.example")
    );
    assert_eq!(
        Config::default().secrets.vault.address.as_str(),
        DEFAULT_VAULT_ADDRESS
    );
    for (key, value, says) in [
        (
            "SECRETS__VAULT__ADDRESS",
            "vault.internal:8200",
            "http or https",
        ),
        ("SECRETS__VAULT__ADDRESS", "not a url", "not a URL"),
        (
            "SECRETS__VAULT__ADDRESS",
            "https://root:hunter2@vault",
            "credentials",
        ),
        (
            "AUTH__PUBLIC_BASE_URL",
            "ftp://gateway.example",
            "http or https",
        ),
        (
            "TRACING__OTLP_ENDPOINT",
            "http://user:hunter2@collector/v1/traces",
            "credentials",
        ),
    ] {
        let name = format!("{ENV_PREFIX}{key}");
        let error = refused(&[(name.as_str(), value)]).unwrap_or_default();
        let dotted = key.to_lowercase().replace("__", ".");
        assert!(
            error.contains(&format!("{dotted}: ")) && error.contains(says),
            "{key}={value}: {error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }
}

/// String choices are enums: another value names the key.
#[test]
fn choices_are_enums() {
    let config = Config::load_from(
        None,
        vars(&[
            ("MTLS_GATEWAY__LOG__FORMAT", "json"),
            ("MTLS_GATEWAY__SECRETS__BACKEND", "vault"),
        ]),
    )
    .unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.secrets.backend, SecretsBackend::Vault);
    for (key, value) in [("LOG__FORMAT", "xml"), ("SECRETS__BACKEND", "s3")] {
        let name = format!("{ENV_PREFIX}{key}");
        let error = refused(&[(name.as_str(), value)]).unwrap_or_default();
        let dotted = key.to_lowercase().replace("__", ".");
        assert!(
            error.contains(&format!("{dotted}: ")),
            "{key}={value}: {error}"
        );
    }
}

/// Sizes and counts are integers with bounds; paths are paths.
#[test]
fn sizes_are_bounded_integers_and_paths_are_paths() {
    let config = Config::load_from(
        None,
        vars(&[
            ("MTLS_GATEWAY__FORWARD__MAX_BODY_BYTES", "2048"),
            ("MTLS_GATEWAY__TLS__TRUST_ROOTS", "[\"/etc/ca.pem\"]"),
        ]),
    )
    .unwrap();
    assert_eq!(config.forward.max_body_bytes, 2048);
    assert_eq!(config.tls.trust_roots, [PathBuf::from("/etc/ca.pem")]);
    for (key, value, says) in [
        ("FORWARD__MAX_IDLE_TOTAL", "0", "must be from 1 to"),
        ("FORWARD__MAX_IDLE_TOTAL", "-1", "invalid"),
        (
            "SERVER__MAX_REQUEST_HEAD_BYTES",
            "100",
            "must be from 1024 to",
        ),
        ("INTAKE__CONCURRENCY", "1.5", "invalid type"),
    ] {
        let name = format!("{ENV_PREFIX}{key}");
        let error = refused(&[(name.as_str(), value)]).unwrap_or_default();
        let dotted = key.to_lowercase().replace("__", ".");
        assert!(
            error.contains(&format!("{dotted}: ")) && error.contains(says),
            "{key}={value}: {error}"
        );
    }
}
