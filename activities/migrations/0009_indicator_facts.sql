-- What the indicators need from the event log, and no more (issue 13): for each pathway,
-- whether its current crisis plan was made with the patient and with relatives, whether
-- its current plan of measures has an ACT/FACT measure, and whether every party recommended
-- for its meeting took part (NULL before the meeting, or for meetings recorded before the
-- recommended parties were). A function run as the owner, so the API's role reads these
-- facts without any right to the steps' content.

CREATE FUNCTION rop_pathway_facts()
RETURNS TABLE (workflow_id text, has_crisis_plan boolean, made_with_patient boolean,
               relatives_involved boolean, has_fact_measure boolean,
               all_recommended_attended boolean, first_crisis_plan_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.workflow_id,
           plan.details IS NOT NULL,
           coalesce((plan.details->>'made_with_patient')::boolean, false),
           coalesce((plan.details->>'relatives_involved')::boolean, false),
           coalesce(jsonb_path_exists(measures.list,
                                      '$[*] ? (@.kind == "ambulant-act-fact")'), false),
           (SELECT bool_and(recommended.role IN (
                       SELECT lower(came.role)
                       FROM jsonb_array_elements_text(
                                coalesce(meeting.details->'attended', '[]')
                                || coalesce(meeting.details->'attendees', '[]')) AS came(role)))
            FROM jsonb_array_elements_text(meeting.details->'recommended_roles')
                 AS recommended(role)),
           (SELECT min(e.occurred_at) FROM pathway_events e
            WHERE e.workflow_id = p.workflow_id AND e.kind = 'crisis-plan-registered')
    FROM pathways p
    LEFT JOIN LATERAL (SELECT e.details FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'crisis-plan-registered'
                       ORDER BY e.id DESC LIMIT 1) plan ON true
    LEFT JOIN LATERAL (SELECT e.details FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'meeting-held'
                       ORDER BY e.id DESC LIMIT 1) meeting ON true
    LEFT JOIN LATERAL (SELECT coalesce(e.details->'plan', e.details->'measures') AS list
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id
                         AND e.kind IN ('meeting-held', 'plan-revised')
                       ORDER BY e.id DESC LIMIT 1) measures ON true
$$;

REVOKE ALL ON FUNCTION rop_pathway_facts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rop_pathway_facts() TO rop_api;
