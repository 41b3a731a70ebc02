-- Export: the registered domains the messages advertise.
SELECT
    domain AS value,
    COUNT(DISTINCT concat(raw_sensor, '/', file)) AS count,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_urls
WHERE domain IS NOT NULL
GROUP BY domain
ORDER BY count DESC, value ASC
