-- Who a pathway names, kept as data (issue 24): the grounds of need of service.
--
-- rop_need_of_service (0008) searched the event log on every read: any string anywhere in a
-- step's details granted access (a reason that held an HPR number), anyone who recorded a
-- step was named (a step taken by breaking the glass gave lasting access), recipients were
-- matched by raw string (a kommunenummer read as an HPR number), and a clinician's task
-- list called it once per task (194 s at 10,000 pathways). Now each step writes the parties
-- its typed fields name (rop_domain/parties.py) in its own statement, and reads join this
-- table by index.

CREATE TABLE pathway_parties (
    workflow_id text NOT NULL REFERENCES pathways (workflow_id),
    party_type  text NOT NULL CHECK (party_type IN ('person', 'unit', 'organisation', 'email')),
    party       text NOT NULL CHECK (party <> ''),
    named_as    text NOT NULL,
    step_key    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, party_type, party, named_as)
);

-- A person's or unit's pathways (lists), and a pathway's parties (one read) by the key.
CREATE INDEX pathway_parties_party_idx ON pathway_parties (party_type, party, workflow_id);

-- A pathway's tasks (the FHIR bundle, lists joined on visible pathways) without a scan.
CREATE INDEX tasks_workflow_idx ON tasks (workflow_id, id);

GRANT SELECT, INSERT ON pathway_parties TO rop_worker;
GRANT SELECT ON pathway_parties TO rop_api;

-- From today's records, by the same typed fields the record service now writes.
INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
SELECT p.workflow_id, g.party_type, g.party, g.named_as, p.workflow_id || '/referral-received'
FROM pathways p,
LATERAL (VALUES
    ('unit', p.health_trust || '/' || p.receiving_unit, 'receiving-unit'),
    ('person', p.responsible_clinician, 'receiving-clinician'),
    ('person', p.general_practitioner, 'general-practitioner'),
    ('organisation', 'municipality:' || p.municipality, 'municipality'),
    (CASE WHEN p.source IN ('fastlege', 'spesialisthelsetjenesten') THEN 'person'
          ELSE 'organisation' END, p.referrer, 'referrer')
) AS g(party_type, party, named_as)
WHERE g.party IS NOT NULL AND g.party <> ''
ON CONFLICT DO NOTHING;

INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
SELECT e.workflow_id, 'person', g.party, g.named_as, e.idempotency_key
FROM pathway_events e,
LATERAL (VALUES
    (e.details ->> 'koordinator', 'koordinator'),
    (e.details ->> 'crisis_plan_responsible', 'crisis-plan-responsible')
) AS g(party, named_as)
WHERE e.kind = 'meeting-held' AND g.party IS NOT NULL AND g.party <> ''
ON CONFLICT DO NOTHING;

INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
SELECT e.workflow_id,
       CASE WHEN m.measure ->> 'responsible' ~ '^\d{5,9}$' THEN 'person' ELSE 'organisation' END,
       m.measure ->> 'responsible', 'measure-responsible', e.idempotency_key
FROM pathway_events e,
LATERAL jsonb_array_elements(
    CASE e.kind WHEN 'meeting-held' THEN e.details -> 'measures'
                WHEN 'plan-revised' THEN e.details -> 'plan' END) AS m(measure)
WHERE e.kind IN ('meeting-held', 'plan-revised')
  AND jsonb_typeof(CASE e.kind WHEN 'meeting-held' THEN e.details -> 'measures'
                               ELSE e.details -> 'plan' END) = 'array'
  AND coalesce(m.measure ->> 'responsible', '') <> ''
ON CONFLICT DO NOTHING;

-- Invitations from before give no e-mail grounds: their records do not say whether the
-- address was a person's (a relative's) or a service's (a unit's mailbox), and 0008 let any
-- of them read the pathway. E-mail grounds now need a verified address, a setting that trusts
-- them, and an invitation of a person at that address: written by the steps from now on.

-- Need of service from the table: 'unit', 'participant' or 'none'; NULL for a pathway with no
-- record. Kept with the signature of 0008 for callers that have not moved to the join; the
-- e-mail argument is compared case folded and only when the caller passes one.
CREATE OR REPLACE FUNCTION rop_need_of_service(
    pathway text, units text[], person text, email text
) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(
        (SELECT CASE WHEN count(*) = 0 THEN NULL
                     WHEN bool_or(g.party_type = 'unit') THEN 'unit' ELSE 'participant' END
         FROM pathway_parties g
         WHERE g.workflow_id = p.workflow_id
           AND ((g.party_type = 'unit' AND g.party = ANY (coalesce(units, '{}')))
             OR (g.party_type = 'person' AND g.party = person)
             OR (g.party_type = 'email' AND g.party = lower(email)))),
        'none')
    FROM pathways p
    WHERE p.workflow_id = pathway
$$;
