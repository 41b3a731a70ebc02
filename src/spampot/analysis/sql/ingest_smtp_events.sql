-- SMTP dialogue events other than messages: AUTH attempts, rejects (limits, storage) and
-- client errors, one row each.
SELECT
    e.ts,
    e.sensor,
    e.raw_sensor,
    e.session,
    e.src_ip,
    e.dst_port,
    substr(e.eventid, 9) AS eventid,
    e.mechanism,
    e.username,
    e.password,
    e.stage,
    e.code,
    e.why,
    e.error,
    CAST(e.ts AS DATE) AS day
FROM batch_events AS e
WHERE e.eventid IN ('spampot.smtp.auth', 'spampot.smtp.reject', 'spampot.smtp.error')
