-- Recipients per domain, per day and sensor, summed over the batch: the exact input of the
-- "top recipient domains" table, small enough to sum at any scale (a message's recipients are
-- not unnested again at report time). Spark SQL's spelling (explode at the top of a select
-- list; on DuckDB a macro of that name, sql.SPARK_NAMES): it runs on both engines.
SELECT
    sensor,
    lower(split_part(rcpt, '@', -1)) AS domain,
    COUNT(*) AS recipients,
    day
FROM (
    SELECT
        e.sensor,
        CAST(e.ts AS DATE) AS day,
        explode(e.rcpt_to) AS rcpt
    FROM batch_events AS e
    WHERE e.eventid = 'spampot.smtp.message'
) AS r
GROUP BY sensor, lower(split_part(rcpt, '@', -1)), day
