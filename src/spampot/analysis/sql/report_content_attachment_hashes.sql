-- Top attachments by SHA-256: a name they were sent under, type, size, TLSH, how often.
SELECT
    sha256,
    MIN(filename) AS filename,
    MIN(sniffed_type) AS sniffed_type,
    MIN(size) AS size,
    MIN(tlsh) AS tlsh,
    COUNT(*) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_attachments
GROUP BY sha256
ORDER BY messages DESC, sha256 ASC
LIMIT ${top}
