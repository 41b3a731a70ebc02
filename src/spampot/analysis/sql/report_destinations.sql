-- Top destination servers requested through the proxies (host and port as the client asked).
SELECT
    target_host,
    target_port,
    COUNT(*) AS requests,
    SUM(CASE WHEN outcome = 'smtp' THEN 1 ELSE 0 END) AS smtp_tunnels,
    COUNT(DISTINCT src_ip) AS sources,
    100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
FROM proxy_requests
WHERE target_host IS NOT NULL
GROUP BY target_host, target_port
ORDER BY requests DESC, target_host ASC, target_port ASC
LIMIT ${top}
