-- Registry fidelity and citations (issue 13 items 4-5).
-- registry_authorities.subdivisions: the deeper subdivisions the statute has under an
--   authority; a citation of one not listed is unrecognised, never read as its parent.
-- registry_order_restraints.words / reading: the order's own words for what a restraint
--   reaches, and the reading the registry chose where those words are ambiguous (every
--   finding under the restraint says which reading it used).
-- registry_recipients.safeguards_due_on: when the next safeguards review is due, so a
--   late one is reported "overdue since" that day; time_zone: the agency's IANA zone
--   (the ML detectors read it before their own configuration).
-- The resolution view gains both, so rules read them for codes written any way.
ALTER TABLE registry_authorities ADD COLUMN IF NOT EXISTS subdivisions VARCHAR[];
ALTER TABLE registry_order_restraints ADD COLUMN IF NOT EXISTS words VARCHAR;
ALTER TABLE registry_order_restraints ADD COLUMN IF NOT EXISTS reading VARCHAR;
ALTER TABLE registry_recipients ADD COLUMN IF NOT EXISTS safeguards_due_on DATE;
ALTER TABLE registry_recipients ADD COLUMN IF NOT EXISTS time_zone VARCHAR;
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
       r.safeguards_reviewed_on,
       r.safeguards_due_on,
       r.time_zone
FROM direct d
LEFT JOIN registry_recipients r ON r.code = d.code
LEFT JOIN by_pattern bp ON bp.agency = d.agency;
COMMENT ON VIEW registry_recipient_resolution IS 'Agency codes seen in the logs resolved to registry recipients and categories: code or alias as written, then folded (case, punctuation, spacing) against codes, aliases and names, then code patterns.';
