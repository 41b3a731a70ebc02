-- Top destination servers requested through the proxies (host and port as the client asked):
-- ranked by their requests (proxy_groups, see report_groups_proxy), then the distinct sources
-- counted for the top ones only (a COUNT(DISTINCT) per host and port of every request was most
-- of the cost: 14 of 17 CPU-s at 100 million emails).
WITH top_destinations AS (
    SELECT
        target_host,
        target_port,
        requests,
        smtp_tunnels,
        100.0 * requests / SUM(requests) OVER () AS pct
    FROM proxy_groups
    WHERE grouping_set = 'destination' AND target_host IS NOT NULL
    ORDER BY requests DESC, target_host ASC, target_port ASC
    LIMIT ${top}
),
top_sources AS (
    SELECT p.target_host, p.target_port, COUNT(DISTINCT p.src_ip) AS sources
    FROM proxy_requests AS p
    JOIN top_destinations AS t
        ON p.target_host = t.target_host
        AND p.target_port IS NOT DISTINCT FROM t.target_port
    GROUP BY p.target_host, p.target_port
)
SELECT t.target_host, t.target_port, t.requests, t.smtp_tunnels, s.sources, t.pct
FROM top_destinations AS t
JOIN top_sources AS s
    ON s.target_host = t.target_host
    AND s.target_port IS NOT DISTINCT FROM t.target_port
ORDER BY t.requests DESC, t.target_host ASC, t.target_port ASC
