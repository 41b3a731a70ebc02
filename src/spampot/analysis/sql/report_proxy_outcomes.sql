-- Table 6, requests to the HTTP and SOCKS modules by outcome (smtp: tunnel to port 25;
-- other: tunnel to another port; get: a web request answered; error: invalid request).
-- A request counts in the module of the port it came to, as the paper counts: the emulator
-- that answered (the port's role, which the sensor records), or, for events written before
-- ports had roles, the port's module in the paper's Table 1 (the view port_modules), or else
-- the protocol spoken. What the client spoke is kept beside it.
SELECT
    module,
    spoken,
    outcome,
    COUNT(*) AS requests
FROM (
    SELECT
        COALESCE(
            CASE
                WHEN p.module = 'http' THEN 'HTTP'
                WHEN p.module LIKE 'socks%' THEN 'SOCKS'
            END,
            m.module,
            CASE
                WHEN p.protocol = 'http' THEN 'HTTP'
                WHEN p.protocol LIKE 'socks%' THEN 'SOCKS'
                ELSE 'unknown'
            END
        ) AS module,
        CASE
            WHEN p.protocol = 'http' THEN 'HTTP'
            WHEN p.protocol LIKE 'socks%' THEN 'SOCKS'
            ELSE 'unknown'
        END AS spoken,
        p.outcome
    FROM proxy_requests AS p
    LEFT JOIN port_modules AS m ON p.dst_port = m.port
) AS r
GROUP BY module, spoken, outcome
