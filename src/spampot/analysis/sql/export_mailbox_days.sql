-- Export: relay tests' recipient lists per day, for the daily MISP events.
SELECT
    CAST(c.ts AS DATE) AS day,
    m.rcpt_to AS value,
    COUNT(*) AS count,
    MIN(c.ts) AS first_seen,
    MAX(c.ts) AS last_seen
FROM message_content AS c
JOIN messages AS m ON m.raw_sensor = c.raw_sensor AND m.file = c.file
WHERE c.relay_evidence IS NOT NULL
GROUP BY CAST(c.ts AS DATE), m.rcpt_to
