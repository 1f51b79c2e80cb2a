-- Sealed secrets per certificate version (issue 17): a version is inserted once, by the writer
-- that claimed it, and never overwritten, so the certificate row's version decides which secret
-- is live. Secrets stored before this migration (one per certificate, their additional data
-- naming no version) become version 0, the legacy layout, read as the current version until the
-- certificate's first replacement removes them. `written_at` tells an abandoned claim from one
-- in progress.
CREATE TABLE sealed_secret_versions (
    account_id     VARCHAR(64) NOT NULL,
    certificate_id BIGINT      NOT NULL,
    version        BIGINT      NOT NULL,
    key_id         VARCHAR(32) NOT NULL,
    nonce          BLOB        NOT NULL,
    ciphertext     BLOB        NOT NULL,
    written_at     BIGINT      NOT NULL,
    PRIMARY KEY (account_id, certificate_id, version)
);
INSERT INTO sealed_secret_versions (account_id, certificate_id, version, key_id, nonce, ciphertext, written_at)
    SELECT account_id, certificate_id, 0, key_id, nonce, ciphertext, 0 FROM sealed_secrets;
DROP TABLE sealed_secrets;
ALTER TABLE sealed_secret_versions RENAME TO sealed_secrets;
