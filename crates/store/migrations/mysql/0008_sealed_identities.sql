-- The identity re-sealed from a PKCS#12 certificate version (issue 16): the PKCS#8 key and
-- chain its intake parsed, AES-256-GCM like the version's own secret in `sealed_secrets` (never
-- plaintext), its additional data naming its kind, account, certificate and version. One row
-- per version, inserted once; removed with the version. A cold identity load opens it instead
-- of paying the PKCS#12 file's key derivations again.
CREATE TABLE sealed_identities (
    account_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    certificate_id BIGINT      NOT NULL,
    version        BIGINT      NOT NULL,
    key_id         VARCHAR(32) NOT NULL,
    nonce          LONGBLOB    NOT NULL,
    ciphertext     LONGBLOB    NOT NULL,
    written_at     BIGINT      NOT NULL,
    PRIMARY KEY (account_id, certificate_id, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
