-- Retention: a project's policy replaces the configured default as a whole.
CREATE TABLE retention_policies (
    project_id  TEXT PRIMARY KEY,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
-- One row: which process prunes now, until when (a lease, renewed per batch).
CREATE TABLE prune_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner       TEXT,
    until       INTEGER NOT NULL
) STRICT;
INSERT INTO prune_lease (id, owner, until) VALUES (1, NULL, 0);
-- Finished tasks of an instance, oldest end first: what the age and cap rules scan.
CREATE INDEX tasks_finished ON tasks (instance_id, updated_at, id) WHERE due_at IS NULL;
