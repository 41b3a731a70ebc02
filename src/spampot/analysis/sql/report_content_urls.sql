-- Top URLs (normalised: scheme and host lower-cased, obfuscation undone).
SELECT
    url,
    COUNT(*) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen
FROM message_urls
GROUP BY url
ORDER BY messages DESC, url ASC
LIMIT ${top}
