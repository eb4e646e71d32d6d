-- Agency codes as other systems write them: "US ICE", "DHS/ICE", "ICE ERO", "TX_CPA",
-- "NY DTF", "Social Security Administration". 0004 matched codes and aliases only after
-- upper(trim()), so a space or slash where the registry has a dash left the agency
-- unplaced: a restrained recipient escaped its court order and a lawful state or SSA flow
-- was judged "recipient not permitted". Now, in order: the exact code or alias, then the
-- same compared folded (upper case, '&' read as AND, every non-alphanumeric dropped) also
-- against the registry recipient's full name, then the code patterns applied to the code
-- with each run of separators written as one dash. An agency whose folded form names two
-- registry recipients is left unplaced rather than guessed.
CREATE OR REPLACE VIEW registry_recipient_resolution AS
WITH seen AS (
    SELECT DISTINCT recipient_agency AS agency FROM disclosure_events
    UNION SELECT DISTINCT disclosing_agency FROM disclosure_events
),
keyed AS (
    SELECT agency,
           upper(trim(agency)) AS exact_key,
           regexp_replace(replace(upper(agency), '&', ' AND '), '[^A-Z0-9]+', '', 'g') AS folded_key,
           trim(regexp_replace(upper(agency), '[^A-Z0-9]+', '-', 'g'), '-') AS dashed_code
    FROM seen
),
names AS (
    -- every spelling the registry knows for a recipient: its code, aliases and name
    SELECT code, code AS spelling, 1 AS rank FROM registry_recipients
    UNION ALL SELECT code, alias, 1 FROM registry_recipient_aliases
    UNION ALL SELECT code, name, 2 FROM registry_recipients WHERE name IS NOT NULL
),
folded_names AS (
    SELECT regexp_replace(replace(upper(spelling), '&', ' AND '), '[^A-Z0-9]+', '', 'g') AS folded_key,
           min(rank) AS rank, min(code) AS code, count(DISTINCT code) AS codes
    FROM names GROUP BY 1
),
direct AS (
    SELECT k.agency, k.dashed_code,
           coalesce(r.code, ra.code, CASE WHEN f.codes = 1 THEN f.code END) AS code
    FROM keyed k
    LEFT JOIN registry_recipients r ON r.code = k.exact_key
    LEFT JOIN registry_recipient_aliases ra ON ra.alias = k.exact_key
    LEFT JOIN folded_names f ON f.folded_key = k.folded_key AND k.folded_key <> ''
    QUALIFY row_number() OVER (PARTITION BY k.agency ORDER BY r.code, ra.code, f.rank) = 1
),
by_pattern AS (
    SELECT d.agency, p.category, p.name, p.safeguards_status
    FROM direct d JOIN registry_recipient_patterns p ON regexp_full_match(d.dashed_code, p.pattern)
    WHERE d.code IS NULL
    QUALIFY row_number() OVER (PARTITION BY d.agency ORDER BY p.pattern_no) = 1
)
SELECT d.agency,
       -- a code placed by its shape is shown in its dashed form ("NY DTF" -> NY-DTF)
       coalesce(d.code, CASE WHEN bp.category IS NOT NULL THEN d.dashed_code END, upper(trim(d.agency))) AS code,
       coalesce(r.category, bp.category) AS category,
       coalesce(r.name, bp.name) AS name,
       CASE WHEN r.code IS NOT NULL THEN 'registry' WHEN bp.category IS NOT NULL THEN 'pattern' ELSE 'unknown' END AS resolved_by,
       coalesce(r.safeguards_status, bp.safeguards_status, 'unknown') AS safeguards_status,
       r.safeguards_reviewed_on
FROM direct d
LEFT JOIN registry_recipients r ON r.code = d.code
LEFT JOIN by_pattern bp ON bp.agency = d.agency;
COMMENT ON VIEW registry_recipient_resolution IS 'Agency codes seen in the logs resolved to registry recipients and categories: code or alias as written, then folded (case, punctuation, spacing) against codes, aliases and names, then code patterns.';
