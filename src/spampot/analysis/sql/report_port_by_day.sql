-- Emails per day, sensor port and protocol (how the message came in: direct SMTP, through
-- the HTTP proxy, or through SOCKS 4/4a/5): Table 5 is its sum over days, Figure 3 its shares.
SELECT day, port, protocol, emails
FROM message_groups
WHERE grouping_set = 'port_day'
