-- Need of service (tjenstlig behov, issue 11): a person reads and drives only the
-- pathways of their own unit or those that name them; anything else needs "breaking the
-- glass" with a stated reason. The access log now says on which grounds each access was
-- made, the reason given for breaking the glass, and for decodes of Temporal payloads the
-- namespace they were made in.

ALTER TABLE access_log
    ADD COLUMN grounds   text CHECK (grounds IN ('service', 'unit', 'participant', 'break-glass')),
    ADD COLUMN reason    text,
    ADD COLUMN namespace text;

CREATE INDEX access_log_break_glass_idx ON access_log (at) WHERE grounds = 'break-glass';

-- What a row's hash covers now: the fields of migration 0007, then the new ones, each
-- labelled and left out when NULL. Rows written before this migration (all three NULL)
-- hash exactly as before, so the chain runs on unbroken.
CREATE FUNCTION rop_access_log_hash(
    previous bytea, chain_seq bigint, at timestamptz, principal text, roles text,
    workflow_id text, action text, outcome text, grounds text, reason text, namespace text
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(
        coalesce(previous, '\x'::bytea)
        || convert_to(
            concat_ws(E'\x1f', chain_seq::text,
                      to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                      principal, roles, workflow_id, action, outcome,
                      'grounds=' || grounds, 'reason=' || reason, 'namespace=' || namespace),
            'UTF8'))
$$;

CREATE OR REPLACE FUNCTION rop_chain_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    head access_log_head%ROWTYPE;
BEGIN
    SELECT * INTO STRICT head FROM access_log_head FOR UPDATE;
    NEW.chain_seq := head.chain_seq + 1;
    NEW.row_hash := rop_access_log_hash(head.row_hash, NEW.chain_seq, NEW.at, NEW.principal,
                                        NEW.roles, NEW.workflow_id, NEW.action, NEW.outcome,
                                        NEW.grounds, NEW.reason, NEW.namespace);
    UPDATE access_log_head SET chain_seq = NEW.chain_seq, row_hash = NEW.row_hash;
    RETURN NEW;
END
$$;

-- On which grounds a person may see a pathway: 'unit' when it belongs to one of their
-- units ('<health trust>/<TSB|PHV>'), 'participant' when it names them (the receiving
-- clinician, the GP, anyone who recorded a step or is named in one: koordinator,
-- crisis-plan responsible, measure responsible; anyone a task went to, invited parties
-- among them), 'none' otherwise, NULL for a pathway with no record. It runs as the
-- owner, so the API learns the answer without any right to read the steps themselves.
CREATE FUNCTION rop_need_of_service(
    pathway text, units text[], person text, email text
) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT CASE
        WHEN p.health_trust || '/' || p.receiving_unit = ANY (coalesce(units, '{}'))
            THEN 'unit'
        WHEN (person IS NOT NULL AND (
                 p.responsible_clinician = person OR p.general_practitioner = person
                 OR EXISTS (
                     SELECT FROM pathway_events e
                     WHERE e.workflow_id = p.workflow_id
                       AND (e.actor = person
                            OR jsonb_path_exists(e.details, '$.** ? (@ == $who)',
                                                 jsonb_build_object('who', person))))))
          OR EXISTS (
              SELECT FROM tasks t
              WHERE t.workflow_id = p.workflow_id AND t.recipient IN (person, email))
            THEN 'participant'
        ELSE 'none'
    END
    FROM pathways p
    WHERE p.workflow_id = pathway
$$;

REVOKE ALL ON FUNCTION rop_need_of_service(text, text[], text, text) FROM PUBLIC;

-- rop_api is migration 0006's.
GRANT EXECUTE ON FUNCTION rop_need_of_service(text, text[], text, text) TO rop_api;
