-- Emails and recipients per day and sensor (messages per day per sensor; residential vs
-- business sensors are sums of it by tag).
SELECT day, sensor, COUNT(*) AS emails, SUM(rcpt_count) AS recipients
FROM messages
GROUP BY day, sensor
