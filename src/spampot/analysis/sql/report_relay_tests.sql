-- Relay tests (content/relay.py: short, to at most 3 mailboxes, carrying the relay's address,
-- port, target or a token), grouped by the mailboxes they were sent to: the spammers' own.
-- "followed" counts tests after which the same source sent 10 or more messages through the
-- same sensor within the hour: the burst that the test announced.
WITH tests AS (
    SELECT c.raw_sensor, c.file, c.ts, c.sensor, c.src_ip, COUNT(n.ts) AS after
    FROM message_content AS c
    LEFT JOIN messages AS n
        ON n.src_ip = c.src_ip
        AND n.sensor = c.sensor
        AND n.ts > c.ts
        AND n.ts <= c.ts + INTERVAL 1 HOUR
    WHERE c.relay_evidence IS NOT NULL
    GROUP BY c.raw_sensor, c.file, c.ts, c.sensor, c.src_ip
)
SELECT
    m.rcpt_to AS mailboxes,
    COUNT(*) AS tests,
    COUNT(DISTINCT t.src_ip) AS sources,
    COUNT(DISTINCT t.sensor) AS sensors,
    SUM(CASE WHEN t.after >= 10 THEN 1 ELSE 0 END) AS followed,
    SUM(t.after) AS messages_after,
    MIN(t.ts) AS first_seen,
    MAX(t.ts) AS last_seen
FROM tests AS t
JOIN messages AS m ON m.raw_sensor = t.raw_sensor AND m.file = t.file
GROUP BY m.rcpt_to
ORDER BY tests DESC, first_seen ASC
