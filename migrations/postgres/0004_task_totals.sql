-- Tasks per instance and view, so that an unfiltered task_count is one lookup.
CREATE TABLE task_totals (
    instance_id  TEXT NOT NULL,
    view         SMALLINT NOT NULL,
    n            BIGINT NOT NULL,
    PRIMARY KEY (instance_id, view)
);

INSERT INTO task_totals (instance_id, view, n)
    SELECT instance_id, view, sum(n) FROM task_buckets GROUP BY instance_id, view;
