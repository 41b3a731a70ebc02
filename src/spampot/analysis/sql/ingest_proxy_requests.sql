-- One row per spampot.proxy.request event: a request to the HTTP or SOCKS module (Table 6).
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
    e.protocol,
    e.version,
    e.method,
    e.target_host,
    e.target_port,
    e.outcome,
    e.module,
    e.auth.method AS auth_method,
    e.auth.username AS auth_username,
    e.auth.password AS auth_password,
    e.error,
    i.country,
    i.asn,
    i.as_name,
    i.as_country,
    i.geo_source,
    CAST(e.ts AS DATE) AS day
FROM batch_events AS e
LEFT JOIN ipinfo AS i ON e.src_ip = i.src_ip
WHERE e.eventid = 'spampot.proxy.request'
