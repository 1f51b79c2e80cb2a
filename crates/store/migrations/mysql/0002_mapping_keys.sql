-- MySQL/MariaDB twin of ../sqlite/0002_mapping_keys.sql.
ALTER TABLE mappings ADD COLUMN active_url_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin;
CREATE UNIQUE INDEX mappings_active_url_key ON mappings (account_id, active_url_key);
CREATE INDEX mappings_certificate ON mappings (account_id, certificate_id);
