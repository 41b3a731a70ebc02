-- Attachments by the type their bytes show (sniffed), beside the type they declared.
SELECT
    COALESCE(sniffed_type, 'unknown') AS sniffed_type,
    COUNT(*) AS attachments,
    COUNT(DISTINCT sha256) AS distinct_files,
    SUM(CASE WHEN sniffed_type IS NOT NULL AND sniffed_type <> declared_type THEN 1 ELSE 0 END)
        AS declared_otherwise,
    100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
FROM message_attachments
GROUP BY COALESCE(sniffed_type, 'unknown')
ORDER BY attachments DESC, sniffed_type ASC
