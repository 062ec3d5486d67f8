-- Retention without an index on end time. An index keyed by instance put every finished task's
-- entry on its own leaf page (each drained task belongs to another instance): one more page per
-- ended task on the writer thread. Retention now walks an instance's tasks in creation order
-- (tasks_background, tasks_scheduled) and its cap reads this count, kept on the instance's own
-- row: a task's end rewrites that row in the same transaction already, so the count costs no page.
ALTER TABLE instances ADD COLUMN finished_tasks INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET finished_tasks = c.n
    FROM (SELECT instance_id, count(*) AS n FROM tasks WHERE due_at IS NULL GROUP BY instance_id) AS c
    WHERE instances.id = c.instance_id;
-- Every path that inserts, ends, un-ends (a resumed scheduled task) or deletes a task keeps the
-- count exact by construction; a task is finished exactly when its due_at is NULL.
CREATE TRIGGER tasks_finished_inserted AFTER INSERT ON tasks WHEN new.due_at IS NULL BEGIN
    UPDATE instances SET finished_tasks = finished_tasks + 1 WHERE id = new.instance_id;
END;
CREATE TRIGGER tasks_finished_deleted AFTER DELETE ON tasks WHEN old.due_at IS NULL BEGIN
    UPDATE instances SET finished_tasks = finished_tasks - 1 WHERE id = old.instance_id;
END;
CREATE TRIGGER tasks_finished_changed AFTER UPDATE OF due_at ON tasks
    WHEN (old.due_at IS NULL) <> (new.due_at IS NULL) BEGIN
    UPDATE instances SET finished_tasks = finished_tasks + iif(new.due_at IS NULL, 1, -1) WHERE id = new.instance_id;
END;
DROP INDEX tasks_finished;
