-- For the chosen campaigns: messages per (campaign, kind, value) for the kinds subject,
-- country and domain, from which the most common of each is taken.
WITH members AS (
    SELECT l.label, l.msg
    FROM ${labels} AS l
    WHERE l.label IN (${chosen})
)
SELECT m.label, 'subject' AS kind, c.subject AS value, COUNT(*) AS messages
FROM members AS m
JOIN message_content AS c ON m.msg = concat(c.raw_sensor, '/', c.file)
GROUP BY m.label, c.subject
UNION ALL
SELECT m.label, 'country' AS kind, c.country AS value, COUNT(*) AS messages
FROM members AS m
JOIN message_content AS c ON m.msg = concat(c.raw_sensor, '/', c.file)
GROUP BY m.label, c.country
UNION ALL
SELECT m.label, 'domain' AS kind, u.domain AS value, COUNT(DISTINCT m.msg) AS messages
FROM members AS m
JOIN message_urls AS u ON m.msg = concat(u.raw_sensor, '/', u.file)
GROUP BY m.label, u.domain
