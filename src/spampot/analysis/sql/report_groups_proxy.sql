-- The aggregates of the proxy requests for Table 6, the sensors' requests and the top
-- destinations, in one scan of them (grouping sets; `grouping_set` names each row's set):
-- outcome:     per module of the port, protocol spoken and outcome (Table 6)
-- sensor:      requests per sensor
-- destination: per host and port asked for (report_destinations ranks them, then counts the
--              distinct sources of the top ones: a set per host, port and source address
--              here took 23 CPU-s at 100 million emails, against 14-17 for a COUNT(DISTINCT)
--              per host and port of every request)
-- A request counts in the module of the port it came to, as the paper counts: the emulator
-- that answered (the port's role, which the sensor records), or, for events written before
-- ports had roles, the port's module in the paper's Table 1 (the view port_modules), or else
-- the protocol spoken. What the client spoke is kept beside it.
SELECT
    CASE
        WHEN GROUPING(sensor) = 0 THEN 'sensor'
        WHEN GROUPING(target_host) = 0 THEN 'destination'
        ELSE 'outcome'
    END AS grouping_set,
    module,
    spoken,
    outcome,
    sensor,
    target_host,
    target_port,
    COUNT(*) AS requests,
    SUM(CASE WHEN outcome = 'smtp' THEN 1 ELSE 0 END) AS smtp_tunnels
FROM (
    SELECT
        COALESCE(
            CASE
                WHEN p.module = 'http' THEN 'HTTP'
                WHEN p.module LIKE 'socks%' THEN 'SOCKS'
            END,
            m.module,
            p.spoken
        ) AS module,
        p.spoken,
        p.outcome,
        p.sensor,
        p.target_host,
        p.target_port
    FROM (
        SELECT
            module,
            CASE
                WHEN protocol = 'http' THEN 'HTTP'
                WHEN protocol LIKE 'socks%' THEN 'SOCKS'
                ELSE 'unknown'
            END AS spoken,
            outcome,
            sensor,
            target_host,
            target_port,
            dst_port
        FROM proxy_requests
    ) AS p
    LEFT JOIN port_modules AS m ON p.dst_port = m.port
) AS r
GROUP BY GROUPING SETS (
    (module, spoken, outcome),
    (sensor),
    (target_host, target_port)
)
