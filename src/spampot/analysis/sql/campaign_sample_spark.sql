-- A uniform sample of emails for content grouping, on Spark: a random order cut at the sample
-- size (Spark plans ORDER BY ... LIMIT as a top-k per partition, not a full sort).
SELECT raw_sensor, sensor, file, ts, src_ip, country
FROM messages
ORDER BY rand(${seed})
LIMIT ${sample}
