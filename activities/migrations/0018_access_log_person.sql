-- The access log as FHIR AuditEvent (issue 29, HL7 Norway's AuditEvent guide): each access
-- names the person by their HPR number and the organisation they acted for (organisation
-- number, from a HelseID sign-in), where known; a service's access names neither. A HelseID
-- sign-in may also carry the trust framework's grounds (`authorization_details` of type
-- `nhn:tillitsrammeverk:parameters`): the purpose of use (e.g. TREAT) and the reference of the
-- decision that gave the care relationship; each access keeps both.
ALTER TABLE access_log
    ADD COLUMN person       text,
    ADD COLUMN organisation text,
    ADD COLUMN purpose      text,
    ADD COLUMN decision_ref text;

-- What a row's hash covers now: migration 0008's fields, then these, labelled and left out
-- when NULL, so every row written before hashes as it did and the chain runs on unbroken.
CREATE FUNCTION rop_access_log_hash(
    previous bytea, chain_seq bigint, at timestamptz, principal text, roles text,
    workflow_id text, action text, outcome text, grounds text, reason text, namespace text,
    person text, organisation text, purpose text, decision_ref text
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(
        coalesce(previous, '\x'::bytea)
        || convert_to(
            concat_ws(E'\x1f', chain_seq::text,
                      to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                      principal, roles, workflow_id, action, outcome,
                      'grounds=' || grounds, 'reason=' || reason, 'namespace=' || namespace,
                      'person=' || person, 'organisation=' || organisation,
                      'purpose=' || purpose, 'decision_ref=' || decision_ref),
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
                                        NEW.grounds, NEW.reason, NEW.namespace,
                                        NEW.person, NEW.organisation,
                                        NEW.purpose, NEW.decision_ref);
    UPDATE access_log_head SET chain_seq = NEW.chain_seq, row_hash = NEW.row_hash;
    RETURN NEW;
END
$$;
