-- Table 6, requests to the HTTP and SOCKS modules by outcome (smtp: tunnel to port 25;
-- other: tunnel to another port; get: a web request answered; error: invalid request).
SELECT
    CASE
        WHEN protocol = 'http' THEN 'HTTP'
        WHEN protocol LIKE 'socks%' THEN 'SOCKS'
        ELSE 'unknown'
    END AS module,
    outcome,
    COUNT(*) AS requests
FROM proxy_requests
GROUP BY
    CASE
        WHEN protocol = 'http' THEN 'HTTP'
        WHEN protocol LIKE 'socks%' THEN 'SOCKS'
        ELSE 'unknown'
    END,
    outcome
