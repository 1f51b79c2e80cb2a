-- Duplicate triplets among live mappings are refused by the database too: `active_url_key` is
-- a hash of (serviceId, normalized URL) while the mapping is not deleted, NULL after.
ALTER TABLE mappings ADD COLUMN active_url_key VARCHAR(64);
CREATE UNIQUE INDEX mappings_active_url_key ON mappings (account_id, active_url_key);
CREATE INDEX mappings_certificate ON mappings (account_id, certificate_id);
