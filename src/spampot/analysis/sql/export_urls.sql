-- Export: the URLs the messages carry (normalised, obfuscation undone).
SELECT
    url AS value,
    COUNT(*) AS count,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen,
    MIN(domain) AS domain
FROM message_urls
GROUP BY url
ORDER BY count DESC, value ASC
