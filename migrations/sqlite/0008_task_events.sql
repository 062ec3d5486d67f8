-- The task event log behind the SSE streams (docs/decisions.md, "Events"; docs/events.md).
-- One writer commits at a time, so ids are in commit order; AUTOINCREMENT never reuses an id,
-- even once every row is pruned.
CREATE TABLE task_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX task_events_by_project ON task_events (project_id, id);
CREATE INDEX task_events_by_instance ON task_events (instance_id, id);
-- How far retention has pruned: the last pruned position and the highest id pruned.
CREATE TABLE task_events_pruned (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    xid INTEGER NOT NULL,
    id INTEGER NOT NULL,
    max_id INTEGER NOT NULL
);
INSERT INTO task_events_pruned (one, xid, id, max_id) VALUES (1, 0, 0, 0);
