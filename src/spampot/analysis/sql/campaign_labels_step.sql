-- Label propagation, one step: each feature takes the least label of the features it is
-- linked to, both ways (and its own: every feature is linked to a first <= itself, and that
-- first to it). Labels only decrease, so the steps end when no label changes (after as many
-- steps as the longest chain of links); a component's label is then its least feature.
WITH pairs AS (
    SELECT first AS feature, feature AS other FROM campaign_links
    UNION ALL
    SELECT feature, first AS other FROM campaign_links
    UNION ALL
    SELECT feature, feature AS other FROM ${labels}
)
SELECT p.feature, MIN(l.label) AS label
FROM pairs AS p
JOIN ${labels} AS l ON p.other = l.feature
GROUP BY p.feature
