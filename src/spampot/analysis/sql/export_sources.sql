-- Export: the addresses that sent mail through the sensors, with how often and when.
SELECT
    src_ip AS value,
    COUNT(*) AS count,
    MIN(ts) AS first_seen,
    MAX(ts) AS last_seen,
    MIN(country) AS country,
    MIN(asn) AS asn
FROM messages
WHERE src_ip IS NOT NULL
GROUP BY src_ip
ORDER BY count DESC, value ASC
