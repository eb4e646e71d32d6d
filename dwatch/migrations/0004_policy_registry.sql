-- The policy registry materialised for SQL joins (written by dwatch.policy.sync_registry).
-- The YAML under policies/ is the source of truth; these tables are replaced on every sync
-- and carry the registry_version they came from. Analysts may query them directly.
CREATE TABLE IF NOT EXISTS registry_versions (
    registry_version VARCHAR PRIMARY KEY,
    declared_version VARCHAR,
    files VARCHAR[],
    first_synced_at TIMESTAMPTZ DEFAULT now(),
    last_synced_at TIMESTAMPTZ DEFAULT now()
);
COMMENT ON TABLE registry_versions IS 'Every policy registry version synced into the store; alerts record the version that judged them.';

CREATE TABLE IF NOT EXISTS registry_authorities (
    authority_id VARCHAR PRIMARY KEY,    -- normalised citation, e.g. 26 USC 6103(i)(2)
    title VARCHAR,
    kind VARCHAR,                        -- disclosure_authority | confidentiality_rule | accounting_requirement | safeguards_requirement | audit_standard
    effective_from TIMESTAMPTZ,
    effective_to TIMESTAMPTZ,
    recipient_categories VARCHAR[],      -- who may receive, by category (empty with codes empty = not restricted)
    recipient_codes VARCHAR[],           -- ... and agencies the statute names
    purposes VARCHAR[],                  -- allowed purpose codes (empty = any)
    data_elements_allowed VARCHAR[],     -- empty = any
    data_elements_forbidden VARCHAR[],
    written_request BOOLEAN,
    required_elements VARCHAR[],         -- what each request item must set forth
    requires_court_order BOOLEAN,
    redisclosure_allowed BOOLEAN,
    case_by_case BOOLEAN,                -- meant for individual requests
    safeguards_required BOOLEAN,
    includes_subdivisions BOOLEAN,
    accounting_fields VARCHAR[],
    sources JSON,
    registry_version VARCHAR
);
COMMENT ON TABLE registry_authorities IS 'Statutes that permit or govern disclosures, as data: who may receive, purposes, data elements, request requirements.';

