-- Table 6, requests to the HTTP and SOCKS modules by outcome (smtp: tunnel to port 25;
-- other: tunnel to another port; get: a web request answered; error: invalid request).
-- The module is the emulator that answered (a SOCKS greeting on a Squid port is a request to
-- the HTTP module); events written before ports had roles name it by their protocol.
SELECT
    module,
    outcome,
    COUNT(*) AS requests
FROM (
    SELECT
        CASE
            WHEN COALESCE(module, protocol) = 'http' THEN 'HTTP'
            WHEN COALESCE(module, protocol) LIKE 'socks%' THEN 'SOCKS'
            ELSE 'unknown'
        END AS module,
        outcome
    FROM proxy_requests
) AS requests
GROUP BY module, outcome
