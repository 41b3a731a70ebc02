-- Table 2, general statistics: the counts over every email (smtp.message) in the range.
-- Distinct ASes count AS numbers, plus AS names where the database gave no number.
SELECT
    MIN(day) AS first_day,
    MAX(day) AS last_day,
    COUNT(DISTINCT day) AS days_with_data,
    COUNT(*) AS emails,
    SUM(rcpt_count) AS recipients,
    COUNT(DISTINCT src_ip) AS unique_ips,
    COUNT(DISTINCT asn)
        + COUNT(DISTINCT CASE WHEN asn IS NULL THEN as_name END) AS unique_ases,
    COUNT(DISTINCT country) AS unique_countries,
    COUNT(asn) AS emails_with_asn,
    COUNT(as_name) AS emails_with_as_name,
    COUNT(country) AS emails_with_country
FROM messages
