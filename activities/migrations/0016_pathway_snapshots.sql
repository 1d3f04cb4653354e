-- The pathway as its newest step left it (issue 26): what a pathway is restarted from when
-- Temporal has lost its workflow (a namespace lost, a cluster rebuilt). Each step writes its
-- snapshot in the same statement as its events, so the snapshot is never behind the record;
-- a step's snapshot replaces an older one only (`sequence`, the workflow's key counter), so a
-- repair that writes older steps after newer ones leaves the newest. One row a pathway, packed
-- (zlib, base64; see rop_domain/state.py): about 1 KiB.
CREATE TABLE pathway_snapshots (
    workflow_id text PRIMARY KEY REFERENCES pathways (workflow_id),
    sequence    integer NOT NULL CHECK (sequence >= 0),
    snapshot    text NOT NULL,
    taken_at    timestamptz NOT NULL
);

-- The worker writes them with the steps and reads them for a restart; the API never does.
GRANT SELECT, INSERT, UPDATE ON pathway_snapshots TO rop_worker;
