-- The messages of one ingest batch whose stored files content extraction reads: one row per
-- spampot.smtp.message event, with what the relay-test rules need (the address and port
-- the client reached, the tunnel's target, the number of recipients) and the source's
-- country and AS from `ipinfo`. DuckDB only (it reads the batch, like ingest_*.sql).
SELECT
    e.ts,
    e.sensor,
    e.raw_sensor,
    e.file,
    e.src_ip,
    e.sha256,
    i.country,
    i.asn,
    e.dst_ip,
    e.dst_port,
    e.target_host,
    COALESCE(len(e.rcpt_to), 0) AS recipients
FROM batch_events AS e
LEFT JOIN ipinfo AS i ON e.src_ip = i.src_ip
WHERE e.eventid = 'spampot.smtp.message'
ORDER BY e.ts
