-- A unit that holds a task of a pathway is named by it (issue 30): an invitation to the
-- avklaringsmøte sent to a unit's contact point (PHV invited to a TSB pathway), a measure
-- whose task is for the unit that provides it. Until now only the receiving unit was named,
-- so the members of an invited or providing unit found their unit's task in no worklist and
-- could not open it. The step statement names them from now on (rop_domain/parties.py);
-- here the tasks written since tasks had typed owners (0020), by the same rule: a unit's task
-- (owner CareTeam `<trust>.<unit>`), not sent redacted (the patient objected to sharing with
-- that party). Tasks from before 0020 have no typed owner and are in no unit's worklist.
INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
SELECT t.workflow_id,
       'unit',
       regexp_replace(t.owner, '\.([^.]+)$', '/\1'),
       CASE t.kind WHEN 'meeting-invitation' THEN 'invited' ELSE 'measure-provider' END,
       t.idempotency_key
FROM tasks t
WHERE t.kind IN ('meeting-invitation', 'start-measure')
  AND t.owner_type = 'CareTeam'
  AND NOT t.redacted
ON CONFLICT DO NOTHING;
