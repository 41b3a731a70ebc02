-- Emails per day, sensor port and protocol (how the message came in: direct SMTP, through
-- the HTTP proxy, or through SOCKS 4/4a/5): Table 5 is its sum over days, Figure 3 its shares.
SELECT
    day,
    dst_port AS port,
    CASE
        WHEN via = 'smtp' THEN 'SMTP'
        WHEN via = 'http' THEN 'HTTP'
        WHEN via LIKE 'socks%' THEN 'SOCKS'
        ELSE UPPER(via)
    END AS protocol,
    COUNT(*) AS emails
FROM messages
GROUP BY
    day,
    dst_port,
    CASE
        WHEN via = 'smtp' THEN 'SMTP'
        WHEN via = 'http' THEN 'HTTP'
        WHEN via LIKE 'socks%' THEN 'SOCKS'
        ELSE UPPER(via)
    END
