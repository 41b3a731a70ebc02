-- One row per spampot.smtp.message event: an email, as the paper counts them (Table 2).
-- Reads the batch view `batch_events` (the event files of one ingest batch) and `ipinfo`
-- (enrichment of each distinct source address, looked up once). Spark SQL's spelling
-- (size; on DuckDB a macro of that name, sql.SPARK_NAMES): it runs on both engines.
SELECT
    e.ts,
    e.sensor,
    e.raw_sensor,
    e.session,
    e.src_ip,
    e.src_port,
    e.dst_ip,
    e.dst_port,
    e.proxied_by,
    e.via,
    e.target_host,
    e.target_port,
    e.helo,
    e.mail_from,
    e.rcpt_to,
    size(e.rcpt_to) AS rcpt_count,
    e.size,
    e.sha256,
    e.queue_id,
    e.file,
    i.country,
    i.asn,
    i.as_name,
    i.as_country,
    i.geo_source,
    CAST(e.ts AS DATE) AS day
FROM batch_events AS e
LEFT JOIN ipinfo AS i ON e.src_ip = i.src_ip
WHERE e.eventid = 'spampot.smtp.message'
