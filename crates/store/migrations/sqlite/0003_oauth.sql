-- OAuth 1.0a app keys (their secrets live in the secret store) and the shared nonce store.
DROP TABLE app_keys;
CREATE TABLE oauth_app_keys (
    id            BIGINT      NOT NULL PRIMARY KEY,
    consumer_key  VARCHAR(64) NOT NULL,
    access_token  VARCHAR(64) NOT NULL,
    account_scope TEXT        NOT NULL,
    privileges    TEXT        NOT NULL,
    revoked       BIGINT      NOT NULL DEFAULT 0,
    created_at    BIGINT      NOT NULL
);
CREATE UNIQUE INDEX oauth_app_keys_consumer ON oauth_app_keys (consumer_key);
CREATE TABLE oauth_nonces (
    consumer_key VARCHAR(64)  NOT NULL,
    nonce        VARCHAR(128) NOT NULL,
    expires_at   BIGINT       NOT NULL,
    PRIMARY KEY (consumer_key, nonce)
);
CREATE INDEX oauth_nonces_expiry ON oauth_nonces (expires_at);
