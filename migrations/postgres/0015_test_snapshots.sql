-- Test control's named snapshots (serve --test-control, docs/testing.md): the state of the
-- task tables as JSON, saved and loaded by POST …/test-control/snapshots. Never credentials.
CREATE TABLE test_snapshots (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    data       TEXT NOT NULL
);
