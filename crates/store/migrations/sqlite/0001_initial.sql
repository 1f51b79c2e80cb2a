-- Certificates: metadata only. The PKCS#12 bytes and password live in the secret store.
-- `active_name` is `name` while the row is not deleted and NULL after: the unique index then
-- enforces name uniqueness among live certificates of an account on SQLite and MySQL alike.
CREATE TABLE certificates (
    id                 BIGINT       NOT NULL PRIMARY KEY,
    account_id         VARCHAR(64)  NOT NULL,
    name               VARCHAR(128) NOT NULL,
    active_name        VARCHAR(128),
    deleted            BIGINT       NOT NULL DEFAULT 0,
    version            BIGINT       NOT NULL,
    secret_state       VARCHAR(16)  NOT NULL,
    subject            TEXT         NOT NULL,
    issuer             TEXT         NOT NULL,
    serial_number      VARCHAR(128) NOT NULL,
    not_before         BIGINT       NOT NULL,
    not_after          BIGINT       NOT NULL,
    fingerprint_sha256 VARCHAR(64)  NOT NULL,
    key_type           VARCHAR(32)  NOT NULL,
    chain_length       BIGINT       NOT NULL,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL
);
CREATE UNIQUE INDEX certificates_active_name ON certificates (account_id, active_name);
CREATE INDEX certificates_account ON certificates (account_id, deleted);

-- Sealed secrets of the embedded store (AES-256-GCM ciphertext, never plaintext).
CREATE TABLE sealed_secrets (
    account_id     VARCHAR(64) NOT NULL,
    certificate_id BIGINT      NOT NULL,
    version        BIGINT      NOT NULL,
    key_id         VARCHAR(32) NOT NULL,
    nonce          BLOB        NOT NULL,
    ciphertext     BLOB        NOT NULL,
    PRIMARY KEY (account_id, certificate_id)
);

-- Mappings (account, service, URL) -> certificate; used from the mappings issue on.
CREATE TABLE mappings (
    id             BIGINT        NOT NULL PRIMARY KEY,
    account_id     VARCHAR(64)   NOT NULL,
    name           VARCHAR(128)  NOT NULL,
    active_name    VARCHAR(128),
    certificate_id BIGINT        NOT NULL,
    service_id     VARCHAR(32)   NOT NULL,
    url            TEXT          NOT NULL,
    url_key        VARCHAR(64),
    enabled        BIGINT        NOT NULL,
    deleted        BIGINT        NOT NULL DEFAULT 0,
    upstream_ca    TEXT,
    created_at     BIGINT        NOT NULL,
    updated_at     BIGINT        NOT NULL
);
CREATE UNIQUE INDEX mappings_active_name ON mappings (account_id, active_name);
CREATE INDEX mappings_account ON mappings (account_id, deleted);

-- OAuth 1.0a application keys; secrets sealed by the secret store.
CREATE TABLE app_keys (
    consumer_key   VARCHAR(64) NOT NULL PRIMARY KEY,
    account_scope  TEXT        NOT NULL,
    privileges     TEXT        NOT NULL,
    sealed_secrets BLOB        NOT NULL,
    revoked        BIGINT      NOT NULL DEFAULT 0,
    created_at     BIGINT      NOT NULL
);

-- The audit trail: who did what, never a secret value.
CREATE TABLE audit_log (
    id         BIGINT       NOT NULL PRIMARY KEY,
    account_id VARCHAR(64)  NOT NULL,
    at         BIGINT       NOT NULL,
    actor      VARCHAR(256) NOT NULL,
    action     VARCHAR(64)  NOT NULL,
    target_ids TEXT         NOT NULL,
    outcome    VARCHAR(32)  NOT NULL,
    request_id VARCHAR(64)  NOT NULL
);
CREATE INDEX audit_account_time ON audit_log (account_id, at);

-- A revision counter per account (and '*' for the whole gateway), bumped on every change.
CREATE TABLE revisions (
    account_id VARCHAR(64) NOT NULL PRIMARY KEY,
    revision   BIGINT      NOT NULL
);
