-- Recipients per domain, per day and sensor, summed over the batch: the exact input of the
-- "top recipient domains" table, small enough to sum at any scale (a message's recipients are
-- not unnested again at report time).
SELECT
    sensor,
    domain,
    COUNT(*) AS recipients,
    day
FROM (
    SELECT
        e.sensor,
        CAST(e.ts AS DATE) AS day,
        lower(split_part(unnest(e.rcpt_to), '@', -1)) AS domain
    FROM batch_events AS e
    WHERE e.eventid = 'spampot.smtp.message'
)
GROUP BY sensor, domain, day
