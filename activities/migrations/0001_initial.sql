-- Pathways, their append-only event log, the contact directory and the task outbox.

CREATE TABLE pathways (
    workflow_id           text PRIMARY KEY,
    referral_id           text NOT NULL UNIQUE,
    received_at           timestamptz NOT NULL,
    source                text NOT NULL,
    referrer              text NOT NULL,
    receiving_unit        text NOT NULL,
    health_trust          text NOT NULL,
    municipality          char(4) NOT NULL,
    responsible_clinician text NOT NULL,
    general_practitioner  text,
    patient_reference     text NOT NULL,
    patient_national_id   text,
    phase                 text NOT NULL,
    meeting_deadline      date NOT NULL,
    assessment_decision   text,
    invited_at            timestamptz,
    meeting_at            timestamptz,
    invited_on_time       boolean,
    overdue               boolean NOT NULL DEFAULT false,
    meeting_held_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX pathways_health_trust_idx ON pathways (health_trust, phase);

-- Every step, who did it and when. Rows are only ever inserted.
CREATE TABLE pathway_events (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    workflow_id     text NOT NULL REFERENCES pathways (workflow_id),
    kind            text NOT NULL,
    actor           text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX pathway_events_workflow_idx ON pathway_events (workflow_id, id);

-- Contact points of municipalities, health trusts and GPs.
CREATE TABLE contact_points (
    id             text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('phv', 'tsb', 'fastlege', 'kommune', 'leder')),
    health_trust   text,
    receiving_unit text CHECK (receiving_unit IN ('TSB', 'PHV')),
    municipality   char(4),
    hpr_number     text,
    name           text NOT NULL,
    address        text NOT NULL,
    example_data   boolean NOT NULL DEFAULT false
);

CREATE INDEX contact_points_lookup_idx ON contact_points (role, health_trust, municipality);

-- Tasks for clinicians and units; the outbox that notification channels deliver from.
CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    kind            text NOT NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    due_at          timestamptz,
    status          text NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'in-progress', 'completed', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tasks_open_idx ON tasks (workflow_id, kind) WHERE status = 'requested';
