-- Languages (CLD2, from the visible text) and the charsets their text parts declared.
SELECT
    COALESCE(language, 'unknown') AS language,
    COALESCE(charset, 'none') AS charset,
    COUNT(*) AS messages,
    100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
FROM message_content
WHERE status IN ('ok', 'mismatch')
GROUP BY COALESCE(language, 'unknown'), COALESCE(charset, 'none')
ORDER BY messages DESC, language ASC, charset ASC
LIMIT ${top}
