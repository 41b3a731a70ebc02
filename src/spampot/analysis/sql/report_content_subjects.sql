-- Top decoded subjects.
SELECT
    subject,
    COUNT(*) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_content
WHERE subject IS NOT NULL
GROUP BY subject
ORDER BY messages DESC, subject ASC
LIMIT ${top}
