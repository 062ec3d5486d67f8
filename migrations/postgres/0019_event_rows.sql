-- The events one write makes about one task in one row (SQLite has done so since its migration
-- 0016): a claim that runs a task of instant steps to its end writes one row, not five.
--
-- A row of `n` events takes the `n` positions up to its `id`, as on SQLite. An identity hands
-- out one value at a time, and taking several in a row would serialise the writers, so each row
-- takes one value of a sequence that counts in blocks of 32 and uses the first `n` positions of
-- its block (`id` = block + n - 1; rows of more events are stored one event a row). Positions
-- therefore have gaps, which no client sees (stream ids are opaque and project-scoped), and
-- retention counts events by rows' `n` (the `counted` columns below) rather than by position.
ALTER TABLE task_events ADD COLUMN n INTEGER NOT NULL DEFAULT 1 CHECK (n BETWEEN 1 AND 32);
CREATE SEQUENCE task_events_block INCREMENT BY 32 MINVALUE 1;
-- Past every position ever handed out: kept rows, pruned ones, and values rolled back.
SELECT setval('task_events_block', greatest(
    (SELECT coalesce(max(id), 0) FROM task_events),
    (SELECT max_id FROM task_events_pruned WHERE one = 1),
    (SELECT last_value FROM task_events_id_seq)) + 1, false);
ALTER TABLE task_events ALTER COLUMN id DROP IDENTITY;
-- Single events (and the inserts of a process not yet upgraded) take their block this way.
ALTER TABLE task_events ALTER COLUMN id SET DEFAULT nextval('task_events_block');
ALTER SEQUENCE task_events_block OWNED BY task_events.id;
-- Retention's count of the events kept: those in the rows after the pruned position up to and
-- including (counted_xid, counted_id), which the pruner moves on over settled rows as it goes.
ALTER TABLE task_events_pruned
    ADD COLUMN counted_xid BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN counted_id BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN counted BIGINT NOT NULL DEFAULT 0;
UPDATE task_events_pruned SET counted_xid = xid, counted_id = id, counted = 0;
