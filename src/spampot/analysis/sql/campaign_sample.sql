-- A uniform sample of emails for content grouping (DuckDB's reservoir sample; on Spark use
-- TABLESAMPLE or ORDER BY rand() LIMIT).
SELECT raw_sensor, sensor, file, ts, src_ip, country
FROM messages
USING SAMPLE reservoir(${sample} ROWS) REPEATABLE (${seed})
