-- The running counts are split into shards, each connection writing the shard of its backend
-- (pg_backend_pid() % 16), so that concurrent deletes and submissions of one instance do not
-- queue on one row lock held until their commit is flushed. Readers sum the shards.
ALTER TABLE task_totals ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE task_totals DROP CONSTRAINT task_totals_pkey;
ALTER TABLE task_totals ADD PRIMARY KEY (instance_id, view, shard);

ALTER TABLE task_buckets ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE task_buckets DROP CONSTRAINT task_buckets_pkey;
ALTER TABLE task_buckets ADD PRIMARY KEY (instance_id, view, bucket, shard);
