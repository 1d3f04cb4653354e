-- What `rop reconcile --repair` needs, as the worker's role (issue 26): the nightly check and
-- the operators' route run on the worker, which writes the steps a restored record lacks.
--
-- A repair writes a pathway's missing steps after later ones, so the facts folded from its
-- events in insertion order may be off; it refreshes them from the event log, as the owner.
CREATE FUNCTION rop_refresh_facts(pathway text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE pathway_facts f
    SET (assessed_at, assessment_working_days, first_meeting_at, meeting_working_days,
         all_recommended_attended, has_crisis_plan, first_crisis_plan_at, crisis_plan_versions,
         made_with_patient, relatives_involved, fact_measures, cancelled_measures) =
        (r.assessed_at, r.assessment_working_days, r.first_meeting_at, r.meeting_working_days,
         r.all_recommended_attended, r.has_crisis_plan, r.first_crisis_plan_at,
         r.crisis_plan_versions, r.made_with_patient, r.relatives_involved, r.fact_measures,
         r.cancelled_measures)
    FROM rop_facts_from_events(pathway) r
    WHERE f.workflow_id = r.workflow_id
$$;
REVOKE ALL ON FUNCTION rop_refresh_facts(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rop_refresh_facts(text) TO rop_worker;

-- A repair is an access of its own: the worker writes it to the access log (the chain's
-- trigger runs as the owner).
GRANT INSERT ON access_log TO rop_worker;
GRANT USAGE ON SEQUENCE access_log_id_seq TO rop_worker;
