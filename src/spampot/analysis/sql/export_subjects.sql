-- Export: the decoded subjects of the messages.
SELECT
    subject AS value,
    COUNT(*) AS count,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_content
WHERE subject IS NOT NULL
GROUP BY subject
ORDER BY count DESC, value ASC
