-- Retention without an index on end time. An index keyed by instance put every finished task's
-- entry on its own leaf page (each drained task belongs to another instance): one more page per
-- ended task. Retention now walks an instance's tasks in creation order (tasks_background,
-- tasks_scheduled) and its cap reads this count of an instance's finished tasks. Sharded like
-- task_totals (migration 0010), not a column of the instance's row: every write that ends or
-- removes a task would take that one row's lock until it commits, so concurrent deletes of one
-- instance's tasks would run one at a time (SQLite, with its one writer, keeps it on the row).
CREATE TABLE finished_counts (
    instance_id TEXT NOT NULL,
    shard       SMALLINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (instance_id, shard)
);
INSERT INTO finished_counts (instance_id, shard, n)
    SELECT instance_id, 0, count(*) FROM tasks WHERE due_at IS NULL GROUP BY instance_id;

-- Inserts and deletes: once per statement, each instance's shard row once (a bulk delete, a
-- prune batch, a bulk load, an instance's removal write one row per instance, not one per task).
-- One function for both: each trigger names its transition table `changed_tasks`, and an insert
-- counts in, a delete counts out.
CREATE FUNCTION tasks_finished_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO finished_counts (instance_id, shard, n)
        SELECT instance_id, (pg_backend_pid() % 16)::SMALLINT,
               CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END * count(*) FROM changed_tasks
        WHERE due_at IS NULL GROUP BY instance_id ORDER BY instance_id
        ON CONFLICT (instance_id, shard) DO UPDATE SET n = finished_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_finished_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS changed_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasks_finished_counted();
CREATE TRIGGER tasks_finished_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS changed_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasks_finished_counted();

-- Ends and un-ends: per row, and only the rows whose finishedness changes (the WHEN is checked
-- without calling the function). A statement-level trigger here would collect every updated row
-- of every step, lease renewal and release into transition tables (PostgreSQL allows no column
-- list with transition tables), for the few that end.
CREATE FUNCTION tasks_finished_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO finished_counts (instance_id, shard, n)
        VALUES (new.instance_id, (pg_backend_pid() % 16)::SMALLINT, CASE WHEN new.due_at IS NULL THEN 1 ELSE -1 END)
        ON CONFLICT (instance_id, shard) DO UPDATE SET n = finished_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_finished_changed AFTER UPDATE OF due_at ON tasks
    FOR EACH ROW WHEN ((old.due_at IS NULL) <> (new.due_at IS NULL)) EXECUTE FUNCTION tasks_finished_changed();

DROP INDEX tasks_finished;
