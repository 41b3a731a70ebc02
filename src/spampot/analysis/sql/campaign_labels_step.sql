-- Label propagation, one step: each feature takes the least label of its messages, then each
-- message the least label of its features. Labels only decrease, so the steps end when no
-- label changes (after as many steps as the longest chain of shared features).
WITH feature_label AS (
    SELECT e.feature, MIN(l.label) AS label
    FROM campaign_edges AS e
    JOIN ${labels} AS l ON e.msg = l.msg
    GROUP BY e.feature
)
SELECT e.msg, MIN(f.label) AS label
FROM campaign_edges AS e
JOIN feature_label AS f ON e.feature = f.feature
GROUP BY e.msg
