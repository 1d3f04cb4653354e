-- The access log made tamper-evident (issue 11): each row carries the SHA-256 of its own
-- content and of the row before it, in the order rows were written (chain_seq). A row
-- changed or removed afterwards, even by someone who can switch the append-only trigger
-- off, breaks the chain where it happened; `rop access-log verify` finds it. The head of
-- the chain (its last position and hash) is kept apart, so removing the newest rows shows
-- too.

ALTER TABLE access_log ADD COLUMN chain_seq bigint, ADD COLUMN row_hash bytea;

CREATE TABLE access_log_head (
    only_one  boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    chain_seq bigint NOT NULL,
    row_hash  bytea NOT NULL
);

-- What a row's hash covers, written once for the trigger and for verification.
CREATE FUNCTION rop_access_log_hash(
    previous bytea, chain_seq bigint, at timestamptz, principal text, roles text,
    workflow_id text, action text, outcome text
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(
        coalesce(previous, '\x'::bytea)
        || convert_to(
            concat_ws(E'\x1f', chain_seq::text,
                      to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                      principal, roles, workflow_id, action, outcome),
            'UTF8'))
$$;

-- Chains each new row to the head, one writer at a time (the head's row lock). It runs
-- as the table's owner, so the API's role writes rows without any right on the head.
CREATE FUNCTION rop_chain_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    head access_log_head%ROWTYPE;
BEGIN
    SELECT * INTO STRICT head FROM access_log_head FOR UPDATE;
    NEW.chain_seq := head.chain_seq + 1;
    NEW.row_hash := rop_access_log_hash(head.row_hash, NEW.chain_seq, NEW.at, NEW.principal,
                                        NEW.roles, NEW.workflow_id, NEW.action, NEW.outcome);
    UPDATE access_log_head SET chain_seq = NEW.chain_seq, row_hash = NEW.row_hash;
    RETURN NEW;
END
$$;

-- Rows written before this migration join the chain in the order of their ids.
ALTER TABLE access_log DISABLE TRIGGER access_log_append_only;
DO $$
DECLARE
    row access_log%ROWTYPE;
    seq bigint := 0;
    previous bytea := NULL;
BEGIN
    FOR row IN SELECT * FROM access_log ORDER BY id LOOP
        seq := seq + 1;
        previous := rop_access_log_hash(previous, seq, row.at, row.principal, row.roles,
                                        row.workflow_id, row.action, row.outcome);
        UPDATE access_log SET chain_seq = seq, row_hash = previous WHERE id = row.id;
    END LOOP;
    -- The head exists from the start (position 0, an empty hash), so that the first
    -- writers, too, wait on its row lock.
    INSERT INTO access_log_head (chain_seq, row_hash) VALUES (seq, coalesce(previous, '\x'));
END
$$;
ALTER TABLE access_log ENABLE TRIGGER access_log_append_only;

ALTER TABLE access_log ALTER COLUMN chain_seq SET NOT NULL,
                       ALTER COLUMN row_hash SET NOT NULL,
                       ADD CONSTRAINT access_log_chain_seq_unique UNIQUE (chain_seq);

CREATE TRIGGER access_log_chain
    BEFORE INSERT ON access_log
    FOR EACH ROW EXECUTE FUNCTION rop_chain_access();
