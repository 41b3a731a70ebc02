-- Every aggregate of the emails the report needs, in one scan of them (grouping sets): each
-- row belongs to one set, named by its `grouping_set`; the tables' own queries (Tables 2–5,
-- the sensors' days) read this. Reading the columns is most of a report's cost, and a query
-- per table read them once each.
-- country_day: emails per day and source country (Table 3, Figure 2)
-- port_day:    per day, sensor port and protocol spoken (Table 5, Figure 3)
-- as:          per AS number, name, registration country and source country (Table 4)
-- sensor_day:  emails and recipients per day and sensor
-- ip, geo:     one row per source address and per address database (distinct counts)
SELECT
    CASE
        WHEN GROUPING(src_ip) = 0 THEN 'ip'
        WHEN GROUPING(geo_source) = 0 THEN 'geo'
        WHEN GROUPING(sensor) = 0 THEN 'sensor_day'
        WHEN GROUPING(port) = 0 THEN 'port_day'
        WHEN GROUPING(asn) = 0 THEN 'as'
        ELSE 'country_day'
    END AS grouping_set,
    day,
    country,
    port,
    protocol,
    asn,
    as_name,
    as_country,
    sensor,
    src_ip,
    geo_source,
    COUNT(*) AS emails,
    SUM(rcpt_count) AS recipients
FROM (
    SELECT
        day,
        country,
        dst_port AS port,
        -- How the message came in: direct SMTP, through the HTTP proxy, or SOCKS 4/4a/5.
        CASE
            WHEN via = 'smtp' THEN 'SMTP'
            WHEN via = 'http' THEN 'HTTP'
            WHEN via LIKE 'socks%' THEN 'SOCKS'
            ELSE UPPER(via)
        END AS protocol,
        asn,
        as_name,
        as_country,
        sensor,
        src_ip,
        geo_source,
        rcpt_count
    FROM messages
) AS m
GROUP BY GROUPING SETS (
    (day, country),
    (day, port, protocol),
    (asn, as_name, as_country, country),
    (day, sensor),
    (src_ip),
    (geo_source)
)
