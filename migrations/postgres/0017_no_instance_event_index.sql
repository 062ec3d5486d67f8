-- An instance's event stream walks its project's index (task_events_by_project) and keeps its
-- own rows, a bounded number per read (storage::events::INSTANCE_SCAN_ROWS). The index by
-- instance put every task's events on a leaf of their own, a page more to write and often to
-- read for each task the engine ends (docs/performance.md, "The wall the counts do not see").
DROP INDEX task_events_by_instance;
