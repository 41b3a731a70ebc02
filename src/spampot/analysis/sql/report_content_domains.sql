-- Top advertised registered domains (Public Suffix List, or the address of a numeric host):
-- messages linking to each, the distinct hosts and URLs under it, sources, first/last seen.
SELECT
    domain,
    COUNT(DISTINCT concat(raw_sensor, '/', file)) AS messages,
    COUNT(DISTINCT host) AS hosts,
    COUNT(DISTINCT url) AS urls,
    COUNT(DISTINCT src_ip) AS sources,
    SUM(CASE WHEN obfuscated THEN 1 ELSE 0 END) AS obfuscated,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_urls
WHERE domain IS NOT NULL
GROUP BY domain
ORDER BY messages DESC, domain ASC
LIMIT ${top}
