-- Export: the recipient lists of relay tests (the spammers' own mailboxes).
SELECT
    m.rcpt_to AS value,
    COUNT(*) AS count,
    MIN(c.ts) AS first_seen,
    MAX(c.ts) AS last_seen
FROM message_content AS c
JOIN messages AS m ON m.raw_sensor = c.raw_sensor AND m.file = c.file
WHERE c.relay_evidence IS NOT NULL
GROUP BY m.rcpt_to
ORDER BY count DESC, first_seen ASC
