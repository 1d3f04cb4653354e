-- FHIR Subscriptions (R4, as the Subscriptions R5 Backport IG describes; issue 30): a system
-- subscribes to "a task for an owner" with a rest-hook. Each change to a matching task (raised,
-- status changed, claimed or given back) becomes an event with the subscription's next number,
-- written by a trigger in the same transaction as the change: an event exists exactly when its
-- change committed, and the numbers have no gap. Delivery (the worker's RopSubscription
-- workflow) sends the events in order and records each attempt.
CREATE TABLE subscriptions (
    id                 uuid PRIMARY KEY,
    owner_type         text NOT NULL CHECK (owner_type IN ('Practitioner', 'CareTeam', 'Organization')),
    owner              text NOT NULL,
    endpoint           text NOT NULL,
    headers            jsonb NOT NULL DEFAULT '[]',
    content            text NOT NULL CHECK (content IN ('empty', 'id-only', 'full-resource')),
    heartbeat_seconds  integer CHECK (heartbeat_seconds > 0),
    status             text NOT NULL DEFAULT 'requested'
                       CHECK (status IN ('requested', 'active', 'error', 'off')),
    error              text,
    events_since_start bigint NOT NULL DEFAULT 0,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_owner_idx ON subscriptions (owner_type, owner) WHERE status IN ('requested', 'active');

CREATE TABLE subscription_events (
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    event_number    bigint NOT NULL,
    task_id         bigint NOT NULL REFERENCES tasks (id),
    task_version    integer NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (subscription_id, event_number)
);
CREATE INDEX subscription_events_pending_idx ON subscription_events (subscription_id, event_number)
    WHERE delivered_at IS NULL;

-- Every delivery attempt: handshakes, heartbeats and event notifications, with how it went.
CREATE TABLE subscription_attempts (
    id              bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    kind            text NOT NULL CHECK (kind IN ('handshake', 'heartbeat', 'event-notification')),
    first_event     bigint,
    last_event      bigint,
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL
);

-- The events of a task's change: one per live subscription whose owner the task has (a claimed
-- task is its claimer's, and still its unit's: a unit's subscriber sees it leave their queue).
CREATE FUNCTION rop_task_subscription_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    subscriber RECORD;
    numbered bigint;
BEGIN
    FOR subscriber IN
        SELECT s.id FROM subscriptions s
        WHERE s.status IN ('requested', 'active')
          AND ((s.owner_type = NEW.owner_type AND s.owner = NEW.owner)
               OR (s.owner_type = 'Practitioner' AND s.owner = NEW.claimed_by)
               OR (TG_OP = 'UPDATE' AND s.owner_type = 'Practitioner' AND s.owner = OLD.claimed_by))
        ORDER BY s.id
    LOOP
        UPDATE subscriptions SET events_since_start = events_since_start + 1
        WHERE id = subscriber.id RETURNING events_since_start INTO numbered;
        INSERT INTO subscription_events (subscription_id, event_number, task_id, task_version)
        VALUES (subscriber.id, numbered, NEW.id, NEW.version);
        PERFORM pg_notify('rop_subscription_events', subscriber.id::text);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_subscription_events
    AFTER INSERT OR UPDATE OF status, claimed_by ON tasks
    FOR EACH ROW EXECUTE FUNCTION rop_task_subscription_events();

GRANT SELECT, INSERT, UPDATE ON subscriptions TO rop_api;
GRANT SELECT ON subscription_events, subscription_attempts TO rop_api;
GRANT SELECT, UPDATE ON subscriptions, subscription_events TO rop_worker;
GRANT SELECT, INSERT ON subscription_attempts TO rop_worker;
GRANT USAGE ON SEQUENCE subscription_attempts_id_seq TO rop_worker;
