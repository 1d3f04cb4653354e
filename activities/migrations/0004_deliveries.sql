-- One row per task that a channel delivers (or that the routing keeps on the task list):
-- the attempt count, the stable message id and the outcome, so a retried delivery
-- never sends twice and a failed one can be found and re-sent.

CREATE TABLE deliveries (
    task_id    bigint PRIMARY KEY REFERENCES tasks (id),
    channel    text NOT NULL,
    address    text,
    message_id text NOT NULL,
    status     text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'task-list')),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at    timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deliveries_failed_idx ON deliveries (status) WHERE status = 'failed';
