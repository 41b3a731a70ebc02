-- Table 4, top ASes originating spam. An AS is its number, or its name when the database gave
-- no number (geoip2fast); as_country is where the AS is registered (ip2asn), top_country the
-- country most of its emails came from.
WITH by_as AS (
    SELECT asn, as_name, as_country, country, emails
    FROM message_groups
    WHERE grouping_set = 'as'
),
keyed AS (
    SELECT
        CASE
            WHEN asn IS NOT NULL THEN CAST(asn AS STRING)
            WHEN as_name IS NOT NULL THEN CONCAT('name:', as_name)
        END AS as_key,
        asn,
        as_name,
        as_country,
        country,
        emails
    FROM by_as
)
SELECT
    MAX(asn) AS asn,
    max_by(as_name, emails) AS as_name,
    MAX(as_country) AS as_country,
    max_by(country, emails) AS top_country,
    SUM(emails) AS emails,
    100.0 * SUM(emails) / SUM(SUM(emails)) OVER () AS pct
FROM keyed
GROUP BY as_key
ORDER BY emails DESC, as_key ASC NULLS LAST
LIMIT ${top}
