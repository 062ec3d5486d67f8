-- A row of the task event log may hold several events: those one write makes about one task
-- (src/domain/events.rs, `EventRow` and `unpack`). `n` is how many; the row's `id` is the log
-- position of its last event, its events taking positions id - n + 1 to id, so positions stay
-- dense and in order and an id shown before this migration still names the same event. Rows
-- written before it are single events: n = 1, nothing rewritten.
ALTER TABLE task_events ADD COLUMN n INTEGER NOT NULL DEFAULT 1 CHECK (n >= 1);
