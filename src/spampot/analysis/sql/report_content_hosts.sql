-- Top advertised hosts, with their registered domain.
SELECT
    host,
    MIN(domain) AS domain,
    COUNT(DISTINCT concat(raw_sensor, '/', file)) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_urls
GROUP BY host
ORDER BY messages DESC, host ASC
LIMIT ${top}
