-- Emails and recipients per day and sensor (messages per day per sensor; residential vs
-- business sensors are sums of it by tag).
SELECT day, sensor, emails, recipients
FROM message_groups
WHERE grouping_set = 'sensor_day'
