-- What an executor keeps across the attempts of a task (its own JSON, written under the task's
-- lease): a rolling restart records the broker it is about to restart, before the broker-control
-- program runs, and each broker it has finished, so that the attempt after a crash neither
-- restarts a broker twice nor skips one. Kept across steps (begin_attempt leaves it alone) and
-- removed with the task.
ALTER TABLE task_runs ADD COLUMN executor_state TEXT;
