-- Top recipient domains targeted: recipients summed from the per-day aggregate made at ingest.
SELECT
    domain,
    SUM(recipients) AS recipients,
    100.0 * SUM(recipients) / SUM(SUM(recipients)) OVER () AS pct
FROM recipient_domains
GROUP BY domain
ORDER BY recipients DESC, domain ASC
LIMIT ${top}
