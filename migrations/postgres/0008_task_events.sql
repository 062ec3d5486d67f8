-- The task event log behind the SSE streams (docs/decisions.md, "Events"; docs/events.md).
-- Identity values are taken in one order and committed in another, so readers order the log by
-- (xid, id): the writing transaction's id, then the event id, and read only transactions older
-- than every one still running (pg_snapshot_xmin), a set that can no longer grow.
CREATE TABLE task_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::TEXT::BIGINT),
    at BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX task_events_order ON task_events (xid, id);
CREATE INDEX task_events_by_project ON task_events (project_id, xid, id);
CREATE INDEX task_events_by_instance ON task_events (instance_id, xid, id);
-- How far retention has pruned: the last pruned position and the highest id pruned.
CREATE TABLE task_events_pruned (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    xid BIGINT NOT NULL,
    id BIGINT NOT NULL,
    max_id BIGINT NOT NULL
);
INSERT INTO task_events_pruned (one, xid, id, max_id) VALUES (1, 0, 0, 0);
