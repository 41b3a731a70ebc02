-- One row per spampot.session.close event: every TCP connection, with its length and bytes.
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
    e.duration_s,
    e.bytes_in,
    e.bytes_out,
    e.reason,
    i.country,
    i.asn,
    i.as_name,
    i.as_country,
    i.geo_source,
    CAST(e.ts AS DATE) AS day
FROM batch_events AS e
LEFT JOIN ipinfo AS i ON e.src_ip = i.src_ip
WHERE e.eventid = 'spampot.session.close'
