-- MySQL/MariaDB twin of ../sqlite/0003_oauth.sql.
DROP TABLE app_keys;
CREATE TABLE oauth_app_keys (
    id            BIGINT      NOT NULL PRIMARY KEY,
    consumer_key  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    access_token  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    account_scope TEXT        NOT NULL,
    privileges    TEXT        NOT NULL,
    revoked       BIGINT      NOT NULL DEFAULT 0,
    created_at    BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX oauth_app_keys_consumer ON oauth_app_keys (consumer_key);
CREATE TABLE oauth_nonces (
    consumer_key VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    nonce        VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at   BIGINT       NOT NULL,
    PRIMARY KEY (consumer_key, nonce)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX oauth_nonces_expiry ON oauth_nonces (expires_at);
