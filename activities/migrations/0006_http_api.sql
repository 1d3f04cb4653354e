-- The HTTP API (issue 6): who read or changed which pathway (pasientjournalloven § 22,
-- Normen), the answers kept for Idempotency-Key, and a least-privilege role for the API.

-- One row per read or change of a pathway, or an attempt refused. Rows are only inserted.
CREATE TABLE access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    principal   text NOT NULL,
    roles       text NOT NULL,
    workflow_id text NOT NULL,
    action      text NOT NULL,
    outcome     text NOT NULL
);

CREATE INDEX access_log_workflow_idx ON access_log (workflow_id, id);

-- The refusal of migration 0005, now naming whichever table it guards.
CREATE OR REPLACE FUNCTION rop_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER access_log_append_only
    BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION rop_refuse_change();

CREATE TRIGGER access_log_no_truncate
    BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION rop_refuse_change();

-- The first answer to each (caller, Idempotency-Key); status_code is NULL while the
-- first request is still being handled.
CREATE TABLE api_idempotency (
    principal    text NOT NULL,
    key          text NOT NULL,
    fingerprint  text NOT NULL,
    status_code  integer,
    content_type text,
    location     text,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rop_api') THEN
        CREATE ROLE rop_api NOLOGIN;
    END IF;
END
$$;

-- Every column of pathways but the national id: the API never needs a fødselsnummer.
DO $$
DECLARE
    readable text;
BEGIN
    SELECT string_agg(quote_ident(column_name), ', ') INTO readable
    FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'pathways'
      AND column_name <> 'patient_national_id';
    EXECUTE format('GRANT SELECT (%s) ON pathways TO rop_api', readable);
END
$$;

GRANT SELECT ON tasks, contact_points, fact_teams, schema_migrations TO rop_api;
GRANT UPDATE (status, updated_at) ON tasks TO rop_api;
GRANT SELECT, INSERT ON access_log TO rop_api;
GRANT USAGE ON SEQUENCE access_log_id_seq TO rop_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_idempotency TO rop_api;
