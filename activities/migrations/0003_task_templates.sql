-- Tasks keep their template parameters, so every channel renders them in the
-- recipient's written standard; subject and body hold the bokmål text for the task list.

ALTER TABLE tasks
    ADD COLUMN params   jsonb   NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN redacted boolean NOT NULL DEFAULT false;
