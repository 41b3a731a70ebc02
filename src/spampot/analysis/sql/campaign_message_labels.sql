-- Each message's campaign: the label of its component, which its first feature has (as
-- every feature of the message does).
SELECT m.msg, l.label
FROM campaign_messages AS m
JOIN ${labels} AS l ON m.first = l.feature
