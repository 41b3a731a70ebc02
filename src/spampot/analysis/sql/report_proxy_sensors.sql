-- Proxy requests per sensor (for the residential vs business comparison).
SELECT sensor, COUNT(*) AS requests
FROM proxy_requests
GROUP BY sensor
