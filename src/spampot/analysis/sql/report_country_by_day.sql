-- Emails per day and source country: Table 3 is its sum over days, Figure 2 its shares per
-- period. A null country is an address no database knew ("unknown").
SELECT day, country, emails
FROM message_groups
WHERE grouping_set = 'country_day'
