-- Expiry notifications sent (or logged): one row per certificate, validity end and threshold,
-- so that a restart does not notify again and a renewed certificate (new notAfter) re-arms.
CREATE TABLE expiry_notifications (
    account_id     VARCHAR(64) NOT NULL,
    certificate_id BIGINT      NOT NULL,
    not_after      BIGINT      NOT NULL,
    threshold_days BIGINT      NOT NULL,
    notified_at    BIGINT      NOT NULL,
    PRIMARY KEY (account_id, certificate_id, not_after, threshold_days)
);
