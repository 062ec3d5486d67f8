-- Retention without an index on end time. An index keyed by instance put every finished task's
-- entry on its own leaf page (each drained task belongs to another instance): one more page per
-- ended task on the writer thread. Retention now walks an instance's tasks in creation order
-- (tasks_background, tasks_scheduled) and its cap reads this count, kept on the instance's own
-- row: a task's end rewrites that row in the same transaction already, so the count costs no page.
ALTER TABLE instances ADD COLUMN finished_tasks INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET finished_tasks = c.n
    FROM (SELECT instance_id, count(*) AS n FROM tasks WHERE due_at IS NULL GROUP BY instance_id) AS c
    WHERE instances.id = c.instance_id;
-- Kept in code by every write that inserts, ends, un-ends (a resumed scheduled task) or deletes
-- a task, beside the task counters (crates/storage/src/sqlite/tasks.rs, `count_finished`), not by
-- triggers: a trigger on `tasks` makes SQLite open a statement journal for every statement that
-- writes it (each step, each submission, each delete: +11 % instructions on the drain, measured in
-- docs/performance.md). A task is finished exactly when its due_at is NULL.
DROP INDEX tasks_finished;
