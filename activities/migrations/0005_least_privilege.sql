-- The event log is append-only, for everyone: a trigger refuses UPDATE and DELETE.
-- And a least-privilege role for the worker: it reads what it needs, writes the
-- pathway summary, tasks and deliveries, and may only insert into the event log.

CREATE OR REPLACE FUNCTION rop_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pathway_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER pathway_events_append_only
    BEFORE UPDATE OR DELETE ON pathway_events
    FOR EACH ROW EXECUTE FUNCTION rop_refuse_change();

CREATE TRIGGER pathway_events_no_truncate
    BEFORE TRUNCATE ON pathway_events
    FOR EACH STATEMENT EXECUTE FUNCTION rop_refuse_change();

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rop_worker') THEN
        CREATE ROLE rop_worker NOLOGIN;
    END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE ON pathways, tasks, deliveries TO rop_worker;
GRANT SELECT, INSERT ON pathway_events TO rop_worker;
GRANT SELECT ON contact_points, fact_teams, schema_migrations TO rop_worker;
GRANT USAGE ON SEQUENCE pathway_events_id_seq, tasks_id_seq TO rop_worker;
