-- Table 2, general statistics: the counts over every email (smtp.message) in the range, from
-- the grouping sets of report_groups_messages (message_groups). Distinct ASes count AS
-- numbers, plus AS names where the database gave no number.
SELECT
    MIN(CASE WHEN grouping_set = 'sensor_day' THEN day END) AS first_day,
    MAX(CASE WHEN grouping_set = 'sensor_day' THEN day END) AS last_day,
    COUNT(DISTINCT CASE WHEN grouping_set = 'sensor_day' THEN day END) AS days_with_data,
    CAST(COALESCE(SUM(CASE WHEN grouping_set = 'sensor_day' THEN emails END), 0) AS BIGINT)
        AS emails,
    SUM(CASE WHEN grouping_set = 'sensor_day' THEN recipients END) AS recipients,
    COUNT(CASE WHEN grouping_set = 'ip' THEN src_ip END) AS unique_ips,
    COUNT(DISTINCT CASE WHEN grouping_set = 'as' THEN asn END)
        + COUNT(DISTINCT CASE WHEN grouping_set = 'as' AND asn IS NULL THEN as_name END)
        AS unique_ases,
    COUNT(DISTINCT CASE WHEN grouping_set = 'country_day' THEN country END) AS unique_countries,
    CAST(COALESCE(SUM(CASE WHEN grouping_set = 'as' AND asn IS NOT NULL THEN emails END), 0)
        AS BIGINT) AS emails_with_asn,
    CAST(COALESCE(SUM(CASE WHEN grouping_set = 'as' AND as_name IS NOT NULL THEN emails END), 0)
        AS BIGINT) AS emails_with_as_name,
    CAST(COALESCE(SUM(CASE WHEN grouping_set = 'as' AND country IS NOT NULL THEN emails END), 0)
        AS BIGINT) AS emails_with_country
FROM message_groups