CREATE TABLE IF NOT EXISTS registry_authority_aliases (
    alias VARCHAR NOT NULL,
    authority_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_authority_requester_roles (
    authority_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    recipient_categories VARCHAR[],      -- empty = any recipient
    recipient_codes VARCHAR[]
);
COMMENT ON TABLE registry_authority_requester_roles IS 'Roles that may sign a request under an authority, optionally only for some recipients (e.g. U.S. Attorneys for Justice).';

CREATE TABLE IF NOT EXISTS registry_court_orders (
    order_id VARCHAR PRIMARY KEY,
    case_name VARCHAR,
    court VARCHAR,
    docket VARCHAR,
    issued DATE,
    kind VARCHAR,
    summary VARCHAR,
    sources JSON,
    registry_version VARCHAR
);
CREATE TABLE IF NOT EXISTS registry_order_status (
    order_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,             -- in_force | stayed | modified | vacated | expired | reversed
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,                -- the next status change; NULL = still current
    binding BOOLEAN NOT NULL,            -- whether the order's restraints bind in this period
    note VARCHAR
);
COMMENT ON TABLE registry_order_status IS 'Status history of each court order as periods; an event is judged by the period containing its occurred_at.';
CREATE TABLE IF NOT EXISTS registry_order_restraints (
    order_id VARCHAR NOT NULL,
    restraint_no INTEGER NOT NULL,
    description VARCHAR,
    disclosing_agencies VARCHAR[],
    disclosing_categories VARCHAR[],
    recipient_agencies VARCHAR[],
    recipient_categories VARCHAR[],
    holder_agencies VARCHAR[],           -- the enjoined holder of data, on either side of a use event
    holder_categories VARCHAR[],
    event_types VARCHAR[],
    data_elements VARCHAR[],             -- empty = any
    purposes VARCHAR[],                  -- empty = any
    effective_from TIMESTAMPTZ,
    effective_to TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS registry_order_exceptions (
    order_id VARCHAR NOT NULL,
    restraint_no INTEGER NOT NULL,
    exception_no INTEGER NOT NULL,
    description VARCHAR,
    authorities VARCHAR[],
    purposes VARCHAR[],
    requires_case_number BOOLEAN
);

CREATE TABLE IF NOT EXISTS registry_agreements (
    agreement_id VARCHAR PRIMARY KEY,
    title VARCHAR,
    kind VARCHAR,
    parties VARCHAR[],
    authorities VARCHAR[],
    signed DATE,
    effective_from TIMESTAMPTZ,
    effective_to TIMESTAMPTZ,
    suspended_by_orders VARCHAR[],
    sources JSON,
    registry_version VARCHAR
);
CREATE TABLE IF NOT EXISTS registry_agreement_aliases (
    alias VARCHAR NOT NULL,              -- upper case
    agreement_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_agreement_status (
    agreement_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    note VARCHAR
);

CREATE TABLE IF NOT EXISTS registry_recipients (
    code VARCHAR PRIMARY KEY,
    name VARCHAR,
    category VARCHAR,
    parent VARCHAR,
    safeguards_status VARCHAR,           -- current | expired | none | not_required | unknown
    safeguards_reviewed_on DATE,
    safeguards_note VARCHAR,
    sources JSON,
    registry_version VARCHAR
);
CREATE TABLE IF NOT EXISTS registry_recipient_aliases (
    alias VARCHAR NOT NULL,              -- upper case
    code VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_recipient_patterns (
    pattern_no INTEGER NOT NULL,
    pattern VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    name VARCHAR,
    safeguards_status VARCHAR
);
CREATE TABLE IF NOT EXISTS registry_parameters (
    name VARCHAR PRIMARY KEY,
    value JSON
);

-- Common questions, as views.
CREATE OR REPLACE VIEW registry_orders_now AS
SELECT o.order_id, o.case_name, o.court, o.docket, o.issued, s.status, s.valid_from AS status_since, s.binding
FROM registry_court_orders o
LEFT JOIN registry_order_status s
  ON s.order_id = o.order_id AND s.valid_from <= now() AND (s.valid_to IS NULL OR s.valid_to > now());
COMMENT ON VIEW registry_orders_now IS 'Each court order with its status today.';

-- Every agency code seen in the logs, resolved to a registry recipient and category:
-- explicit code, then alias, then the first matching code pattern.
CREATE OR REPLACE VIEW registry_recipient_resolution AS
WITH seen AS (
    SELECT DISTINCT recipient_agency AS agency FROM disclosure_events
    UNION SELECT DISTINCT disclosing_agency FROM disclosure_events
),
direct AS (
    SELECT s.agency, coalesce(r.code, ra.code) AS code
    FROM seen s
    LEFT JOIN registry_recipients r ON r.code = upper(trim(s.agency))
    LEFT JOIN registry_recipient_aliases ra ON ra.alias = upper(trim(s.agency))
),
by_pattern AS (
    SELECT d.agency, p.category, p.name, p.safeguards_status
    FROM direct d JOIN registry_recipient_patterns p ON regexp_full_match(upper(trim(d.agency)), p.pattern)
    WHERE d.code IS NULL
    QUALIFY row_number() OVER (PARTITION BY d.agency ORDER BY p.pattern_no) = 1
)
SELECT d.agency,
       coalesce(d.code, upper(trim(d.agency))) AS code,
       coalesce(r.category, bp.category) AS category,
       coalesce(r.name, bp.name) AS name,
       CASE WHEN r.code IS NOT NULL THEN 'registry' WHEN bp.category IS NOT NULL THEN 'pattern' ELSE 'unknown' END AS resolved_by,
       coalesce(r.safeguards_status, bp.safeguards_status, 'unknown') AS safeguards_status,
       r.safeguards_reviewed_on
FROM direct d
LEFT JOIN registry_recipients r ON r.code = d.code
LEFT JOIN by_pattern bp ON bp.agency = d.agency;
COMMENT ON VIEW registry_recipient_resolution IS 'Agency codes seen in the logs resolved to registry recipients and categories (code, alias, or code pattern).';
