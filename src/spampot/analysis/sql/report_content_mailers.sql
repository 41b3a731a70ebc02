-- Top mailers (X-Mailer, else User-Agent), as the messages give them.
SELECT
    mailer,
    COUNT(*) AS messages,
    COUNT(DISTINCT src_ip) AS sources,
    100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
FROM message_content
WHERE mailer IS NOT NULL
GROUP BY mailer
ORDER BY messages DESC, mailer ASC
LIMIT ${top}
