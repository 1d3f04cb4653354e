-- The pathway after the clarification meeting: crisis plan, reviews, closure, objection,
-- task references (one task per measure) and the FACT team table for the indicators.

ALTER TABLE pathways
    ADD COLUMN invite_working_days   integer,
    ADD COLUMN koordinator           text,
    ADD COLUMN individual_plan       text,
    ADD COLUMN crisis_plan_version   integer,
    ADD COLUMN crisis_plan_at        timestamptz,
    ADD COLUMN crisis_plan_overdue   boolean NOT NULL DEFAULT false,
    ADD COLUMN next_review_due       date,
    ADD COLUMN review_overdue        boolean NOT NULL DEFAULT false,
    ADD COLUMN reviews_completed     integer NOT NULL DEFAULT 0,
    ADD COLUMN objection             boolean NOT NULL DEFAULT false,
    ADD COLUMN closed_at             timestamptz,
    ADD COLUMN closure_reason        text;

ALTER TABLE tasks ADD COLUMN reference text;

CREATE TABLE fact_teams (
    id           text PRIMARY KEY,
    health_trust text NOT NULL,
    name         text NOT NULL,
    municipalities char(4)[] NOT NULL DEFAULT '{}',
    example_data boolean NOT NULL DEFAULT false
);
