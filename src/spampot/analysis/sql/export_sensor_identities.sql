-- Export: what names the sensors themselves (never to appear in a feed): every address the
-- clients reached and every sensor name, over the whole warehouse, not just the period.
SELECT DISTINCT dst_ip AS value FROM all_messages WHERE dst_ip IS NOT NULL
UNION
SELECT DISTINCT dst_ip FROM all_proxy_requests WHERE dst_ip IS NOT NULL
UNION
SELECT DISTINCT sensor FROM all_messages WHERE sensor IS NOT NULL
UNION
SELECT DISTINCT raw_sensor FROM all_messages WHERE raw_sensor IS NOT NULL
UNION
SELECT DISTINCT sensor FROM all_proxy_requests WHERE sensor IS NOT NULL
