-- PostgreSQL splits the running counts into shards (see migrations/postgres); SQLite has one
-- writer, so its counts stay one row each. This keeps the two engines' schema versions in step.
SELECT 1;
