-- Proxy requests per sensor (for the residential vs business comparison).
SELECT sensor, COUNT(*) AS requests, COUNT(DISTINCT src_ip) AS sources
FROM proxy_requests
GROUP BY sensor
