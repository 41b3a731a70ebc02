-- Table 6, requests to the HTTP and SOCKS modules by outcome (smtp: tunnel to port 25;
-- other: tunnel to another port; get: a web request answered; error: invalid request), by
-- the module of the port and the protocol spoken (see report_groups_proxy).
SELECT module, spoken, outcome, requests
FROM proxy_groups
WHERE grouping_set = 'outcome'
