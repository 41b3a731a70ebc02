-- Export: for each day, each indicator of the day (kind, value) with its count and times, for
-- one MISP event per day.
SELECT CAST(ts AS DATE) AS day, 'ip-src' AS kind, src_ip AS value, COUNT(*) AS count,
    MIN(ts) AS first_seen, MAX(ts) AS last_seen
FROM messages WHERE src_ip IS NOT NULL GROUP BY CAST(ts AS DATE), src_ip
UNION ALL
SELECT CAST(ts AS DATE), 'domain', domain, COUNT(*), MIN(ts), MAX(ts)
FROM message_urls WHERE domain IS NOT NULL GROUP BY CAST(ts AS DATE), domain
UNION ALL
SELECT CAST(ts AS DATE), 'url', url, COUNT(*), MIN(ts), MAX(ts)
FROM message_urls GROUP BY CAST(ts AS DATE), url
UNION ALL
SELECT CAST(ts AS DATE), 'sha256', sha256, COUNT(*), MIN(ts), MAX(ts)
FROM message_attachments WHERE sha256 IS NOT NULL GROUP BY CAST(ts AS DATE), sha256
UNION ALL
SELECT CAST(ts AS DATE), 'email-subject', subject, COUNT(*), MIN(ts), MAX(ts)
FROM message_content WHERE subject IS NOT NULL GROUP BY CAST(ts AS DATE), subject
