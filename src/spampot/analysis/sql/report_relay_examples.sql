-- The latest relay tests with their evidence, and the messages the same source sent through
-- the same sensor in the hour after each.
SELECT
    c.ts,
    c.sensor,
    c.src_ip,
    c.country,
    c.subject,
    c.relay_evidence,
    COUNT(n.ts) AS messages_after
FROM message_content AS c
LEFT JOIN messages AS n
    ON n.src_ip = c.src_ip
    AND n.sensor = c.sensor
    AND n.ts > c.ts
    AND n.ts <= c.ts + INTERVAL 1 HOUR
WHERE c.relay_evidence IS NOT NULL
GROUP BY c.ts, c.sensor, c.src_ip, c.country, c.subject, c.relay_evidence
ORDER BY c.ts DESC, c.src_ip ASC
LIMIT ${top}
