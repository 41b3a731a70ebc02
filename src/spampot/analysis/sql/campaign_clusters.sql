-- Campaigns: the components of two messages or more, with their size, sources, countries,
-- sensors and first/last seen; the most common subject and domain come from
-- campaign_parts.sql.
WITH members AS (
    SELECT l.label, c.ts, c.src_ip, c.country, c.sensor
    FROM ${labels} AS l
    JOIN message_content AS c ON l.msg = concat(c.raw_sensor, '/', c.file)
)
SELECT
    label,
    COUNT(*) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    COUNT(DISTINCT country) AS countries,
    COUNT(DISTINCT sensor) AS sensors,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM members
GROUP BY label
HAVING COUNT(*) >= 2
ORDER BY messages DESC, label ASC
LIMIT ${top}
