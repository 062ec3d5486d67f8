-- What an executor reported for a task, one row per task, kept with it (and removed
-- with it): the step it runs and the attempt at that step (1 for a first run, one more each time
-- the step is begun again after a crash or a handed-back lease), its last progress and message,
-- why it failed, the tail of its output for operators, and, for a webhook, the SHA-256 of the
-- step's one-time callback token and the receiver's final answer (JSON) once it came.
CREATE TABLE task_runs (
    task_id     TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    progress    INTEGER,
    message     TEXT NOT NULL DEFAULT '',
    reason      TEXT,
    output_tail TEXT NOT NULL DEFAULT '',
    token_hash  TEXT,
    answer      TEXT,
    updated_at  INTEGER NOT NULL
) STRICT;
