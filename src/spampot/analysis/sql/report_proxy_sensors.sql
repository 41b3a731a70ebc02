-- Proxy requests per sensor (for the residential vs business comparison).
SELECT sensor, requests
FROM proxy_groups
WHERE grouping_set = 'sensor'
