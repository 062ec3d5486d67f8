-- Instances keep their DMS document as JSON text; the columns beside it are what queries filter on.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    busy_task_id  TEXT,
    doc           TEXT NOT NULL
);
CREATE INDEX instances_by_project ON instances (project_id, created_at);

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    instance_id   TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    params        TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- Set for scheduled tasks: when they are due.
    schedule_at   BIGINT,
    -- True once the record is a background task (at once, or when a scheduled task fires).
    in_background BOOLEAN NOT NULL,
    steps         TEXT NOT NULL,
    operation     TEXT NOT NULL,
    -- When a worker should next look at the task: its due time while CREATED,
    -- its lease expiry while EXECUTING; NULL once it has ended.
    due_at        BIGINT,
    lease_owner   TEXT
);
CREATE INDEX tasks_background ON tasks (instance_id, created_at DESC, id DESC) WHERE in_background;
CREATE INDEX tasks_scheduled ON tasks (instance_id, created_at DESC, id DESC) WHERE schedule_at IS NOT NULL;
CREATE INDEX tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
