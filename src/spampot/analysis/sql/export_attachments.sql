-- Export: the attachments' hashes, with a file name, type and size.
SELECT
    sha256 AS value,
    COUNT(*) AS count,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen,
    MIN(filename) AS filename,
    MIN(sniffed_type) AS type,
    MIN(size) AS size,
    MIN(tlsh) AS tlsh
FROM message_attachments
WHERE sha256 IS NOT NULL
GROUP BY sha256
ORDER BY count DESC, value ASC
