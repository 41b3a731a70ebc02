-- Features whose label the last propagation step changed.
SELECT COUNT(*) AS changed
FROM ${labels} AS n
JOIN ${previous} AS p ON n.feature = p.feature
WHERE n.label <> p.label
