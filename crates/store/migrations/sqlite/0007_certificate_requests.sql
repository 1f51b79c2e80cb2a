-- Keys the gateway makes (SPEC 4.6, issue 20). `pending` is 1 while a request's signed
-- certificate has not been uploaded: the leaf columns then hold no certificate (empty texts,
-- times 0, chain length 0; the entity shows status Pending and no expirationDate). `csr_pem` is
-- the PKCS#10 request of the live key when the gateway made it (public; the key itself is only
-- in the secret store). A renewal in progress: the secret version holding its key (a version of
-- the renewal range, never a live one), its key type and request, and once its chain is
-- uploaded with a later activateAt, that chain (public) and time; `renewal_state` is `pending`
-- or `scheduled`, NULL when there is no renewal.
ALTER TABLE certificates ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN csr_pem TEXT;
ALTER TABLE certificates ADD COLUMN renewal_state VARCHAR(16);
ALTER TABLE certificates ADD COLUMN renewal_version BIGINT;
ALTER TABLE certificates ADD COLUMN renewal_key_type VARCHAR(32);
ALTER TABLE certificates ADD COLUMN renewal_csr_pem TEXT;
ALTER TABLE certificates ADD COLUMN renewal_chain_pem TEXT;
ALTER TABLE certificates ADD COLUMN renewal_activate_at BIGINT;
ALTER TABLE certificates ADD COLUMN renewal_created_at BIGINT;
