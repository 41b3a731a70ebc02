-- Campaign features of each message (content/fingerprint.py): its 8 MinHash LSH band keys,
-- the registered domains it advertises and its attachments' SHA-256. Two messages sharing a
-- feature are one campaign (connected components: campaign_labels_*.sql). Only features two
-- messages or more share are kept; a domain in more than 2 % of the messages (a URL
-- shortener, a link every HTML mail carries) would join unrelated campaigns and is left out.
WITH features AS (
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh0 AS STRING)) AS feature
    FROM message_content WHERE mh0 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh1 AS STRING)) AS feature
    FROM message_content WHERE mh1 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh2 AS STRING)) AS feature
    FROM message_content WHERE mh2 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh3 AS STRING)) AS feature
    FROM message_content WHERE mh3 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh4 AS STRING)) AS feature
    FROM message_content WHERE mh4 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh5 AS STRING)) AS feature
    FROM message_content WHERE mh5 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh6 AS STRING)) AS feature
    FROM message_content WHERE mh6 IS NOT NULL
    UNION ALL
    SELECT concat(raw_sensor, '/', file) AS msg, concat('b:', CAST(mh7 AS STRING)) AS feature
    FROM message_content WHERE mh7 IS NOT NULL
    UNION ALL
    SELECT DISTINCT concat(raw_sensor, '/', file) AS msg, concat('d:', domain) AS feature
    FROM message_urls WHERE domain IS NOT NULL
    UNION ALL
    SELECT DISTINCT concat(raw_sensor, '/', file) AS msg, concat('a:', sha256) AS feature
    FROM message_attachments WHERE sha256 IS NOT NULL
),
shared AS (
    SELECT feature
    FROM features
    GROUP BY feature
    HAVING COUNT(*) >= 2
        AND (feature NOT LIKE 'd:%' OR COUNT(*) <= 0.02 * (SELECT COUNT(*) FROM message_content))
)
SELECT f.msg, f.feature
FROM features AS f
JOIN shared AS s ON f.feature = s.feature
