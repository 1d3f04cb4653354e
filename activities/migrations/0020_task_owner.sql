-- A clinician's worklist (issue 30): each task's typed owner, kept when the task is written
-- so that `GET /fhir/Task?owner=` and a unit's worklist find it by index, never by reading
-- the recipient's text; a version for If-Match; who claimed a unit's task; its history.
ALTER TABLE tasks
    ADD COLUMN owner_type text CHECK (owner_type IN ('Practitioner', 'CareTeam', 'Organization')),
    ADD COLUMN owner      text,
    ADD COLUMN claimed_by text,
    ADD COLUMN version    integer NOT NULL DEFAULT 1,
    ADD CONSTRAINT tasks_owner_typed CHECK ((owner_type IS NULL) = (owner IS NULL)),
    ADD CONSTRAINT tasks_claimed_team_task CHECK (claimed_by IS NULL OR owner_type = 'CareTeam');

-- Tasks written before: a person named by HPR number is a Practitioner; the rest keep no
-- typed owner (an address is not an identity).
UPDATE tasks SET owner_type = 'Practitioner', owner = recipient WHERE recipient ~ '^\d{5,9}$';

-- The worklist's reads, in the order they sort by (starter/task_search.py: a task without a
-- due date sorts as due at infinity): an owner's tasks, a claimer's, everyone's.
CREATE INDEX tasks_owner_due_idx ON tasks (owner_type, owner, (coalesce(due_at, 'infinity'::timestamptz)), id);
CREATE INDEX tasks_claimed_due_idx ON tasks (claimed_by, (coalesce(due_at, 'infinity'::timestamptz)), id)
    WHERE claimed_by IS NOT NULL;
CREATE INDEX tasks_due_order_idx ON tasks ((coalesce(due_at, 'infinity'::timestamptz)), id);

-- Every claim and unclaim of a task, with the version it made.
CREATE TABLE task_changes (
    task_id    bigint NOT NULL REFERENCES tasks (id),
    version    integer NOT NULL,
    change     text NOT NULL CHECK (change IN ('claimed', 'unclaimed')),
    by_person  text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, version)
);

GRANT SELECT, INSERT ON task_changes TO rop_api;
GRANT SELECT ON task_changes TO rop_worker;
GRANT UPDATE (claimed_by, version) ON tasks TO rop_api;
GRANT UPDATE (claimed_by, version) ON tasks TO rop_worker;
