-- What the indicators need from the event log, and no more (issue 13): for each pathway,
-- whether its current crisis plan was made with the patient and with relatives, and
-- whether its current plan of measures has an ACT/FACT measure. A function run as the
-- owner, so the API's role reads these facts without any right to the steps' content.

CREATE FUNCTION rop_pathway_facts()
RETURNS TABLE (workflow_id text, has_crisis_plan boolean, made_with_patient boolean,
               relatives_involved boolean, has_fact_measure boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.workflow_id,
           plan.details IS NOT NULL,
           coalesce((plan.details->>'made_with_patient')::boolean, false),
           coalesce((plan.details->>'relatives_involved')::boolean, false),
           coalesce(jsonb_path_exists(measures.list,
                                      '$[*] ? (@.kind == "ambulant-act-fact")'), false)
    FROM pathways p
    LEFT JOIN LATERAL (SELECT e.details FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'crisis-plan-registered'
                       ORDER BY e.id DESC LIMIT 1) plan ON true
    LEFT JOIN LATERAL (SELECT coalesce(e.details->'plan', e.details->'measures') AS list
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id
                         AND e.kind IN ('meeting-held', 'plan-revised')
                       ORDER BY e.id DESC LIMIT 1) measures ON true
$$;

REVOKE ALL ON FUNCTION rop_pathway_facts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rop_pathway_facts() TO rop_api;
