-- Retention without an index on end time. An index keyed by instance put every finished task's
-- entry on its own leaf page (each drained task belongs to another instance): one more page per
-- ended task. Retention now walks an instance's tasks in creation order (tasks_background,
-- tasks_scheduled) and its cap reads this count, kept on the instance's own row, which a task's
-- end locks and rewrites in the same transaction already.
ALTER TABLE instances ADD COLUMN finished_tasks BIGINT NOT NULL DEFAULT 0;
UPDATE instances AS i SET finished_tasks = c.n
    FROM (SELECT instance_id, count(*) AS n FROM tasks WHERE due_at IS NULL GROUP BY instance_id) AS c
    WHERE i.id = c.instance_id;

-- Inserts and deletes: once per statement, each instance once (a bulk delete, a prune batch, a
-- bulk load, an instance's removal write one row per instance, not one per task).
CREATE FUNCTION tasks_finished_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instances AS i SET finished_tasks = i.finished_tasks + c.n
        FROM (SELECT instance_id, count(*) AS n FROM new_tasks WHERE due_at IS NULL GROUP BY instance_id) AS c
        WHERE i.id = c.instance_id;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_finished_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasks_finished_inserted();

CREATE FUNCTION tasks_finished_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instances AS i SET finished_tasks = i.finished_tasks - c.n
        FROM (SELECT instance_id, count(*) AS n FROM old_tasks WHERE due_at IS NULL GROUP BY instance_id) AS c
        WHERE i.id = c.instance_id;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_finished_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasks_finished_deleted();

-- Ends and un-ends: per row, and only the rows whose finishedness changes (the WHEN is checked
-- without calling the function). A statement-level trigger here would collect every updated row
-- of every step, lease renewal and release into transition tables (PostgreSQL allows no column
-- list with transition tables), for the few that end.
CREATE FUNCTION tasks_finished_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instances SET finished_tasks = finished_tasks + CASE WHEN new.due_at IS NULL THEN 1 ELSE -1 END
        WHERE id = new.instance_id;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_finished_changed AFTER UPDATE OF due_at ON tasks
    FOR EACH ROW WHEN ((old.due_at IS NULL) <> (new.due_at IS NULL)) EXECUTE FUNCTION tasks_finished_changed();

DROP INDEX tasks_finished;
