-- The patient's own view (innsyn): which units and roles accessed their pathways. A patient
-- signs in with HelseID, which says their fødselsnummer; the API's role cannot read it, so
-- this function, run as the owner, answers which pathways are theirs, and nothing else.
CREATE INDEX pathways_patient_national_id_idx ON pathways (patient_national_id);

CREATE FUNCTION rop_pathways_of_patient(national_id text) RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT workflow_id FROM pathways WHERE patient_national_id = national_id ORDER BY received_at
$$;
REVOKE ALL ON FUNCTION rop_pathways_of_patient(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rop_pathways_of_patient(text) TO rop_api;

-- A patient reading their own log is an access on grounds of its own.
ALTER TABLE access_log DROP CONSTRAINT access_log_grounds_check;
ALTER TABLE access_log ADD CONSTRAINT access_log_grounds_check
    CHECK (grounds IN ('service', 'unit', 'participant', 'break-glass', 'patient'));
