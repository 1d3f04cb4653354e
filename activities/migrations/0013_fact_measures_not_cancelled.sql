-- A cancelled FACT measure is no FACT follow-up (issue 25): the regional plan counts patients
-- followed up at home by an ACT/FACT team, so `has_fact_measure` now needs an ACT/FACT measure
-- of the current plan that was never cancelled (a cancelled measure keeps its status through
-- plan revisions, by its id). Everything else as in 0009.

CREATE OR REPLACE FUNCTION rop_pathway_facts()
RETURNS TABLE (workflow_id text, has_crisis_plan boolean, made_with_patient boolean,
               relatives_involved boolean, has_fact_measure boolean,
               all_recommended_attended boolean, first_crisis_plan_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.workflow_id,
           plan.details IS NOT NULL,
           coalesce((plan.details->>'made_with_patient')::boolean, false),
           coalesce((plan.details->>'relatives_involved')::boolean, false),
           coalesce((SELECT bool_or(NOT EXISTS (
                         SELECT FROM pathway_events c
                         WHERE c.workflow_id = p.workflow_id AND c.kind = 'measure-cancelled'
                           AND c.details->>'measure_id' = m.measure->>'id'))
                     FROM jsonb_array_elements(
                              CASE WHEN jsonb_typeof(measures.list) = 'array'
                                   THEN measures.list ELSE '[]' END) AS m(measure)
                     WHERE m.measure->>'kind' = 'ambulant-act-fact'), false),
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
