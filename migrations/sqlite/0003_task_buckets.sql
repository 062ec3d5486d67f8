-- Tasks per instance, view (0 background, 1 scheduled) and UTC day of created_at, kept in step
-- with the tasks table, so that task_count and deep pages do not walk every row.
CREATE TABLE task_buckets (
    instance_id  TEXT NOT NULL,
    view         INTEGER NOT NULL,
    bucket       INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (instance_id, view, bucket)
) STRICT, WITHOUT ROWID;

INSERT INTO task_buckets (instance_id, view, bucket, n)
    SELECT instance_id, 0, created_at / 86400000, count(*) FROM tasks WHERE in_background = 1
    GROUP BY instance_id, created_at / 86400000;
INSERT INTO task_buckets (instance_id, view, bucket, n)
    SELECT instance_id, 1, created_at / 86400000, count(*) FROM tasks WHERE schedule_at IS NOT NULL
    GROUP BY instance_id, created_at / 86400000;
