-- Each message with shared features and its least feature (`first`): the message joins its
-- features to its first one (campaign_links.sql), so the components are found on the
-- features alone, far fewer than the messages (campaign_labels_*.sql).
SELECT msg, MIN(feature) AS first
FROM campaign_edges
GROUP BY msg
