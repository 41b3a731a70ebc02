-- Messages with content over the range, and how many of them some campaign holds.
SELECT
    (SELECT COUNT(*) FROM message_content WHERE status IN ('ok', 'mismatch')) AS messages,
    (SELECT COUNT(*) FROM ${labels}) AS linked
