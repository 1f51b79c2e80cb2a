-- MySQL/MariaDB twin of ../sqlite/0004_expiry.sql.
CREATE TABLE expiry_notifications (
    account_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    certificate_id BIGINT      NOT NULL,
    not_after      BIGINT      NOT NULL,
    threshold_days BIGINT      NOT NULL,
    notified_at    BIGINT      NOT NULL,
    PRIMARY KEY (account_id, certificate_id, not_after, threshold_days)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
