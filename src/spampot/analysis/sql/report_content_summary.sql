-- Content extraction over the range: messages by status (ok, mismatch, missing, error), the
-- parser that read them and the first limit reached, if any.
SELECT
    status,
    parser,
    limit_reached,
    COUNT(*) AS messages
FROM message_content
GROUP BY status, parser, limit_reached
ORDER BY messages DESC, status ASC, parser ASC, limit_reached ASC
