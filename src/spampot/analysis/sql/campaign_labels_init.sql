-- Connected components by label propagation, first step: each message's label is the least
-- of its features.
SELECT msg, MIN(feature) AS label
FROM campaign_edges
GROUP BY msg
