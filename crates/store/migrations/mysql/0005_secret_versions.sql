-- Sealed secrets per certificate version (issue 17): a version is inserted once, by the writer
-- that claimed it, and never overwritten, so the certificate row's version decides which secret
-- is live. Secrets stored before this migration (one per certificate, their additional data
-- naming no version) become version 0, the legacy layout, read as the current version until the
-- certificate's first replacement removes them. `written_at` tells an abandoned claim from one
-- in progress.
UPDATE sealed_secrets SET version = 0;
ALTER TABLE sealed_secrets
    ADD COLUMN written_at BIGINT NOT NULL DEFAULT 0,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (account_id, certificate_id, version);
