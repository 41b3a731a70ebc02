-- The feature graph: each feature joined to the first feature of every message that has it
-- (a message's features are then all one component, through its first). Each feature also
-- has a link to itself through the messages whose first it is (or to a smaller first).
SELECT DISTINCT m.first, e.feature
FROM campaign_edges AS e
JOIN campaign_messages AS m ON e.msg = m.msg
