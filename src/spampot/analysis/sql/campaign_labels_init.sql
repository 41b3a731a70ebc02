-- Connected components of the feature graph by label propagation, first step: each
-- feature's label is the least first feature of the messages that have it.
SELECT feature, MIN(first) AS label
FROM campaign_links
GROUP BY feature
