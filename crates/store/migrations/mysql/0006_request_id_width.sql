-- A caller's X-Request-Id of up to 128 characters becomes the request id of the call (SPEC 6.2,
-- issue 18), and so the audit entry's. SQLite does not enforce VARCHAR lengths: no twin there.
ALTER TABLE audit_log MODIFY request_id VARCHAR(128) NOT NULL;
